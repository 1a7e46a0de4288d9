"""Ray Tune schedules the trials of a spec. Ray lives here, in the trainable
(harness.tune_worker), the driver's callbacks (harness.tune_callbacks) and the tuning
searches (harness.search); nothing else in sambench imports it.

Resume never trusts Tune's saved experiment state (it is pickled, and a driver killed at
the wrong moment leaves it inconsistent): it rebuilds the Tuner from the manifest in
``sweep.json`` and hands each unfinished trial its newest readable sambench checkpoint,
found by trial id in Tune's storage. A trial whose checkpoint says it finished is written
without running again.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from harness.tune_worker import CHECKPOINT_SECONDS, trainable, trial_dirname  # sets Ray's env first

import ray  # noqa: E402
from ray import tune  # noqa: E402

from harness import checkpoints, interrupts, store  # noqa: E402
from harness.files import WriteError, check_writable  # noqa: E402
from harness.extend import plan_extension, spec_changes  # noqa: E402
from harness.progress import end_line  # noqa: E402
from harness.spec import Spec, SpecError  # noqa: E402
from harness.tune_callbacks import StoreCallback, tracker_callbacks  # noqa: E402

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


# -- public entry points -------------------------------------------------------------------
def run_sweep(spec: Spec, results_root: str | Path, options: SweepOptions = SweepOptions()) -> Path:
    """Run every trial of ``spec``; results land in ``results_root/<spec.name>/``."""
    sweep_dir = Path(results_root).resolve() / spec.name
    if (sweep_dir / store.MANIFEST).exists():
        with _sweep_lock(sweep_dir):  # a second driver of this very sweep is told it is running
            _refuse_unless_recorded(sweep_dir, spec)
        print(f"{sweep_dir} already holds every trial of this spec; nothing to run")
        return sweep_dir
    check_writable(sweep_dir)  # a folder the results cannot go into is refused before Ray starts
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


def _refuse_unless_recorded(sweep_dir: Path, spec: Spec) -> None:
    """Raise SweepError unless the folder's manifest is of this very spec and every trial
    is recorded: it holds another spec, or an unfinished run of this one (that is what
    ``resume`` is for)."""
    manifest = store.open_manifest(sweep_dir)
    if manifest["spec_hash"] != spec.spec_hash:
        changed = ", ".join(path for path, _, _ in spec_changes(store.read_spec(sweep_dir)[0], spec.text))
        raise SweepError(f"{sweep_dir} already holds a sweep with a different spec (changed: {changed}); "
                         "add --extend to add the new trials, or choose another name or results folder")
    done = store.completed_trial_ids(sweep_dir, include_errors=True)
    if not all(t["trial_id"] in done for t in manifest["trials"]):
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

        # "local" starts a Ray of this driver's own: without it ray.init() could join
        # another sweep's local Ray found on this machine.
        local = {} if address else {"include_dashboard": options.dashboard, "dashboard_host": "127.0.0.1"}
        ray.init(address=address or "local", configure_logging=True, logging_level=logging.ERROR, log_to_driver=False,
                 runtime_env={"env_vars": {"SAMBENCH_CHECKPOINT_SECONDS": str(CHECKPOINT_SECONDS)}}, **local)
    if gpus > 0 and ray.cluster_resources().get("GPU", 0) == 0:
        raise SpecError("resources.gpu", gpus, "0 (the Ray cluster has no GPUs; "
                        "use --set resources.gpu=0 to run on CPUs)")


@contextmanager
def _sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """One driver per sweep folder: a second ``run``/``resume`` of it fails at once."""
    try:
        handle = open(sweep_dir / ".lock", "a+")
    except OSError as err:
        raise WriteError(f"cannot write into {sweep_dir}: {err.strerror or err}") from err
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
    session = f"session-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    store_callback = StoreCallback(sweep_dir, spec_hash, name, options.quiet)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cpus, "gpu": gpus}),
        param_space={"item": tune.grid_search([dict(item, cpus=cpus) for item in trials])},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=True,
                                    trial_dirname_creator=trial_dirname),
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
