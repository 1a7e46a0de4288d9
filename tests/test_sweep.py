"""Sweeps on Ray Tune end to end: Parquet written once per trial, retries, a simulated
two-node cluster, kill-and-resume, and two sweeps into one results root at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness import store
from harness.records import RECORD_FIELDS
from harness.spec import parse_spec

pytestmark = pytest.mark.timeout(240)

TINY = """
name: {name}
dataset: digits
model: mlp
width: 16
epochs: {epochs}
batch_size: 64
lr: 0.1
grid:
  optimizer: [sgd, sam]
  rho: [0.05]
  seed: [0, 1]
resources: {{cpu: 1}}
"""


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _check_exactly_once(sweep_dir: Path, n_trials: int, epochs: int) -> None:
    trials = store.read_trials(sweep_dir)
    epoch_rows = store.read_epochs(sweep_dir, include_partial=False)
    assert len(trials) == n_trials and trials["trial_id"].is_unique
    assert len(epoch_rows) == n_trials * epochs
    per_trial = epoch_rows.groupby("trial_id", observed=True)["epoch"].apply(sorted)
    assert all(list(v) == [float(e) for e in range(1, epochs + 1)] for v in per_trial)
    # Raw files too: one trials file per trial, no leftovers from the writer.
    assert len(list((sweep_dir / "trials").glob("*.parquet"))) == n_trials
    assert not list(sweep_dir.rglob("*.tmp*"))


def test_local_sweep_writes_both_tables(tmp_path, local_ray):
    from harness.sweep import SweepOptions, run_sweep

    spec = parse_spec(TINY.format(name="tiny", epochs=2))
    sweep_dir = run_sweep(spec, tmp_path, SweepOptions(quiet=True))
    _check_exactly_once(sweep_dir, n_trials=4, epochs=2)
    trials = store.read_trials(sweep_dir)
    assert set(trials["status"].astype(str)) == {"ok"}
    assert set(trials["method"].astype(str)) == {"SGD", "SAM"}
    assert (trials.loc[trials["optimizer"] == "sam", "grad_evals"] ==
            2 * trials.loc[trials["optimizer"] == "sgd", "grad_evals"].to_numpy()).all()
    for column in ("node", "device_used", "git_commit", "torch_version", "ray_version", "time_train",
                   "final_test_acc", "best_test_acc", "spec_hash"):
        assert trials[column].notna().all(), column
    assert trials["concurrency"].between(1, 2).all()  # 4 trials on 2 CPUs
    epochs = store.read_epochs(sweep_dir)
    assert set(RECORD_FIELDS) <= set(epochs.columns)
    # Running the finished spec again runs nothing; a different spec under the same name
    # is refused instead of mixing two grids in one folder.
    from harness.sweep import SweepError

    before = sorted(p.name for p in sweep_dir.rglob("*.parquet"))
    assert run_sweep(spec, tmp_path, SweepOptions(quiet=True)) == sweep_dir
    assert sorted(p.name for p in sweep_dir.rglob("*.parquet")) == before
    with pytest.raises(SweepError, match="different spec"):
        run_sweep(parse_spec(TINY.format(name="tiny", epochs=3)), tmp_path, SweepOptions(quiet=True))


def test_failing_trial_is_retried_then_recorded_and_diverged_is_not(tmp_path, local_ray):
    from harness.sweep import SweepOptions, run_sweep

    empty = tmp_path / "no-cifar-here"
    empty.mkdir()
    spec = parse_spec(textwrap.dedent(f"""
        name: failures
        model: mlp
        epochs: 1
        optimizer: sgd
        grid:
          - {{dataset: cifar10, data_root: "{empty}", lr: 0.1}}
          - {{dataset: digits, lr: 1.0e+6}}
        max_failures: 1
    """))
    sweep_dir = run_sweep(spec, tmp_path / "results", SweepOptions(quiet=True))
    trials = store.read_trials(sweep_dir).set_index("dataset")
    failed, diverged = trials.loc["cifar10"], trials.loc["digits"]
    assert failed["status"] == "error" and failed["attempts"] == 2
    assert "cifar-10" in failed["error"] and str(empty) in failed["error"]
    assert diverged["status"] == "diverged" and diverged["attempts"] == 1


def test_gpu_request_on_cpu_cluster_is_a_clear_error(tmp_path, local_ray):
    from harness.spec import SpecError
    from harness.sweep import SweepOptions, run_sweep

    spec = parse_spec(TINY.format(name="gpu", epochs=1) + "\n", overrides=["resources.gpu=0.5"])
    with pytest.raises(SpecError, match="resources.gpu"):
        run_sweep(spec, tmp_path, SweepOptions(quiet=True))
    assert not list(tmp_path.iterdir())  # refused before any results file was written


def test_two_node_cluster_spreads_trials(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from harness.sweep import SweepOptions, run_sweep

    ray.shutdown()  # leave the module's local Ray: this test needs its own two-node cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        spec = parse_spec(TINY.format(name="two-nodes", epochs=2))
        sweep_dir = run_sweep(spec, tmp_path, SweepOptions(address=cluster.address, quiet=True))
        _check_exactly_once(sweep_dir, n_trials=4, epochs=2)
        trials = store.read_trials(sweep_dir)
        assert trials["node"].nunique() == 2
        assert (trials["concurrency"] == 1).all()  # one CPU a node: each ran alone on its node
    finally:
        ray.shutdown()
        cluster.shutdown()


def _sambench(*args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, SAMBENCH_CHECKPOINT_SECONDS="0", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kwargs)


def test_kill_and_resume_gives_exactly_once_results(tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(TINY.format(name="killed", epochs=15).replace("width: 16", "width: 64"))
    results = tmp_path / "results"
    driver = _sambench("run", str(spec_file), "--results", str(results))
    sweep_dir = results / "killed"
    deadline = time.monotonic() + 120
    # Kill the driver once a trial is in progress (checkpointed) but not all are finished.
    while time.monotonic() < deadline:
        partial = list((sweep_dir / "epochs").glob("*.partial.parquet")) if sweep_dir.exists() else []
        if partial and len(store.completed_trial_ids(sweep_dir)) < 4:
            break
        assert driver.poll() is None, driver.communicate()[0]
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert len(store.completed_trial_ids(sweep_dir)) < 4
    resumed = _sambench("resume", str(sweep_dir))
    output, _ = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, output
    _check_exactly_once(sweep_dir, n_trials=4, epochs=15)


def test_two_sweeps_into_one_root_at_once(tmp_path):
    results = tmp_path / "results"
    procs = []
    for name in ("left", "right"):
        spec_file = tmp_path / f"{name}.yaml"
        spec_file.write_text(TINY.format(name=name, epochs=2))
        procs.append(_sambench("run", str(spec_file), "--results", str(results), "--max-concurrent", "1"))
    for proc in procs:
        output, _ = proc.communicate(timeout=200)
        assert proc.returncode == 0, output
    for name in ("left", "right"):
        _check_exactly_once(results / name, n_trials=4, epochs=2)


def test_concurrency_counts_running_trials_on_the_same_node():
    from types import SimpleNamespace as Trial

    from harness.tune_callbacks import running_beside

    me = Trial(status="RUNNING", last_result={"node": "h/a"})
    trials = [me, Trial(status="RUNNING", last_result={"node": "h/a"}),
              Trial(status="RUNNING", last_result={"node": "h/b"}),      # another node
              Trial(status="TERMINATED", last_result={"node": "h/a"}),   # finished
              Trial(status="RUNNING", last_result={})]                   # not reported yet: node unknown
    assert running_beside(trials, me, "h/a") == 2
    assert running_beside([me], me, "h/a") == 1 and running_beside(trials, me, None) == 1
