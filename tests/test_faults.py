"""Fault injection on CPU with tiny trials: resume trusts only the manifest and sambench's
own checkpoints (never Tune's pickled state), refuses a planted pickle, never restarts a
checkpointed trial from scratch; callbacks never raise; SIGINT/SIGTERM end the driver in
one line with exit 130/143 and a state that resumes exactly once; a second driver of a
running sweep is refused. The repeated 10-kill run is benchmarks/reliability.py (too slow
for CI). Faults inside a running sweep: test_faults_running.py; damaged results and
failed writes: test_faults_results.py; docs/reliability.md lists them all."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness import checkpoints, store
from harness.config import TrialConfig
from harness.spec import parse_spec
from harness.trial import build_trial

pytestmark = pytest.mark.timeout(300)

TINY = """
name: {name}
dataset: digits
model: mlp
width: 16
epochs: {epochs}
batch_size: 64
lr: 0.1
optimizer: sgd
grid:
  seed: [0, 1, 2]
resources: {{cpu: 1}}
"""


class _Payload:
    """What an attacker plants: unpickling it runs ``touch <marker>``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant_sweep(root: Path, epochs: int) -> tuple[Path, list[str]]:
    """A sweep folder as ``sambench run`` leaves it when killed: the manifest and nothing
    recorded. Returns the folder and the trial ids in grid order."""
    spec = parse_spec(TINY.format(name="planted", epochs=epochs))
    sweep_dir = root / "planted"
    trials = [{"trial_id": store.config_id(spec.name, c), "trial": c.to_dict()} for c in spec.trials]
    store.write_spec(sweep_dir, spec.text, spec.spec_hash, {
        "sweep": spec.name, "spec_hash": spec.spec_hash, "storage": str(sweep_dir / "tune"),
        "resources": spec.resources, "max_failures": 0, "max_concurrent": None, "trials": trials})
    return sweep_dir, [t["trial_id"] for t in trials]


def _save(folder: Path, trial, records: list[dict], done: bool) -> None:
    folder.mkdir(parents=True)
    summary = {"status": trial.status, "info": trial.info(), "node": "planted", "done": done}
    checkpoints.save(folder, trial.state_dict(), records, summary)


def _run_for(cfg: TrialConfig, evaluations: int | None):
    trial = build_trial(cfg)
    stream = trial.records()
    records = list(stream) if evaluations is None else [next(stream) for _ in range(evaluations)]
    return trial, records


# -- checkpoints: safe loading -------------------------------------------------------------
def test_a_planted_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "ckpt"
    folder.mkdir()
    torch.save({"model": _Payload(marker)}, folder / checkpoints.STATE)
    (folder / checkpoints.RECORDS).write_text("[]")
    with pytest.raises(checkpoints.UnsafeCheckpoint, match="refusing to load .*state.pt"):
        checkpoints.load(folder)
    assert not marker.exists()
    # A truncated file is corrupt, not unsafe: the caller may fall back to an older one.
    data = (folder / checkpoints.STATE).read_bytes()
    (folder / checkpoints.STATE).write_bytes(data[: len(data) // 2])
    with pytest.raises((ValueError, RuntimeError)):
        checkpoints.load(folder)


def test_find_ranks_by_progress_and_skips_incomplete_uploads(tmp_path):
    cfg = TrialConfig.from_dict({"optimizer": "sgd", "width": 8, "epochs": 3})
    trial, records = _run_for(cfg, 2)
    _save(tmp_path / "session-a" / "t1" / "checkpoint_000000", trial, records[:1], done=False)
    _save(tmp_path / "session-b" / "t1" / "checkpoint_000000", trial, records, done=False)
    (tmp_path / "session-b" / "t1" / "checkpoint_000001").mkdir()  # an upload cut short
    _save(tmp_path / "session-a" / "other" / "checkpoint_000000", trial, records, done=False)
    found = checkpoints.find(str(tmp_path), ["t1", "t2"])
    assert list(found) == ["t1"]
    assert found["t1"] == [str(tmp_path / "session-b" / "t1" / "checkpoint_000000"),
                           str(tmp_path / "session-a" / "t1" / "checkpoint_000000")]


# -- resume: only the manifest and sambench's checkpoints are trusted ----------------------------
@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_resume_trusts_the_manifest_continues_checkpoints_and_refuses_pickles(tmp_path, local_ray):
    from harness.sweep import SweepOptions, resume_sweep

    sweep_dir, (finished, partial, poisoned) = _plant_sweep(tmp_path, epochs=3)
    tune_dir = sweep_dir / "tune"
    configs = {t["trial_id"]: TrialConfig.from_dict(t["trial"]) for t in store.open_manifest(sweep_dir)["trials"]}
    # 1. finished, but killed before its rows were written; 2. one epoch in;
    # 3. a checkpoint someone replaced with a pickle that runs code.
    trial, done_records = _run_for(configs[finished], None)
    _save(tune_dir / "session-old" / finished / "checkpoint_000002", trial, done_records, done=True)
    trial, head = _run_for(configs[partial], 1)
    _save(tune_dir / "session-old" / partial / "checkpoint_000000", trial, head, done=False)
    marker = tmp_path / "pwned"
    _save(tune_dir / "session-old" / poisoned / "checkpoint_000000", trial, [], done=False)
    torch.save({"model": _Payload(marker)}, tune_dir / "session-old" / poisoned / "checkpoint_000000" / "state.pt")
    # Tune's own saved state, stale and pickled, as a killed driver may leave it: never read.
    (tune_dir / "run").mkdir()
    (tune_dir / "run" / "tuner.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    (tune_dir / "run" / "experiment_state-2026.json").write_text('{"trial_data": [["{}", "no item"]]}')

    resume_sweep(sweep_dir, SweepOptions(quiet=True))

    assert not marker.exists()
    trials = store.read_trials(sweep_dir).set_index("trial_id")
    epochs = store.read_epochs(sweep_dir, include_partial=False)
    assert trials.loc[finished, "status"] == "ok" and trials.loc[partial, "status"] == "ok"
    assert trials.loc[poisoned, "status"] == "error" and "refusing to load" in trials.loc[poisoned, "error"]
    assert "UnsafeCheckpoint" in (sweep_dir / "errors" / f"{poisoned}.txt").read_text()
    rows = {tid: group.sort_values("iteration") for tid, group in epochs.groupby("trial_id", observed=True)}
    # The finished trial is written from its checkpoint, not rerun: its timings are the planted ones.
    assert rows[finished]["time_total"].tolist() == [r["time_total"] for r in done_records]
    # The partial one continued from epoch 1 (the planted record) instead of starting over.
    assert rows[partial]["epoch"].tolist() == [1.0, 2.0, 3.0]
    assert rows[partial]["time_total"].iloc[0] == head[0]["time_total"]
    assert len(epochs) == 6 and not epochs.duplicated(["trial_id", "iteration"]).any()


def test_callbacks_never_raise(tmp_path, capsys):
    from harness.tune_callbacks import StoreCallback

    class Broken:  # a restored trial whose config lacks "item", as an early kill once left
        config: dict = {}
        checkpoint = None
        error_file = None
        num_failures = 1
        status = "ERROR"

    callback = StoreCallback(tmp_path, "hash", "sweep", quiet=True)
    for event in ("on_trial_start", "on_trial_complete", "on_trial_error", "on_trial_recover"):
        getattr(callback, event)(0, [Broken()], Broken())
    callback.on_trial_result(0, [Broken()], Broken(), {"new_records": [{}]})
    err = capsys.readouterr().err
    assert "on_trial_error failed (KeyError" in err and "on_trial_result failed (KeyError" in err


# -- signals -------------------------------------------------------------------------------
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_when_nothing_is_pending_still_says_so(signum, code, tmp_path, monkeypatch, capsys):
    """Everything is recorded, the driver is printing its summary: the signal is not lost
    (``run && report`` must not carry on) and the line says how far the sweep got."""
    from fakes import make_results

    from harness import cli

    sweep = make_results(tmp_path, n_seeds=1, epochs=2)
    total = len(store.open_manifest(sweep)["trials"])
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs in a background job
    monkeypatch.setattr(cli, "_print_status", lambda *a, **k: signal.raise_signal(signum))
    assert cli.main(["resume", str(sweep)]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"sambench resume: interrupted: {total} of {total} trials recorded; "
                       f"continue with `sambench resume {sweep.resolve()}`")
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


@pytest.mark.timeout(900)
def test_sigint_mid_sweep_refuses_a_second_driver_and_resumes_exactly_once(tmp_path, capsys):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(TINY.format(name="interrupted", epochs=12).replace("width: 16", "width: 64"))
    results = tmp_path / "results"
    sweep_dir = results / "interrupted"
    env = dict(os.environ, SAMBENCH_CHECKPOINT_SECONDS="0", PYTHONUNBUFFERED="1")
    driver = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(spec_file), "--results", str(results)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    deadline = time.monotonic() + 400  # generous: a loaded 2-core CI box starts Ray slowly
    while not list((sweep_dir / "epochs").glob("*.partial.parquet")) if sweep_dir.exists() else True:
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()[0]
        time.sleep(0.2)
    # A second driver of the same sweep, while this one runs, is refused in one line.
    from harness import cli

    for argv in (["run", str(spec_file), "--results", str(results)], ["resume", str(sweep_dir)]):
        assert cli.main(argv) == 2
        assert capsys.readouterr().err == (f"sambench {argv[0]}: error: {sweep_dir.resolve()} is in use by "
                                           "another sambench run or resume\n")
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == 130, output
    assert "Traceback" not in output
    last = output.strip().splitlines()[-1]
    assert last.startswith("sambench run: interrupted: ") and last.endswith(
        f"of 3 trials recorded; continue with `sambench resume {sweep_dir.resolve()}`"), output
    time.sleep(2)
    leftover = subprocess.run(["pgrep", "-g", str(driver.pid)], capture_output=True, text=True).stdout.split()
    assert not leftover, f"processes left behind in the driver's group: {leftover}"
    resumed = subprocess.run([sys.executable, "-m", "harness.cli", "resume", str(sweep_dir)], env=env,
                             capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    epochs = store.read_epochs(sweep_dir, include_partial=False)
    assert len(store.read_trials(sweep_dir)) == 3 and len(epochs) == 3 * 12
    assert not epochs.duplicated(["trial_id", "iteration"]).any()


# -- exposure ------------------------------------------------------------------------------
def test_dashboard_is_off_unless_asked_and_then_on_localhost(monkeypatch):
    import ray

    from harness import sweep

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 1.0})
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    sweep._join_cluster({"cpu": 1}, sweep.SweepOptions())
    sweep._join_cluster({"cpu": 1}, sweep.SweepOptions(dashboard=True))
    assert calls[0]["include_dashboard"] is False
    assert calls[1]["include_dashboard"] is True and calls[1]["dashboard_host"] == "127.0.0.1"


def test_provenance_holds_named_versions_and_hardware_only(monkeypatch):
    from harness.provenance import _provenance, provenance

    monkeypatch.setenv("SAMBENCH_TEST_SECRET", "hunter2-token")
    _provenance.cache_clear()
    facts = provenance()
    assert set(facts) == set(store.PROVENANCE_COLUMNS)
    assert all(v is None or isinstance(v, (str, bool)) and len(str(v)) < 200 for v in facts.values())
    assert "hunter2" not in json.dumps(facts)


# -- damaged results -----------------------------------------------------------------------
def test_a_truncated_parquet_file_is_named_skipped_and_the_rest_is_read(tmp_path):
    from fakes import make_results

    sweep = make_results(tmp_path, n_seeds=2, epochs=3)
    trials, epochs = store.read_trials(sweep), store.read_epochs(sweep)
    victim = sorted((sweep / "epochs").glob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.warns(store.UnreadableFileWarning, match=str(victim)):
        damaged = store.read_epochs(sweep)
    assert len(store.read_trials(sweep)) == len(trials)
    assert victim.stem not in set(damaged["trial_id"].astype(str))
    assert len(damaged) == len(epochs) - (epochs["trial_id"].astype(str) == victim.stem).sum()
