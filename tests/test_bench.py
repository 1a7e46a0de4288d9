"""`sambench bench`: the suite covers items 1-9, its ratios are formed per repeat with the
goal's direction, the tables carry the documented columns, and a tiny run writes them
all with its figures. Nothing here asserts on speed."""

from __future__ import annotations

import importlib

import pandas as pd
import pytest
import torch

from harness.bench import SUITE, run_suite
from harness.bench.common import Headline, Measurement
from harness.bench.results import TABLES, tables
from harness.cli import main

COLUMNS = {
    "timings": {"item", "bench", "case", "side", "repeat", "value", "unit"},
    "sides": {"item", "bench", "case", "side", "unit", "warmup", "repeats", "median", "q25", "q75",
              "min", "max", "note", "facts"},
    "ratios": {"item", "bench", "case", "side", "reference", "ratio_of", "ratio_median", "ratio_q25",
               "ratio_q75", "ratio_min", "ratio_max", "side_median", "reference_median", "unit",
               "repeats", "warmup", "goal", "goal_kind", "goal_met", "note"},
    "machine": {"cpu_model", "cores", "torch_threads", "gpu_name", "gpu_driver", "torch_version",
                "python_version", "git_commit", "size", "suite_seconds", "measured_at"},
}


def test_the_suite_covers_items_one_to_nine_one_module_each():
    items = [importlib.import_module(f"harness.bench.{name}").ITEM for name in SUITE]
    assert sorted(items) == list(range(1, 10))


def test_ratios_are_paired_per_repeat_and_goals_read_in_their_direction():
    m = Measurement(1, "x", "case", {"a": [2.0, 4.0, 6.0], "b": [1.0, 1.0, 2.0]},
                    [Headline("a", "b", goal=2.5), Headline("b", "a", goal=2.5, speedup=True)], warmup=1)
    frames = tables([m], {"cpu_model": "c"}, {"x": 1.0})
    side_over_ref, speedup = frames["ratios"].to_dict("records")
    # per repeat: 2, 4, 3 -> median 3 (the ratio of medians would be 4 / 1 = 4)
    assert side_over_ref["ratio_median"] == 3.0 and side_over_ref["ratio_min"] == 2.0
    assert side_over_ref["goal_kind"] == "<=" and side_over_ref["goal_met"] is False
    assert speedup["ratio_of"] == "reference / side" and speedup["ratio_median"] == 3.0
    assert speedup["goal_kind"] == ">=" and speedup["goal_met"] is True
    assert len(frames["timings"]) == 6 and frames["sides"]["median"].tolist() == [4.0, 1.0]


def test_a_tiny_run_writes_every_table_with_the_documented_columns(tmp_path, monkeypatch):
    def broken(ctx):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(importlib.import_module("harness.bench.hessian"), "run", broken)
    folder = run_suite("tiny", "cpu", tmp_path / "out", only=("data_path", "matrix", "hessian"),
                       log=lambda _: None)
    for name in TABLES:
        frame = pd.read_parquet(folder / f"{name}.parquet")
        assert COLUMNS[name] <= set(frame.columns), name
        assert len(frame) > 0
    ratios = pd.read_parquet(folder / "ratios.parquet")
    assert set(ratios["item"]) == {4, 9} and ratios["ratio_median"].gt(0).all()
    assert (folder / "figures" / "ratios.png").stat().st_size > 0
    assert (folder / "figures" / "timings.png").stat().st_size > 0
    assert "| 9 |" in (folder / "summary.md").read_text()
    # the broken measurement is named, the others' results are kept
    assert pd.read_parquet(folder / "machine.parquet")["failed"].iloc[0] == "hessian: RuntimeError: out of memory"


@pytest.mark.parametrize("argv,message", [
    (["bench", "--device", "cuda"], "--device: 'cuda' is not valid; allowed: cpu (this machine has no CUDA device)"),
    (["bench", "--only", "nope"], "--only: 'nope' is not valid; allowed: step, update"),
])
def test_bench_errors_are_one_line(argv, message, capsys):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_the_hessian_measurement_runs_against_the_current_operator(tmp_path):
    """Item 8 drives sambench's HessianOperator and PyHessian directly; a change of the
    operator's attributes must fail here, not only in a committed benchmark run."""
    folder = run_suite("tiny", "cpu", tmp_path / "out", only=("hessian",), log=lambda _: None)
    failed = pd.read_parquet(folder / "machine.parquet")["failed"].iloc[0]
    assert not failed, failed
    assert set(pd.read_parquet(folder / "ratios.parquet")["item"]) == {8}


def test_runner_item_runs_for_real_at_tiny_size(tmp_path):
    """Item 3 measures the trainer's hot loop against a bare loop doing the same work: it
    must run and form one headline per optimizer (never a speed assertion)."""
    folder = run_suite("tiny", "cpu", tmp_path / "out", only=("runner",), log=lambda _: None)
    assert pd.read_parquet(folder / "machine.parquet")["failed"].iloc[0] is None
    ratios = pd.read_parquet(folder / "ratios.parquet")
    assert set(zip(ratios["side"], ratios["reference"])) == {("trial runner", "bare loop")}
    assert len(ratios) == 2 and ratios["ratio_median"].gt(0).all()  # sgd and sam
