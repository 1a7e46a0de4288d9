"""The Tune trainable: runs one sambench trial inside a Ray worker.

Each trial runs ``harness.trial`` and reports its records to the driver; its checkpoints
carry the model state *and* every record so far (``harness.checkpoints``), so the driver
writes Parquet from a checkpoint and remote nodes never touch the results folder.
Importing this module sets Ray's environment first (no auth token, no usage stats, no
Tune SIGINT handler: sambench handles signals itself in harness.interrupts; workers at the
driver's niceness).
"""

from __future__ import annotations

import math
import os
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Any, Iterator

# Ray writes ~/.ray/auth_token and phones home unless told otherwise; these must be set
# before ray is imported anywhere in the process. Tune's own SIGINT handler is off:
# sambench handles SIGINT and SIGTERM itself (harness.interrupts).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0
# A local Ray starts its workers at niceness +15 by default: the trials then lose the CPU
# to any ordinary process (an editor, a test run, a nice-19 job gets 30% against them),
# while a sequential run in the driver does not. Trials run at the driver's own niceness;
# a user who wants them lower starts sambench under `nice`.
os.environ.setdefault("RAY_worker_niceness", "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402

from harness import checkpoints  # noqa: E402
from harness.config import TrialConfig  # noqa: E402

CHECKPOINT_SECONDS = float(os.environ.get("SAMBENCH_CHECKPOINT_SECONDS", "30"))
REPORT_SECONDS = 1.0


def trainable(config: dict[str, Any]) -> None:
    import torch

    from harness.trial import build_trial

    item = config["item"]
    torch.set_num_threads(max(1, int(item["cpus"])))
    # A tuning search (harness/search.py) samples some keys into config["space"].
    cfg = TrialConfig.from_dict({**item["trial"], **config.get("space", {})})
    trial = build_trial(cfg)
    records = restore(trial, item)
    context = ray.get_runtime_context()
    node = f"{socket.gethostname()}/{context.get_node_id()[:8]}"
    # Tune's report costs milliseconds: a synthetic trial with thousands of records reports
    # at most every REPORT_SECONDS, each report carrying the records since the last one.
    report_seconds = item.get("report_seconds", REPORT_SECONDS)  # 0 under a scheduler: every record
    last_saved, last_report = time.monotonic(), -math.inf
    unreported: list[dict[str, Any]] = []
    for record in trial.records():
        records.append(record)
        unreported.append(record)
        now = time.monotonic()
        save = now - last_saved >= CHECKPOINT_SECONDS
        if save or now - last_report >= report_seconds:
            metrics = {k: v for k, v in record.items() if v is not None}
            metrics["new_records"], metrics["node"] = unreported, node  # the driver counts trials per node
            unreported, last_report = [], now
            if save:
                last_saved = now
                with save_checkpoint(trial, records, node, done=False) as ckpt:
                    tune.report(metrics, checkpoint=ckpt)
            else:
                tune.report(metrics)
    final = {k: v for k, v in (records[-1] if records else {}).items() if v is not None}  # searchers read it
    with save_checkpoint(trial, records, node, done=True) as ckpt:
        tune.report({**final, "new_records": unreported, "node": node, "status": trial.status,
                     "done_records": len(records)},
                    checkpoint=ckpt)


def restore(trial: Any, item: dict[str, Any]) -> list[dict]:
    """Load the trial's newest usable checkpoint: Tune's (a retry within this driver run),
    then those the driver found in storage (a resume). An incomplete one is skipped for an
    older one; an unsafe one stops the trial. Returns the records so far."""
    latest = tune.get_checkpoint()
    sources = [latest] if latest is not None else []
    sources += [tune.Checkpoint(path) for path in item.get("resume_from", ())]
    for source in sources:
        try:
            with source.as_directory() as folder:
                state, records = checkpoints.load(folder)
        except checkpoints.UnsafeCheckpoint:
            raise
        except (OSError, ValueError, RuntimeError) as err:
            print(f"sambench: skipping unreadable checkpoint {source.path}: {err}", file=sys.stderr)
            continue
        trial.load_state_dict(state)
        return records
    return []


@contextmanager
def save_checkpoint(trial: Any, records: list[dict], node: str, done: bool) -> Iterator[Any]:
    with tempfile.TemporaryDirectory(prefix="sambench-ckpt-") as folder:
        summary = {"status": trial.status, "info": trial.info(), "node": node, "done": done}
        checkpoints.save(folder, trial.state_dict(), records, summary)
        yield tune.Checkpoint.from_directory(folder)


def read_checkpoint(checkpoint: Any) -> tuple[list[dict], dict] | None:
    """(records, summary) of a Tune checkpoint, from its JSON files only."""
    if checkpoint is None:
        return None
    return checkpoints.read_summary(checkpoint.filesystem, checkpoint.path)


def trial_dirname(trial: Any) -> str:
    """Tune's folder of a trial is its sambench id, so a later resume finds its checkpoints."""
    return trial.config["item"]["trial_id"]
