"""Ray Tune schedules the trials of a spec; nothing else in sambench imports Ray.

Data path: each trial runs ``harness.trial`` inside a Tune worker and reports its records;
its checkpoints carry the model state *and* every record so far (``harness.checkpoints``).
The driver-side ``StoreCallback`` writes a trial's Parquet rows from its final checkpoint,
so rows are written once, by the driver, and remote nodes never touch the results folder.
Trial ids are deterministic, so a trial that is rerun after a crash replaces its own files.

Resume never trusts Tune's saved experiment state (it is pickled, and a driver killed at
the wrong moment leaves it inconsistent): it rebuilds the Tuner from the manifest in
``sweep.json`` and hands each unfinished trial its newest readable sambench checkpoint,
found by trial id in Tune's storage. A trial whose checkpoint says it finished is written
without running again.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import functools
import math
import os
import socket
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

# Ray writes ~/.ray/auth_token and phones home unless told otherwise; these must be set
# before ray is imported anywhere in the process. Tune's own SIGINT handler is off:
# sambench handles SIGINT and SIGTERM itself (harness.interrupts).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune import Callback  # noqa: E402

from harness import checkpoints, interrupts, store  # noqa: E402
from harness.config import TrialConfig  # noqa: E402
from harness.extend import plan_extension, spec_changes  # noqa: E402
from harness.progress import Progress, end_line  # noqa: E402
from harness.records import RECORD_FIELDS  # noqa: E402
from harness.spec import Spec, SpecError  # noqa: E402

CHECKPOINT_SECONDS = float(os.environ.get("SAMBENCH_CHECKPOINT_SECONDS", "30"))
REPORT_SECONDS = 1.0
TUNE_DIR = "tune"


class SweepError(RuntimeError):
    """A sweep cannot start or continue (folder in use, spec mismatch, no such sweep)."""


@dataclass(frozen=True)
class SweepOptions:
    address: str | None = None          # Ray cluster address; None starts a local Ray
    max_concurrent: int | None = None
    storage: str | None = None          # Tune storage (shared FS path or URI) for clusters
    quiet: bool = False
    trackers: tuple[str, ...] = ()      # experiment trackers (harness/trackers/)
    dashboard: bool = False             # start the Ray dashboard (local Ray only), on 127.0.0.1


# -- the trainable (runs in a Ray worker) ---------------------------------------------------
def _trainable(config: dict[str, Any]) -> None:
    import torch

    from harness.trial import build_trial

    item = config["item"]
    torch.set_num_threads(max(1, int(item["cpus"])))
    # A tuning search (harness/search.py) samples some keys into config["space"].
    cfg = TrialConfig.from_dict({**item["trial"], **config.get("space", {})})
    trial = build_trial(cfg)
    records = _restore(trial, item)
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
            metrics["new_records"], unreported, last_report = unreported, [], now
            if save:
                last_saved = now
                with _checkpoint(trial, records, node, done=False) as ckpt:
                    tune.report(metrics, checkpoint=ckpt)
            else:
                tune.report(metrics)
    final = {k: v for k, v in (records[-1] if records else {}).items() if v is not None}  # searchers read it
    with _checkpoint(trial, records, node, done=True) as ckpt:
        tune.report({**final, "new_records": unreported, "status": trial.status, "done_records": len(records)},
                    checkpoint=ckpt)


def _restore(trial: Any, item: dict[str, Any]) -> list[dict]:
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
def _checkpoint(trial: Any, records: list[dict], node: str, done: bool) -> Iterator[Any]:
    with tempfile.TemporaryDirectory(prefix="sambench-ckpt-") as folder:
        summary = {"status": trial.status, "info": trial.info(), "node": node, "done": done}
        checkpoints.save(folder, trial.state_dict(), records, summary)
        yield tune.Checkpoint.from_directory(folder)


def _read_checkpoint(checkpoint: Any) -> tuple[list[dict], dict] | None:
    """(records, summary) of a Tune checkpoint, from its JSON files only."""
    if checkpoint is None:
        return None
    return checkpoints.read_summary(checkpoint.filesystem, checkpoint.path)


def _trial_dirname(trial: Any) -> str:
    """Tune's folder of a trial is its sambench id, so a later resume finds its checkpoints."""
    return trial.config["item"]["trial_id"]


# -- the driver side -----------------------------------------------------------------------
def _never_raise(method: Callable[..., None]) -> Callable[..., None]:
    """An exception in a callback would end the whole sweep; a write that fails here is
    retried by the reconciliation after ``fit`` and by ``resume``, so report and go on."""
    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception as err:  # noqa: BLE001 - see the docstring
            print(f"sambench: {method.__name__} failed ({type(err).__name__}: {err}); "
                  "the trial is written again by the end of the run or by `sambench resume`",
                  file=sys.stderr, flush=True)
    return guarded


class StoreCallback(Callback):
    """Writes each finished trial to Parquet and shows live progress (harness.progress).

    Module-level (not a closure) because Tune pickles the run config, callbacks included;
    ``setup`` gives every fit a fresh clock. No method ever raises (``_never_raise``).
    """

    def __init__(self, sweep_dir: Path, spec_hash: str, sweep: str, quiet: bool) -> None:
        self.sweep_dir, self.spec_hash, self.sweep, self.quiet = sweep_dir, spec_hash, sweep, quiet
        self.progress = Progress(total=0, quiet=True)
        self.pending: dict[str, list[dict]] = {}
        self.last_partial: dict[str, float] = {}

    def item(self, trial: Any) -> dict[str, Any]:
        """The trial's ``{"trial_id", "trial": config, "tags"}``; a search overrides it."""
        return trial.config["item"]

    @_never_raise
    def setup(self, **info):
        self.progress = Progress.for_sweep(self.sweep_dir, quiet=self.quiet)

    def on_step_begin(self, iteration, trials, **info):
        interrupts.raise_if_signalled()  # SIGINT/SIGTERM, recorded by the handler: stop between two steps

    @_never_raise
    def on_step_end(self, iteration, trials, **info):
        self.progress.refresh()  # the clock and the ETAs move between events too

    @_never_raise
    def on_trial_start(self, iteration, trials, trial, **info):
        item = self.item(trial)
        last = (trial.last_result or {}).get("new_records") or [None]
        self.progress.started(item["trial_id"], item["trial"], last[-1])

    @_never_raise
    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = self.item(trial)["trial_id"]
        if result.get("new_records"):
            self.progress.result(tid, result["new_records"][-1])
        if result.get("new_records") and "done_records" not in result:
            self.pending.setdefault(tid, []).extend(result["new_records"])
            if time.monotonic() - self.last_partial.get(tid, 0.0) > 5.0:
                store.write_progress(self.sweep_dir, tid, self.pending[tid])
                self.last_partial[tid] = time.monotonic()

    @_never_raise
    def on_trial_complete(self, iteration, trials, trial, **info):
        loaded = _read_checkpoint(trial.checkpoint)
        if loaded is not None:
            records, summary = loaded
            self.write(self.item(trial), records, summary, summary["status"], None, trial.num_failures + 1)
            drop_checkpoints(trial.checkpoint)

    @_never_raise
    def on_trial_error(self, iteration, trials, trial, **info):
        records, summary = _read_checkpoint(trial.checkpoint) or ([], {})
        text = _error_text(trial.error_file)
        store.write_error_log(self.sweep_dir, self.item(trial)["trial_id"], text)
        # Every attempt failed: Tune has counted each one in num_failures.
        self.write(self.item(trial), records, summary, "error", _last_line(text), trial.num_failures)
        drop_checkpoints(trial.checkpoint)

    @_never_raise
    def on_trial_recover(self, iteration, trials, trial, **info):
        self.progress.restarted(self.item(trial)["trial_id"])

    def write(self, item: dict, records: list[dict], summary: dict, status: str,
              error: str | None, attempts: int) -> None:
        tid = item["trial_id"]
        self.pending.pop(tid, None)
        row = store.trial_row(
            sweep=self.sweep, spec_hash=self.spec_hash, trial_id=tid, config=item["trial"],
            records=records, status=status, error=error, attempts=attempts,
            info=summary.get("info", {}), node=summary.get("node"), provenance=store.provenance(),
            tags=item.get("tags"),
        )
        store.write_trial(self.sweep_dir, row, records)
        self.progress.finished(tid, row)


def drop_checkpoints(checkpoint: Any) -> None:
    """Free the disk of a trial whose Parquet rows are committed (the rows hold all it
    recorded), so disk use grows with running trials, not finished ones: older checkpoints
    go whole, the final one keeps only its records and summary (kilobytes), which is what
    a resume needs if the driver died before Tune saved the trial as finished (the
    trainable then re-reports it without training). Works on any Tune storage (local,
    NFS, object store) through the checkpoint's filesystem."""
    if checkpoint is None:
        return
    import pyarrow.fs as pafs

    fs, final = checkpoint.filesystem, checkpoint.path.rstrip("/")
    folder = os.path.dirname(final)
    try:
        for entry in fs.get_file_info(pafs.FileSelector(folder)):
            if entry.type != pafs.FileType.Directory or not entry.base_name.startswith("checkpoint_"):
                continue
            if entry.path.rstrip("/") == final:
                fs.delete_file(f"{final}/state.pt")
            else:
                fs.delete_dir(entry.path)
    except OSError as error:  # a clean-up that failed costs disk space, never results
        print(f"sambench: could not delete the checkpoints in {folder}: {error}", file=sys.stderr)


class TrackerCallback(Callback):
    """Sends every record of every trial to the experiment trackers, from the driver.

    Trial ids and configs come from the store callback's ``item``, so tracker runs and
    Parquet rows carry the same ids. The trackers are opened lazily in the driver and left
    out of the pickled state Tune saves for a resume.
    """

    def __init__(self, names: tuple[str, ...], sweep_dir: Path, sweep: str, items: StoreCallback) -> None:
        self.names, self.sweep_dir, self.sweep, self.items = names, sweep_dir, sweep, items
        self._trackers: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_trackers": None}

    @property
    def trackers(self) -> Any:
        if self._trackers is None:
            from harness.trackers import Trackers

            self._trackers = Trackers(self.names, self.sweep_dir / "trackers", self.sweep)
        return self._trackers

    def on_trial_start(self, iteration, trials, trial, **info):
        item = self.items.item(trial)
        self.trackers.start(item["trial_id"], item["trial"])

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.trackers.log(self.items.item(trial)["trial_id"], result.get("new_records") or [])

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.trackers.finish(self.items.item(trial)["trial_id"], "ok")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.trackers.finish(self.items.item(trial)["trial_id"], "error")

    def on_experiment_end(self, trials, **info):
        if self._trackers is not None:
            self._trackers.close()
            self._trackers = None


def tracker_callbacks(names: tuple[str, ...], sweep_dir: Path, sweep: str, items: StoreCallback) -> list[Callback]:
    """A TrackerCallback when trackers are asked for; none otherwise."""
    return [TrackerCallback(tuple(names), sweep_dir, sweep, items)] if names else []


def _error_text(error_file: str | None) -> str:
    """A failed trial's error file (the full traceback Tune recorded), or a placeholder."""
    text = Path(error_file).read_text(errors="replace") if error_file and os.path.exists(error_file) else ""
    return text.strip() or "trial failed (no error message)"


def _last_line(text: str) -> str:
    """The exception line of a traceback, without Ray's frames."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else "trial failed (no error message)"


# -- public entry points -------------------------------------------------------------------
def run_sweep(spec: Spec, results_root: str | Path, options: SweepOptions = SweepOptions()) -> Path:
    """Run every trial of ``spec``; results land in ``results_root/<spec.name>/``."""
    sweep_dir = Path(results_root).resolve() / spec.name
    if _already_recorded(sweep_dir, spec):
        print(f"{sweep_dir} already holds every trial of this spec; nothing to run")
        return sweep_dir
    _join_cluster(spec.resources, options)  # before any file exists: a refusal leaves nothing
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with _sweep_lock(sweep_dir):
        if (sweep_dir / store.MANIFEST).exists():  # another run got here first
            raise SweepError(f"{sweep_dir} was started by another sambench run")
        trials = [
            {"trial_id": store.config_id(spec.name, cfg), "trial": cfg.to_dict()}
            for cfg in spec.trials
        ]
        storage = options.storage or str(sweep_dir / TUNE_DIR)
        # The manifest first (written atomically): from here on `sambench resume` can
        # rebuild everything, whenever the driver dies.
        store.write_spec(sweep_dir, spec.text, spec.spec_hash, {
            "sweep": spec.name, "spec_hash": spec.spec_hash, "storage": storage,
            "resources": spec.resources, "max_failures": spec.max_failures,
            "max_concurrent": spec.max_concurrent, "trials": trials,
        })
        _run_tuner(spec.name, sweep_dir, trials, spec.resources, spec.max_failures,
                   spec.spec_hash, storage, options, max_concurrent=spec.max_concurrent)
    return sweep_dir


def _already_recorded(sweep_dir: Path, spec: Spec) -> bool:
    """True when the folder holds every trial of this very spec; an error when it holds
    another spec or an unfinished run of this one (that is what ``resume`` is for)."""
    if not (sweep_dir / store.MANIFEST).exists():
        return False
    manifest = store.open_manifest(sweep_dir)
    if manifest["spec_hash"] != spec.spec_hash:
        changed = ", ".join(path for path, _, _ in spec_changes(store.read_spec(sweep_dir)[0], spec.text))
        raise SweepError(f"{sweep_dir} already holds a sweep with a different spec (changed: {changed}); "
                         "add --extend to add the new trials, or choose another name or results folder")
    done = store.completed_trial_ids(sweep_dir, include_errors=True)
    if all(t["trial_id"] in done for t in manifest["trials"]):
        return True
    raise SweepError(f"{sweep_dir} already exists: continue it with `sambench resume {sweep_dir}`")


def extend_sweep(spec: Spec, results_root: str | Path, options: SweepOptions = SweepOptions()) -> Path:
    """Grow the recorded sweep ``results_root/<spec.name>`` to ``spec``: print what changed,
    keep every recorded trial whose config is unchanged, run only the new ones. What is
    refused, and why, is in harness.extend. A folder that does not exist yet is a plain run."""
    sweep_dir = Path(results_root).resolve() / spec.name
    if not (sweep_dir / store.MANIFEST).exists():
        return run_sweep(spec, results_root, options)
    with _sweep_lock(sweep_dir):
        plan = plan_extension(sweep_dir, spec)
        print(plan.summary(), flush=True)
        if plan.new:
            _join_cluster(spec.resources, options)  # before writing: a refusal leaves the folder as it was
        store.write_spec(sweep_dir, spec.text, spec.spec_hash, plan.manifest)
        if plan.new:
            _run_tuner(spec.name, sweep_dir, plan.new, spec.resources, spec.max_failures, spec.spec_hash,
                       options.storage or plan.manifest["storage"], options,
                       max_concurrent=spec.max_concurrent)
    return sweep_dir


def resume_sweep(sweep_dir: str | Path, options: SweepOptions = SweepOptions(),
                 rerun_errored: bool = False) -> Path:
    """Continue an interrupted sweep: finished trials stay, unfinished ones continue from
    their last checkpoint, errored ones rerun (from the start) only with ``rerun_errored``."""
    sweep_dir = Path(sweep_dir).resolve()
    manifest = store.open_manifest(sweep_dir)
    with _sweep_lock(sweep_dir):
        done = store.completed_trial_ids(sweep_dir, include_errors=not rerun_errored)
        todo = [t for t in manifest["trials"] if t["trial_id"] not in done]
        if todo:
            storage = options.storage or manifest["storage"]
            # Trials whose final checkpoint was never written to Parquet need no rerun.
            todo = _settle(sweep_dir, manifest["sweep"], manifest["spec_hash"], todo, storage)
        if not todo:
            print(f"nothing to resume: all {len(manifest['trials'])} trials of {sweep_dir.name} are recorded")
            return sweep_dir
        _join_cluster(manifest["resources"], options)
        _run_tuner(manifest["sweep"], sweep_dir, todo, manifest["resources"], manifest["max_failures"],
                   manifest["spec_hash"], storage, options, max_concurrent=manifest.get("max_concurrent"))
    return sweep_dir


def _settle(sweep_dir: Path, name: str, spec_hash: str, trials: list[dict], storage: str) -> list[dict]:
    """Write each trial whose newest checkpoint is final; return the others, each with
    ``resume_from``: its newest checkpoints (best first), empty when it has none."""
    found = checkpoints.find(storage, [t["trial_id"] for t in trials])
    fs, _ = checkpoints.storage_fs(storage)
    writer = StoreCallback(sweep_dir, spec_hash, name, quiet=True)
    todo = []
    for item in trials:
        paths = found.get(item["trial_id"], [])
        best = checkpoints.read_summary(fs, paths[0].split("://", 1)[-1]) if paths else None
        if best is not None and best[1].get("done"):
            writer.write(item, best[0], best[1], best[1]["status"], None, 1)
        else:
            todo.append(dict(item, resume_from=paths[:checkpoints.KEEP_CANDIDATES]))
    return todo


def _join_cluster(resources: dict[str, Any], options: SweepOptions) -> None:
    """Join ``--address``/RAY_ADDRESS if given, else start a quiet local Ray (dashboard
    only when asked for, and then on localhost); then refuse a GPU request the cluster
    cannot meet (Tune would leave such trials pending forever)."""
    gpus = float(resources.get("gpu", 0))
    address = options.address or os.environ.get("RAY_ADDRESS")
    if not ray.is_initialized() and not address and gpus > 0:
        import torch  # a local Ray sees this machine's GPUs: refuse before starting it

        if torch.cuda.device_count() == 0:
            raise SpecError("resources.gpu", gpus, "0 (this machine has no GPUs; "
                            "use --set resources.gpu=0 to run on CPUs)")
    if not ray.is_initialized():
        import logging

        local = {} if address else {"include_dashboard": options.dashboard, "dashboard_host": "127.0.0.1"}
        ray.init(address=address, configure_logging=True, logging_level=logging.ERROR, log_to_driver=False,
                 runtime_env={"env_vars": {"SAMBENCH_CHECKPOINT_SECONDS": str(CHECKPOINT_SECONDS)}}, **local)
    if gpus > 0 and ray.cluster_resources().get("GPU", 0) == 0:
        raise SpecError("resources.gpu", gpus, "0 (the Ray cluster has no GPUs; "
                        "use --set resources.gpu=0 to run on CPUs)")


@contextmanager
def _sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """One driver per sweep folder: a second ``run``/``resume`` of it fails at once."""
    handle = open(sweep_dir / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SweepError(f"{sweep_dir} is in use by another sambench run or resume") from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _run_tuner(name: str, sweep_dir: Path, trials: list[dict], resources: dict[str, Any],
               max_failures: int, spec_hash: str, storage: str, options: SweepOptions,
               max_concurrent: int | None = None) -> None:
    """Fit a fresh Tuner over ``trials`` in a new session folder of ``storage``; the caller
    has joined Ray. Trials carrying ``resume_from`` continue from those checkpoints."""
    max_concurrent = options.max_concurrent or max_concurrent
    cpus = float(resources.get("cpu", 1))
    gpus = float(resources.get("gpu", 0))
    trainable = tune.with_resources(_trainable, {"cpu": cpus, "gpu": gpus})
    session = f"session-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    store_callback = StoreCallback(sweep_dir, spec_hash, name, options.quiet)
    tuner = tune.Tuner(
        trainable,
        param_space={"item": tune.grid_search([dict(item, cpus=cpus) for item in trials])},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=True,
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=session, storage_path=storage, verbose=0,
            callbacks=[store_callback, *tracker_callbacks(options.trackers, sweep_dir, name, store_callback)],
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )
    try:
        with interrupts.deferred(), _quiet_tune():
            tuner.fit()  # its ResultGrid is not read: building it unpickles Tune's error files
    finally:
        end_line()  # whatever is printed next (a summary, an error) starts on its own line
    interrupts.raise_if_signalled()
    # A trial whose final checkpoint the callback could not write is written now.
    _settle(sweep_dir, name, spec_hash, [t for t in trials if t["trial_id"] not in
                                         store.completed_trial_ids(sweep_dir)], storage)


@contextmanager
def _quiet_tune() -> Iterator[None]:
    """Tune logs every trial error and result-file detail; sambench prints its own summary
    (errors land in the trials table and in ``sambench ls``)."""
    import logging

    logger = logging.getLogger("ray.tune")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


# -- signals -------------------------------------------------------------------------------
def interrupted_message(sweep_dir: Path | None) -> str:
    """The one line printed after SIGINT/SIGTERM: what is recorded and how to go on."""
    if ray.is_initialized():
        ray.shutdown()  # stops the local Ray and its workers: nothing is left behind
    if sweep_dir is None or not (sweep_dir / store.MANIFEST).is_file():
        return "interrupted before the sweep started: nothing recorded; start it with `sambench run SPEC`"
    total = {t["trial_id"] for t in store.open_manifest(sweep_dir)["trials"]}
    recorded = len(total & store.completed_trial_ids(sweep_dir))
    return (f"interrupted: {recorded} of {len(total)} trials recorded; "
            f"continue with `sambench resume {sweep_dir}`")
