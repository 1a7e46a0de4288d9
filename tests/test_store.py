"""The Parquet store: exact round trip and dtypes, dedupe, atomic commits, parallel writers,
plain-pyarrow readability, and analysis.load's tidy frames."""

from __future__ import annotations

import math
import multiprocessing
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import analysis
from fakes import METHODS, make_results
from harness import store
from harness.config import TrialConfig
from harness.files import WriteError
from harness.records import RECORD_FIELDS, new_record

ROOT = Path(__file__).resolve().parent.parent


def _config(**changes) -> dict:
    base = dict(optimizer="unified", lam="1/t", rho=0.05, lr=0.1, epochs=3, eval_every=1,
                sharpness_every=2, sharpness_trace=True)
    return TrialConfig(**(base | changes)).to_dict()


def _records(n: int, offset: float = 0.0) -> list[dict]:
    """n evaluations; lam_max on even epochs only, trace never, test_acc peaking at epoch 2."""
    return [new_record(epoch=float(e), iteration=10 * e, grad_evals=20 * e, train_loss=1.0 / e + offset,
                       test_acc=[0.5, 0.8, 0.7, 0.75][(e - 1) % 4] + offset, weight_norm=3.0 + e,
                       lam_max=5.0 * e if e % 2 == 0 else None, lam_max_hvps=30 if e % 2 == 0 else None,
                       lr=0.1, rho=0.05, lam=1.0 / (10 * e), time_train=0.5 * e, time_eval=0.1 * e,
                       time_sharpness=0.0, time_total=0.7 * e)
            for e in range(1, n + 1)]


def _write(sweep_dir: Path, config: dict, records: list[dict], status: str = "ok",
           error: str | None = None) -> str:
    tid = store.trial_id(sweep_dir.name, config)
    row = store.trial_row(sweep=sweep_dir.name, spec_hash="abc", trial_id=tid, config=config,
                          records=records, status=status, error=error, attempts=1,
                          info={"sampler_desc": "reshuffle(b=128)", "device": "cpu", "problem_L": 2.5},
                          node="node-1", provenance=store.provenance())
    store.write_trial(sweep_dir, row, records)
    return tid


def _leftovers(folder: Path) -> list[Path]:
    return list(folder.rglob("*.tmp*"))


# -- identity, labels, rows --------------------------------------------------------------
def test_trial_id_is_deterministic_and_depends_on_sweep_and_config():
    cfg = _config()
    assert store.trial_id("s", cfg) == store.trial_id("s", dict(reversed(list(cfg.items()))))
    assert re.fullmatch(r"[0-9a-f]{12}", store.trial_id("s", cfg))
    assert store.trial_id("s", cfg) != store.trial_id("t", cfg)
    assert store.trial_id("s", cfg) != store.trial_id("s", _config(seed=1))


def test_method_labels_and_lam_text():
    labels = [store.method_label({"optimizer": o, "lam": lam}) for o, lam, _ in METHODS]
    assert labels == ["SGD", "USAM", "SAM", "Unified (lam=0.5)", "Unified (lam=1/t)"]
    assert store.method_label({"optimizer": "sam", "lam": 1.0, "rho": 0.0}) == "SAM"
    assert [store.lam_text(x) for x in (None, 1.0, 0.0, 0.25, "1-1/t")] == [None, "1", "0", "0.25", "1-1/t"]


def test_trial_row_summaries_and_flattening():
    records = _records(4)
    records.append(dict(records[-1], test_acc=0.1))  # iteration 40 reported again: the last one counts
    cfg = _config()
    nested = {k: v for k, v in cfg.items() if not k.startswith("sharpness_")}
    nested["sharpness"] = {"every": 2, "trace": True, "samples": 512, "method": "lanczos"}
    row = store.trial_row(sweep="s", spec_hash="h", trial_id="t", config=nested, records=records,
                          status="ok", error="boom\n  in line 3", attempts=2, info={"device": "cpu"},
                          node="n", provenance={"git_commit": "x"})
    assert row["sharpness_every"] == 2 and row["lam"] == "1/t" and row["method"] == "Unified (lam=1/t)"
    assert row["error"] == "boom in line 3" and row["device_used"] == "cpu" and row["device"] == "auto"
    assert (row["epochs_done"], row["iterations_done"], row["grad_evals"]) == (4.0, 40, 80)
    assert row["final_test_acc"] == 0.1 and row["best_test_acc"] == 0.8 and row["best_epoch"] == 2.0
    assert row["final_lam_max"] == 20.0 and row["final_trace"] is None and row["final_weight_norm"] == 7.0
    assert row["time_total"] == pytest.approx(2.8) and row["problem_L"] is None and row["gpu_model"] is None
    empty = store.trial_row(sweep="s", spec_hash="h", trial_id="t", config=cfg, records=[], status="error",
                            error="x", attempts=1, info={}, node="n", provenance={})
    assert empty["epochs_done"] is None and empty["best_test_acc"] is None


@pytest.mark.parametrize("bad", [{"status": "crashed"}, {"info": {"gpu": "x"}}, {"config": {"lr": 0.1, "typo": 1}}])
def test_trial_row_rejects_unknown_values(bad):
    kwargs = dict(sweep="s", spec_hash="h", trial_id="t", config=_config(), records=[], status="ok",
                  error=None, attempts=1, info={}, node="n", provenance={}) | bad
    with pytest.raises(ValueError):
        store.trial_row(**kwargs)


def test_provenance_is_cached_and_names_this_checkout():
    first = store.provenance()
    first["hostname"] = "changed"
    again = store.provenance()
    assert set(again) == set(store.PROVENANCE_COLUMNS) and again["hostname"] != "changed"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0:
        assert again["git_commit"] == head.stdout.strip() and isinstance(again["git_dirty"], bool)
    import torch

    assert again["torch_version"] == torch.__version__.split("+")[0] or again["torch_version"] == torch.__version__


# -- round trip and dtypes ----------------------------------------------------------------
def test_round_trip_keeps_every_value_and_type(tmp_path):
    sweep_dir = tmp_path / "rt"
    cfg = _config(data_root=None, augment=None, width=None, step_rule=None, lr_schedule="cosine")
    records = _records(3)
    tid = _write(sweep_dir, cfg, records, status="diverged")
    trials = store.read_trials(sweep_dir)
    assert len(trials) == 1 and list(trials.columns) == store.TRIALS_SCHEMA.names
    row = trials.iloc[0]
    expected = store.config_columns(cfg)
    for name, value in expected.items():
        assert (pd.isna(row[name]) and value is None) or row[name] == value, name
    assert row["trial_id"] == tid and row["status"] == "diverged" and row["problem_L"] == 2.5
    assert math.isnan(row["problem_mu"]) and pd.isna(row["error"]) and row["attempts"] == 1
    assert row["finished_at"].tzinfo is not None
    epochs = store.read_epochs(sweep_dir)
    assert list(epochs.columns) == store.EPOCHS_SCHEMA.names and len(epochs) == 3
    for got, want in zip(epochs.to_dict("records"), records):
        for name in RECORD_FIELDS:
            assert (pd.isna(got[name]) and want[name] is None) or got[name] == want[name], name
    _check_dtypes(trials, store.TRIALS_SCHEMA)
    _check_dtypes(epochs, store.EPOCHS_SCHEMA)
    assert list(trials["method"].cat.categories) == ["Unified (lam=1/t)"]


def _check_dtypes(frame: pd.DataFrame, schema: pa.Schema) -> None:
    for field in schema:
        dtype = frame[field.name].dtype
        if pa.types.is_string(field.type):
            assert isinstance(dtype, pd.CategoricalDtype), field.name
            assert all(isinstance(c, str) for c in dtype.categories), field.name  # labels, not codes
        elif field.type == pa.int64():
            assert dtype == pd.Int64Dtype(), field.name
        elif field.type == pa.bool_():
            assert dtype == pd.BooleanDtype(), field.name
        elif field.type == pa.float64():
            assert dtype == "float64", field.name
        else:
            assert str(dtype) == "datetime64[us, UTC]", field.name


def test_empty_or_missing_folder_reads_as_typed_empty_frames(tmp_path):
    trials, epochs = store.read_trials(tmp_path / "nothing"), store.read_epochs(tmp_path)
    assert len(trials) == 0 and len(epochs) == 0
    _check_dtypes(trials, store.TRIALS_SCHEMA)
    _check_dtypes(epochs, store.EPOCHS_SCHEMA)
    assert store.completed_trial_ids(tmp_path) == set()


def test_files_read_in_plain_pyarrow_with_metadata(tmp_path):
    sweep_dir = tmp_path / "plain"
    tid = _write(sweep_dir, _config(), _records(3))
    (sweep_dir / "trials" / ".junk.parquet.1.tmp").write_bytes(b"half a file")  # a crashed writer
    trials = pq.read_table(sweep_dir / "trials")
    epochs = pq.read_table(sweep_dir / "epochs")
    assert trials.schema.remove_metadata() == store.TRIALS_SCHEMA and trials.num_rows == 1
    assert epochs.schema.remove_metadata() == store.EPOCHS_SCHEMA and epochs.num_rows == 3
    assert trials.column("lam").to_pylist() == ["1/t"] and epochs.column("trial_id").to_pylist() == [tid] * 3
    for path in (sweep_dir / "trials" / f"{tid}.parquet", sweep_dir / "epochs" / f"{tid}.parquet"):
        meta = store.file_metadata(path)
        assert (meta["sweep"], meta["spec_hash"], meta["trial_id"]) == ("plain", "abc", tid)
        assert meta["provenance"] == store.provenance()


# -- dedupe and commits -------------------------------------------------------------------
def test_rewrite_of_a_trial_replaces_it(tmp_path):
    sweep_dir = tmp_path / "rerun"
    tid = _write(sweep_dir, _config(), _records(2, offset=0.01), status="error", error="CUDA OOM")
    assert _write(sweep_dir, _config(), _records(3)) == tid
    trials, epochs = store.read_trials(sweep_dir), store.read_epochs(sweep_dir)
    assert len(trials) == 1 and trials["status"].iloc[0] == "ok" and pd.isna(trials["error"].iloc[0])
    assert epochs["train_loss"].tolist() == [r["train_loss"] for r in _records(3)]
    assert len(list((sweep_dir / "trials").iterdir())) == 1 and not _leftovers(sweep_dir)


def test_progress_file_then_final_file(tmp_path):
    sweep_dir = tmp_path / "progress"
    cfg = _config()
    tid = store.trial_id("progress", cfg)
    store.write_progress(sweep_dir, tid, _records(2, offset=0.5))
    assert len(store.read_epochs(sweep_dir)) == 2 and len(store.read_epochs(sweep_dir, include_partial=False)) == 0
    assert store.completed_trial_ids(sweep_dir) == set()
    _write(sweep_dir, cfg, _records(3))
    assert not (sweep_dir / "epochs" / f"{tid}.partial.parquet").exists()
    # A stale progress file beside the final one (written late, or left by a crash) is ignored.
    store.write_progress(sweep_dir, tid, _records(4, offset=0.5))
    for include in (True, False):
        epochs = store.read_epochs(sweep_dir, include_partial=include)
        assert epochs["train_loss"].tolist() == [r["train_loss"] for r in _records(3)]


def test_rows_written_twice_are_counted_once(tmp_path):
    sweep_dir = tmp_path / "twice"
    tid = _write(sweep_dir, _config(), _records(3))
    shutil.copy(sweep_dir / "trials" / f"{tid}.parquet", sweep_dir / "trials" / "copy.parquet")
    shutil.copy(sweep_dir / "epochs" / f"{tid}.parquet", sweep_dir / "epochs" / "copy.parquet")
    assert pq.read_table(sweep_dir / "epochs").num_rows == 6  # plain readers see both copies
    assert len(store.read_trials(sweep_dir)) == 1
    epochs = store.read_epochs(sweep_dir)
    assert epochs["iteration"].tolist() == [10, 20, 30]


def test_crash_between_epochs_and_trials_leaves_trial_incomplete(tmp_path, monkeypatch):
    sweep_dir = tmp_path / "crash"
    done = _write(sweep_dir, _config(seed=0), _records(2))
    real = store._write_atomic

    def crash_on_trials(table, path, meta):
        if path.parent.name == "trials":
            raise OSError("killed")
        real(table, path, meta)

    lost = store.trial_id("crash", _config(seed=1))
    store.write_progress(sweep_dir, lost, _records(2, offset=0.5))
    monkeypatch.setattr(store, "_write_atomic", crash_on_trials)
    with pytest.raises(OSError):
        _write(sweep_dir, _config(seed=1), _records(3))
    monkeypatch.undo()
    assert [p.name for p in (sweep_dir / "epochs").iterdir() if lost in p.name] == [f"{lost}.parquet"]
    orphan = store.read_epochs(sweep_dir).query("trial_id == @lost")
    assert orphan["train_loss"].tolist() == [r["train_loss"] for r in _records(3)]
    assert store.completed_trial_ids(sweep_dir) == {done}
    assert set(store.read_trials(sweep_dir)["trial_id"]) == {done}
    assert set(store.read_epochs(sweep_dir, include_partial=False)["trial_id"]) == {done}
    _, epochs = analysis.load(sweep_dir)
    assert epochs.groupby("trial_id", observed=True)["status"].first().to_dict() == {done: "ok", lost: "incomplete"}
    assert not _leftovers(sweep_dir)


def test_a_failing_file_write_leaves_no_file(tmp_path, monkeypatch):
    def half_then_fail(table, where, **kwargs):
        where.write(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", half_then_fail)
    with pytest.raises(WriteError) as failed:  # an OSError too: callers that catch those still do
        _write(tmp_path / "full", _config(), _records(2))
    assert str(failed.value).endswith(f".parquet into {tmp_path / 'full' / 'epochs'}: disk full")
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "full").rglob("*") if p.is_file()] == [".store.lock"]
    assert store.completed_trial_ids(tmp_path / "full") == set()


def test_completed_ids_can_leave_out_errors(tmp_path):
    sweep_dir = tmp_path / "err"
    ok = _write(sweep_dir, _config(seed=0), _records(1))
    bad = _write(sweep_dir, _config(seed=1), [], status="error", error="boom")
    assert store.completed_trial_ids(sweep_dir) == {ok, bad}
    assert store.completed_trial_ids(sweep_dir, include_errors=False) == {ok}


def test_two_sweeps_written_in_parallel_do_not_interfere(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=make_results, args=(tmp_path,),
                           kwargs={"sweep": name, "n_seeds": 2, "epochs": 3}) for name in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert [p.name for p in store.sweep_dirs(tmp_path)] == ["a", "b"]
    ids = {}
    for name in ("a", "b"):
        trials = store.read_trials(tmp_path / name)
        assert len(trials) == 10 and set(trials["sweep"]) == {name}
        assert len(store.read_epochs(tmp_path / name)) == 30
        ids[name] = set(trials["trial_id"])
    assert not ids["a"] & ids["b"]  # same grid, different sweeps: different ids
    trials, epochs = analysis.load(tmp_path)
    assert len(trials) == 20 and len(epochs) == 60 and not _leftovers(tmp_path)


# -- compaction ---------------------------------------------------------------------------
def _frames(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    trials, epochs = analysis.load(path)
    return trials.drop(columns="finished_at"), epochs.drop(columns="finished_at")


def test_compaction_merges_files_and_changes_nothing_read(tmp_path):
    sweep_dir = make_results(tmp_path, n_seeds=2, epochs=3, diverged=True, incomplete=True)
    before = _frames(sweep_dir)
    assert store.compact(sweep_dir) == 10 and store.compact(sweep_dir) == 0
    assert len(_parquet(sweep_dir / "trials")) == 1
    assert len(_parquet(sweep_dir / "epochs")) == 2  # the batch and the running trial's progress
    for got, want in zip(_frames(sweep_dir), before):
        pd.testing.assert_frame_equal(got, want)
    assert not _leftovers(sweep_dir)


def _parquet(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.parquet"))


def test_rerun_after_compaction_wins_and_plain_readers_agree(tmp_path):
    sweep_dir = tmp_path / "again"
    tid = _write(sweep_dir, _config(), _records(2, offset=0.01), status="error", error="OOM")
    other = _write(sweep_dir, _config(seed=3), _records(2))
    store.compact(sweep_dir)
    _write(sweep_dir, _config(), _records(3))
    store.write_progress(sweep_dir, "running12345", _records(1))
    for step in ("per-trial file", "second batch"):
        trials, epochs = store.read_trials(sweep_dir), store.read_epochs(sweep_dir)
        assert trials.set_index("trial_id")["status"].to_dict() == {tid: "ok", other: "ok"}, step
        mine = epochs[epochs["trial_id"] == tid]
        assert mine["train_loss"].tolist() == [r["train_loss"] for r in _records(3)], step
        assert len(epochs) == 3 + 2 + 1, step
        # The same answer from plain pyarrow: latest commit per trial, epochs of that commit.
        raw = pq.read_table(sweep_dir / "trials")
        latest = raw.group_by("trial_id").aggregate([("finished_at", "max")])
        latest = latest.rename_columns(["trial_id", "finished_at"])
        committed = pq.read_table(sweep_dir / "epochs").join(latest, ["trial_id", "finished_at"],
                                                             join_type="left semi")
        assert committed.num_rows == 5 and raw.num_rows == 3  # the old commit is still on disk
        store.compact(sweep_dir)


def test_a_crash_inside_compaction_changes_nothing_read(tmp_path):
    sweep_dir = make_results(tmp_path, n_seeds=1, epochs=2)
    before = _frames(sweep_dir)
    backup = tmp_path / "backup"
    shutil.copytree(sweep_dir, backup)
    store.compact(sweep_dir)
    for sub in ("trials", "epochs"):  # as if killed before deleting the merged files
        for name in _parquet(backup / sub):
            shutil.copy(backup / sub / name, sweep_dir / sub / name)
    for got, want in zip(_frames(sweep_dir), before):
        pd.testing.assert_frame_equal(got, want)
    (batch,) = [n for n in _parquet(sweep_dir / "trials") if n.startswith(store.BATCH)]
    (sweep_dir / "trials" / batch).unlink()  # killed even before the trials batch was written
    for got, want in zip(_frames(sweep_dir), before):
        pd.testing.assert_frame_equal(got, want)
    assert store.compact(sweep_dir) == 5
    assert len(_parquet(sweep_dir / "epochs")) == 1  # the crashed compaction's epochs batch is gone
    for got, want in zip(_frames(sweep_dir), before):
        pd.testing.assert_frame_equal(got, want)


def test_writes_compact_automatically(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "COMPACT_AT", 3)
    sweep_dir = tmp_path / "auto"
    ids = {_write(sweep_dir, _config(seed=seed), _records(2)) for seed in range(4)}
    names = _parquet(sweep_dir / "trials")
    assert len(names) == 2 and sum(n.startswith(store.BATCH) for n in names) == 1
    assert set(store.read_trials(sweep_dir)["trial_id"]) == ids and len(store.read_epochs(sweep_dir)) == 8


def test_a_read_racing_a_writer_is_repeated(tmp_path, monkeypatch):
    sweep_dir = tmp_path / "race"
    tid = _write(sweep_dir, _config(seed=0), _records(2), status="error", error="x")
    _write(sweep_dir, _config(seed=1), _records(2))
    real, calls, busy = store._read, [], []

    def read_then_interfere(files, schema):
        if schema is store.EPOCHS_SCHEMA and len(calls) < 2 and not busy:
            calls.append(files)
            busy.append(True)  # the writers below read too
            if len(calls) == 1:
                _write(sweep_dir, _config(seed=0), _records(3))  # trials were read before this commit
            else:
                store.compact(sweep_dir)  # the listed per-trial files vanish
            busy.pop()
        return real(files, schema)

    monkeypatch.setattr(store, "_read", read_then_interfere)
    trials, epochs = store.scan([sweep_dir])
    assert len(calls) == 2 and all(store.BATCH not in f for f in calls[1])
    assert dict(zip(trials.column("trial_id").to_pylist(), trials.column("status").to_pylist()))[tid] == "ok"
    assert epochs.filter(pa.compute.equal(epochs.column("trial_id"), tid)).num_rows == 3


# -- manifest and load --------------------------------------------------------------------
def test_spec_and_manifest_round_trip(tmp_path):
    manifest = {"sweep": "m", "trials": [{"trial_id": "abc", "trial": _config()}], "resources": {"cpu": 1}}
    store.write_spec(tmp_path / "m", "name: m  # exact text\n", "h" * 40, manifest)
    assert store.read_manifest(tmp_path / "m") == manifest
    assert store.read_spec(tmp_path / "m") == ("name: m  # exact text\n", "h" * 40)
    assert store.is_sweep_dir(tmp_path / "m") and not _leftovers(tmp_path)
    with pytest.raises(ValueError):
        store.write_spec(tmp_path / "m", "", "h", {"trials": {"abc": {}}})


def test_load_gives_tidy_typed_frames(tmp_path):
    sweep_dir = make_results(tmp_path, n_seeds=2, epochs=4, diverged=True, incomplete=True)
    trials, epochs = analysis.load(sweep_dir)
    assert len(trials) == 10 and set(trials["status"]) == {"ok", "diverged"}
    assert list(trials["method"].cat.categories) == ["SGD", "USAM", "SAM", "Unified (lam=0.5)", "Unified (lam=1/t)"]
    # 9 full trials x 4 evaluations, the diverged one 2, the running one 2 (from its progress file)
    assert len(epochs) == 9 * 4 + 2 + 2
    assert epochs.groupby("status", observed=True).size().to_dict() == {"diverged": 2, "incomplete": 2, "ok": 36}
    running = epochs[epochs["status"] == "incomplete"]
    assert set(running["method"]) == {"SAM"} and set(running["config_rho"]) == {0.1}
    for column in ("method", "optimizer", "sampler", "config_lam", "status", "trial_id"):
        assert isinstance(epochs[column].dtype, pd.CategoricalDtype), column
    assert epochs["config_lr"].dtype == "float64" and epochs["seed"].dtype == pd.Int64Dtype()
    assert epochs["lam_max"].notna().sum() == epochs["epoch"].isin([2.0, 4.0]).sum()
    sgd = epochs[epochs["method"] == "SGD"]
    assert sgd["config_lam"].isna().all() and sgd["lam"].isna().all() and (sgd["rho"] == 0).all()
    assert epochs[["trial_id", "iteration"]].duplicated().sum() == 0
    _, complete = analysis.load(tmp_path, include_incomplete=False)
    assert len(complete) == 38 and "incomplete" not in set(complete["status"])


def test_load_synthetic_results_and_errors(tmp_path):
    trials, epochs = analysis.load(make_results(tmp_path, n_seeds=1, epochs=3, synthetic=True, with_sharpness=False))
    assert trials["final_test_acc"].isna().all() and trials["final_rel_subopt"].notna().all()
    assert trials["problem_L"].eq(50.0).all() and epochs["lam_max"].isna().all()
    with pytest.raises(FileNotFoundError):
        analysis.load(tmp_path / "missing")


def test_readme_documents_every_column():
    text = (ROOT / "results" / "README.md").read_text()
    missing = [n for n in store.TRIALS_SCHEMA.names + store.EPOCHS_SCHEMA.names if f"`{n}`" not in text]
    assert missing == []
