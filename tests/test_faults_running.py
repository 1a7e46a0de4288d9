"""Faults inside a running sweep, on a real Ray with tiny CPU trials: a trial's worker
process is SIGKILLed, a node of a two-node cluster is removed, and the same sweep is run
twice. Each trial continues from its checkpoint, every trial ends recorded exactly once,
and two runs give the same tables. docs/reliability.md says what each guarantee covers."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from harness import checkpoints, store
from harness.spec import parse_spec

pytestmark = pytest.mark.timeout(300)

TINY = """
name: {name}
dataset: digits
model: mlp
width: {width}
epochs: {epochs}
batch_size: 64
lr: 0.1
optimizer: sgd
grid:
  seed: {seeds}
resources: {{cpu: 1}}
max_failures: 1
"""


def _long(name: str, epochs: int = 8) -> str:
    """Two trials long enough to be caught running with a checkpoint, retried once."""
    return TINY.format(name=name, width=64, epochs=epochs, seeds=[0, 1])


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray whose trials checkpoint after every evaluation, so a fault can strike
    a trial that has a checkpoint."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"SAMBENCH_CHECKPOINT_SECONDS": "0"}})
    yield
    ray.shutdown()


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (this test's own Ray, never another one on the machine)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _trial_workers() -> list[int]:
    """Pids of this process's Ray workers running a Tune trainable (Ray titles them
    ``ray::ImplicitFunc...``)."""
    pids = []
    for pid in _descendants(os.getpid()):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::ImplicitFunc"):
                pids.append(pid)
        except OSError:
            continue
    return pids


def _when_checkpointed(storage: Path, ids: list[str], fault: Callable[[], None],
                       seen: dict[str, tuple[list[dict], dict]],
                       where: Callable[[dict], bool] = lambda summary: True) -> threading.Thread:
    """A thread that waits until some running trial (``where`` its checkpoint summary) has a
    checkpoint of at least two evaluations, keeps the (records, summary) of every such trial
    in ``seen``, then strikes ``fault``. Two: the driver has surely taken note of the first."""
    def watch() -> None:
        import pyarrow.fs as pafs

        deadline = time.monotonic() + 200
        while time.monotonic() < deadline and not seen:
            found = checkpoints.find(str(storage), ids)
            for tid, paths in found.items():
                loaded = checkpoints.read_summary(pafs.LocalFileSystem(), paths[0])
                if loaded and len(loaded[0]) >= 2 and not loaded[1]["done"] and where(loaded[1]):
                    seen[tid] = loaded
            if seen:
                fault()
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _check_complete(sweep_dir: Path, ids: list[str], epochs: int) -> None:
    """One trials row per trial and one epochs row per (trial, evaluation), on disk and
    through analysis.load; no writer's temp file left."""
    from analysis.load import load

    for trials, rows in ((store.read_trials(sweep_dir), store.read_epochs(sweep_dir, include_partial=False)),
                         load(sweep_dir)):
        assert sorted(trials["trial_id"].astype(str)) == sorted(ids) and set(trials["status"].astype(str)) == {"ok"}
        assert len(rows) == len(ids) * epochs and not rows.duplicated(["trial_id", "iteration"]).any()
    assert len(list((sweep_dir / "trials").glob("*.parquet"))) == len(ids)
    assert not list(sweep_dir.rglob("*.tmp"))


def _continued(sweep_dir: Path, seen: dict[str, tuple[list[dict], dict]]) -> None:
    """Each trial's first evaluation is the one its checkpoint held before the fault (its
    wall-clock is kept bit for bit), so it continued instead of starting from epoch 0."""
    epochs = store.read_epochs(sweep_dir, include_partial=False)
    for tid, (records, _) in seen.items():
        first = epochs[epochs["trial_id"].astype(str) == tid].sort_values("iteration").iloc[0]
        assert first["time_total"] == records[0]["time_total"], tid


def test_a_killed_trial_worker_continues_from_its_checkpoint(tmp_path, local_ray):
    from harness.sweep import SweepOptions, run_sweep

    spec = parse_spec(_long("worker-killed"))
    ids = [store.config_id(spec.name, cfg) for cfg in spec.trials]
    sweep_dir, seen, killed = tmp_path / spec.name, {}, []

    def kill_workers() -> None:  # every trial's worker: those without a checkpoint yet start over
        killed.extend(_trial_workers())
        for pid in killed:
            os.kill(pid, signal.SIGKILL)

    watcher = _when_checkpointed(sweep_dir / "tune", ids, kill_workers, seen)
    run_sweep(spec, tmp_path, SweepOptions(quiet=True))
    watcher.join()
    assert killed and seen, "no trial was caught running with a checkpoint"
    attempts = store.read_trials(sweep_dir).set_index("trial_id")["attempts"]
    assert all(attempts[tid] == 2 for tid in seen) and attempts.max() <= 2
    _check_complete(sweep_dir, ids, epochs=8)
    _continued(sweep_dir, seen)


def test_the_same_sweep_twice_gives_identical_tables(tmp_path, local_ray):
    import pandas as pd

    from harness.sweep import SweepOptions, run_sweep

    spec = parse_spec(TINY.format(name="twice", width=16, epochs=2, seeds=[0, 1]))
    first, second = (run_sweep(spec, tmp_path / root, SweepOptions(quiet=True)) for root in ("a", "b"))
    timing = ["time_train", "time_eval", "time_sharpness", "time_total"]
    # Timing, the commit stamp, where and beside how many other trials it ran, and the
    # software/hardware facts differ by design.
    elsewhere = [*timing, "finished_at", "node", "concurrency", *store.PROVENANCE_COLUMNS]
    epochs = [store.read_epochs(d).drop(columns=timing + ["finished_at"]).sort_values(["trial_id", "iteration"])
              .reset_index(drop=True) for d in (first, second)]
    assert len(epochs[0]) == 2 * 2
    pd.testing.assert_frame_equal(*epochs)
    trials = [store.read_trials(d).drop(columns=elsewhere).sort_values("trial_id").reset_index(drop=True)
              for d in (first, second)]
    pd.testing.assert_frame_equal(*trials)


# Last in this module: it shuts the module's local Ray down for a cluster of its own.
@pytest.mark.timeout(400)
def test_a_node_removed_mid_sweep_has_its_trial_rescheduled(tmp_path, monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    from harness import sweep

    ray.shutdown()
    monkeypatch.setattr(sweep, "CHECKPOINT_SECONDS", 0.0)  # handed to the workers: a checkpoint per evaluation
    # Ray notices a dead node after a few missed health checks: a second each here.
    fast = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
            "health_check_timeout_ms": 500, "health_check_failure_threshold": 2}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "_system_config": fast})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    head = cluster.head_node.node_id[:8]
    # Removing a node takes a while: 30 epochs keep its trial running well past the moment
    # it is caught with a checkpoint (with 8 it sometimes finished first).
    spec = parse_spec(_long("node-lost", epochs=30))
    ids = [store.config_id(spec.name, cfg) for cfg in spec.trials]
    sweep_dir, seen = tmp_path / spec.name, {}
    watcher = _when_checkpointed(sweep_dir / "tune", ids, lambda: cluster.remove_node(worker, allow_graceful=False),
                                 seen, where=lambda summary: summary["node"].endswith(worker.node_id[:8]))
    try:
        sweep.run_sweep(spec, tmp_path, sweep.SweepOptions(address=cluster.address, quiet=True))
    finally:
        watcher.join()
        ray.shutdown()
        cluster.shutdown()
    assert len(seen) == 1, "the worker node's trial was not caught running with a checkpoint"
    trials = store.read_trials(sweep_dir).set_index("trial_id")
    assert trials["attempts"].to_dict() == {tid: 2 if tid in seen else 1 for tid in ids}
    assert all(str(node).endswith(head) for node in trials["node"]), trials["node"]
    _check_complete(sweep_dir, ids, epochs=30)
    _continued(sweep_dir, seen)
