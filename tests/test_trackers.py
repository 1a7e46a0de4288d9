"""Experiment trackers, offline: what a trial sends is read back with each tracker's own
reader (TensorBoard's event accumulator, the MLflow client on a file store, W&B's offline
run folder). A missing extra is a one-line error; a failing tracker never raises."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.records import new_record
from harness.trackers import EXTRA, Trackers, require, step_of

CONFIG = {"dataset": "digits", "optimizer": "sam", "lr": 0.05, "rho": 0.1, "epochs": 3, "lam": None}
RECORDS = [new_record(epoch=float(e), iteration=10 * e, train_loss=1.0 / e, val_acc=0.5 + e / 10, test_acc=0.4 + e / 10)
           for e in (1, 2, 3)]


def _send(names, folder: Path, trial_id: str = "abc123") -> None:
    trackers = Trackers(names, folder, "demo-sweep")
    trackers.start(trial_id, CONFIG)
    trackers.log(trial_id, RECORDS[:2])   # records arrive in batches, as Tune reports them
    trackers.log(trial_id, RECORDS[2:])
    trackers.finish(trial_id, "ok")
    trackers.close()


def test_step_is_the_epoch_for_epoch_trials_and_the_iteration_otherwise():
    assert step_of(CONFIG, RECORDS[1]) == 2
    assert step_of({"iterations": 100, "epochs": None}, new_record(epoch=0.5, iteration=50)) == 50


def test_tensorboard_events_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _send(["tensorboard"], tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard" / "abc123"), size_guidance={"scalars": 0}).Reload()
    scalars = events.Scalars("val_acc")
    assert [s.step for s in scalars] == [1, 2, 3]
    assert [round(s.value, 6) for s in scalars] == [0.6, 0.7, 0.8]
    assert {"train_loss", "test_acc", "iteration"} <= set(events.Tags()["scalars"])


def test_mlflow_file_store_read_back_with_the_client(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _send(["mlflow"], tmp_path)
    client = MlflowClient(tracking_uri=(tmp_path / "mlflow").as_uri())
    experiment = client.get_experiment_by_name("demo-sweep")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "abc123" and run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.05" and run.data.params["optimizer"] == "sam"
    history = client.get_metric_history(run.info.run_id, "test_acc")
    assert [(m.step, round(m.value, 6)) for m in history] == [(1, 0.5), (2, 0.6), (3, 0.7)]


def test_wandb_offline_run_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    _send(["wandb"], tmp_path)
    [run_dir] = (tmp_path / "wandb" / "wandb").glob("offline-run-*-abc123")
    # The run log (what `wandb sync` uploads) is protobuf: its strings appear as bytes.
    log = (run_dir / "run-abc123.wandb").read_bytes()
    for text in (b"demo-sweep", b"optimizer", b"val_acc", b"test_acc", b"train_loss"):
        assert text in log


def test_missing_extra_is_one_line_naming_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        require(["tensorboard", "wandb"])
    assert EXTRA in str(err.value) and "wandb" in str(err.value) and "\n" not in str(err.value)


def test_cli_refuses_a_missing_tracker_before_any_work(tmp_path, monkeypatch, capsys):
    from harness.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\nepochs: 1\nlr: 0.1\n")
    assert main(["run", str(spec), "--results", str(tmp_path / "r"), "--tracker", "mlflow"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "sambench[trackers]" in err
    assert not (tmp_path / "r").exists()


def test_a_failing_tracker_is_switched_off_and_recorded_once(tmp_path, capsys):
    blocked = tmp_path / "trackers"
    blocked.mkdir()
    (blocked / "tensorboard").write_text("a file where the event folder should go")
    trackers = Trackers(["tensorboard", "mlflow"], blocked, "demo-sweep")
    for trial_id in ("t1", "t2"):
        trackers.start(trial_id, CONFIG)   # tensorboard fails here, once; mlflow goes on
        trackers.log(trial_id, RECORDS)
        trackers.finish(trial_id, "ok")
    assert list(trackers.active) == ["mlflow"]
    assert capsys.readouterr().err.count("tracker tensorboard failed") == 1
    assert (blocked / "errors.log").read_text().count("\n") == 1


def test_tracker_callback_never_raises_into_tune(tmp_path):
    """The Ray-side adapter with a broken tracker: every hook returns normally, so Tune
    (and the store callback beside it) carry on."""
    from harness.tune_callbacks import StoreCallback, TrackerCallback

    class FakeTrial:
        config = {"item": {"trial_id": "t1", "trial": CONFIG}}

    (tmp_path / "trackers").write_text("not a folder")
    store_callback = StoreCallback(tmp_path, "hash", "demo", quiet=True)
    callback = TrackerCallback(("tensorboard",), tmp_path, "demo", store_callback)
    callback.on_trial_start(0, [], FakeTrial())
    callback.on_trial_result(0, [], FakeTrial(), {"new_records": RECORDS})
    callback.on_trial_complete(0, [], FakeTrial())
    assert callback.trackers.active == {}
    import pickle

    assert pickle.loads(pickle.dumps(callback))._trackers is None  # Tune's saved state stays picklable
