"""The report end to end: a real tiny sweep (digits, Ray Tune, the real store) gives an
HTML page that embeds every figure and tables whose numbers are the Parquet's; partial,
failed and minimal sweeps still give a report that says what is missing; the same Parquet
gives the same tables."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy.stats import gmean

from analysis import report
from analysis.figures import FIGURES
from fakes import make_results
from harness import store
from harness.config import ConfigError
from harness.records import new_record

pytestmark = pytest.mark.timeout(240)

TINY = """
name: tiny-report
dataset: digits
model: mlp
width: 16
epochs: 2
batch_size: 64
lr: 0.1
sharpness: {every: 2, samples: 64}
rho: 0.05
grid:
  optimizer: [sgd, sam]
  seed: [0, 1]
resources: {cpu: 1}
"""


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory) -> Path:
    import ray

    from harness.spec import parse_spec
    from harness.sweep import SweepOptions, run_sweep

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        return run_sweep(parse_spec(TINY), tmp_path_factory.mktemp("results"), SweepOptions(quiet=True))
    finally:
        ray.shutdown()


def _parquet_trials(sweep_dir: Path) -> pd.DataFrame:
    """The trials table read with plain pyarrow, not with the code under test."""
    files = sorted((sweep_dir / "trials").glob("*.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def _only(monkeypatch, *names: str) -> None:
    """Draw only these figures: tests of the report's text need not render all of them."""
    monkeypatch.setattr(report, "FIGURES", tuple(s for s in FIGURES if s.name in names))


def test_report_of_a_real_tiny_sweep(real_sweep):
    html_path = report.build_report(real_sweep)
    out = real_sweep / "report"
    assert html_path == out / "report.html" and (out / "report.md").is_file()
    html = html_path.read_text()
    figures = sorted(p.name for p in (out / "figures").iterdir())
    # classification with sharpness, SGD and one lam: no lam, sampler or theory figures
    # one workload: no performance profile either
    expected = {"curves_epoch", "curves_time", "curves_grad_evals", "sharpness_vs_accuracy",
                "sharpness_over_training", "wallclock", "time_to_target"}
    assert {Path(f).stem for f in figures} == expected
    for name in figures:
        assert f"figures/{name}" in html and f'id="{Path(name).stem}"' in html
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(images) == len(figures) and all(src.startswith("data:image/png;base64,") for src in images)
    assert "http://" not in html and "https://" not in html  # viewable offline

    parquet = _parquet_trials(real_sweep)
    assert len(parquet) == 4 and set(parquet["status"]) == {"ok"}
    trials_csv = pd.read_csv(out / "tables" / "trials.csv").set_index("trial_id")
    for row in parquet.itertuples():
        assert trials_csv.loc[row.trial_id, "final_test_acc"] == row.final_test_acc
    summary = pd.read_csv(out / "tables" / "summary_final.csv").set_index("method")
    for method, group in parquet.groupby("method"):
        values = group["final_test_acc"].to_numpy()
        assert summary.loc[method, "test_acc_final_mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert summary.loc[method, "test_acc_final_std"] == pytest.approx(values.std(ddof=1), rel=1e-12)
        assert summary.loc[method, "test_acc_final_n"] == len(values)
    best = pd.read_csv(out / "tables" / "summary_best_epoch.csv").set_index("method")
    assert best.loc["SGD", "test_acc_best_epoch_mean"] == pytest.approx(
        parquet.loc[parquet["method"] == "SGD", "best_test_acc"].mean(), rel=1e-12)
    equal = pd.read_csv(out / "tables" / "vs_baseline_equal_epochs.csv").iloc[0]
    sam = parquet.loc[parquet["method"] == "SAM", "final_test_acc"]
    sgd = parquet.loc[parquet["method"] == "SGD", "final_test_acc"]
    assert equal["test_acc_final_diff"] == pytest.approx(sam.mean() - sgd.mean(), rel=1e-12)
    text = (out / "report.md").read_text()
    assert "name: tiny-report" in text and parquet["git_commit"].iloc[0] in text
    assert "accuracy_vs_lam (Final test accuracy against λ, one line per ρ): no workload has more than one lam " \
        "value" in text
    assert "| ok | 4 |" in text and "Every trial of the grid has a result." in text
    assert "at equal epochs" in text and "Selection used test data" in text
    # a constant learning rate: the reading at SGD's total budget is fair and made
    assert "at equal gradient evaluations (constant learning rate" in text
    assert "Sharpness: final λ_max" in text and (out / "tables" / "lam_max.csv").is_file()
    assert "| hosts | 1 (1 Ray node session(s)) |" in text


def test_partial_sweep_says_what_is_missing(tmp_path, monkeypatch):
    _only(monkeypatch, "curves_epoch")
    sweep = make_results(tmp_path, n_seeds=3, epochs=4, diverged=True, incomplete=True)
    grid = store.read_manifest(sweep)
    extra = dict(grid["trials"][0]["trial"], seed=99)
    grid["trials"].append({"trial_id": "notstarted01", "trial": extra})
    report.build_report(sweep, tmp_path / "out", expected=grid)
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| diverged | 1 |" in text and "| in progress or interrupted | 1 |" in text
    assert "| not started | 1 |" in text and "| expected (grid) | 17 |" in text
    missing = pd.read_csv(tmp_path / "out" / "tables" / "missing.csv")
    assert set(missing["state"]) == {"in progress or interrupted", "not started"}
    assert "notstarted01" in set(missing["trial_id"])
    assert missing.loc[missing["state"] != "not started", "epochs so far"].iloc[0] == 2.0
    # the diverged USAM seed is listed and left out of the statistics
    assert re.search(r"\(USAM, seed 2\): diverged", text)
    summary = pd.read_csv(tmp_path / "out" / "tables" / "summary_final.csv").set_index("method")
    assert summary.loc["USAM", "test_acc_final_n"] == 2 and summary.loc["SAM", "test_acc_final_n"] == 3


def test_timings_from_different_concurrency_are_flagged(tmp_path, monkeypatch):
    _only(monkeypatch)
    calm = report.build_report(make_results(tmp_path / "calm", n_seeds=2, epochs=3)).with_name("report.md").read_text()
    assert "different numbers of other trials" not in calm
    busy = report.build_report(make_results(tmp_path / "busy", n_seeds=2, epochs=3, busy_sam=True))
    text = busy.with_name("report.md").read_text()
    assert "In 1 row(s) the compared trials ran beside different numbers of other trials (from 1 to 3" in text
    table = pd.read_csv(busy.parent / "tables" / "wallclock.csv").set_index("method")
    assert table.loc["SAM", "concurrency_max"] == 3 and table.loc["USAM", "concurrency_max"] == 1


def test_minimal_results_without_sharpness_or_accuracy(tmp_path, monkeypatch):
    _only(monkeypatch, "sharpness_vs_accuracy", "theory_lam", "curves_epoch")
    sweep = make_results(tmp_path, n_seeds=2, epochs=3, synthetic=True, with_sharpness=False)
    html = report.build_report(sweep, fmt="png").read_text()
    text = (sweep / "report" / "report.md").read_text()
    assert "relative suboptimality" in text
    assert [p.stem for p in (sweep / "report" / "figures").iterdir()] == ["theory_lam"]
    assert "sharpness_vs_accuracy (Sharpness against test accuracy, one point per trial): the trials have no " \
        "final_lam_max values" in text
    assert "curves_epoch (Learning curves against epochs): the trials have no final_test_acc values" in text
    assert html.count("<img ") == 1
    summary = pd.read_csv(sweep / "report" / "tables" / "summary_final.csv")
    parquet = _parquet_trials(sweep)
    sgd = parquet.loc[parquet["method"] == "SGD", "final_rel_subopt"]
    # a positive ratio spanning decades: geometric mean, as the theory figures show it
    assert summary.loc[summary["method"] == "SGD", "rel_subopt_final_geomean"].iloc[0] == pytest.approx(gmean(sgd))
    assert "relative suboptimality (final) geometric mean" in text


def test_same_parquet_gives_the_same_report(tmp_path, monkeypatch):
    _only(monkeypatch, "heatmap_rho_lam")
    sweep = make_results(tmp_path, n_seeds=2, epochs=3)
    first, second = tmp_path / "a", tmp_path / "b"
    report.build_report(sweep, first)
    report.build_report(sweep, second)
    names = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert Path("figures/heatmap_rho_lam.png") in names
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_figure_formats_and_a_bad_one(tmp_path, monkeypatch):
    _only(monkeypatch, "wallclock")
    sweep = make_results(tmp_path, n_seeds=2, epochs=2)
    html = report.build_report(sweep, tmp_path / "svg", fmt="svg").read_text()
    assert (tmp_path / "svg" / "figures" / "wallclock.svg").is_file() and "data:image/svg+xml;base64," in html
    html = report.build_report(sweep, tmp_path / "pdf", fmt="pdf").read_text()
    assert (tmp_path / "pdf" / "figures" / "wallclock.pdf").read_bytes().startswith(b"%PDF")
    assert "data:image/png;base64," in html and "figures/wallclock.pdf" in html
    with pytest.raises(ConfigError, match="format"):
        report.build_report(sweep, tmp_path / "x", fmt="jpg")


def test_a_sweep_with_no_finished_trial(tmp_path, monkeypatch):
    _only(monkeypatch, "curves_epoch")
    sweep = tmp_path / "early"
    config = {"dataset": "digits", "optimizer": "sgd", "lr": 0.1, "epochs": 3, "seed": 0}
    tid = store.trial_id("early", config)
    grid = {"sweep": "early", "trials": [{"trial_id": tid, "trial": config}]}
    store.write_spec(sweep, "name: early\n", "e" * 40, grid)
    store.write_progress(sweep, tid, [new_record(epoch=1.0, iteration=5, grad_evals=5, test_acc=0.5, train_loss=1.0)])
    text = Path(report.build_report(sweep)).with_name("report.md").read_text()
    assert "No trial has finished successfully yet" in text and "| in progress or interrupted | 1 |" in text
    assert tid in text and np.isclose(pd.read_csv(sweep / "report" / "tables" / "missing.csv")["epochs so far"][0], 1.0)


def _sweep(root: Path, name: str, runs: list[tuple[dict, float]]) -> Path:
    """A digits sweep of (config overrides, final accuracy) runs written through the store,
    one evaluation per epoch, SAM-family runs paying two gradients a step."""
    from harness.config import TrialConfig

    configs = [TrialConfig(dataset="digits", lr=0.1, batch_size=64, **over).to_dict() for over, _ in runs]
    grid = [{"trial_id": store.trial_id(name, c), "trial": c} for c in configs]
    sweep = root / name
    store.write_spec(sweep, f"name: {name}\n", "0" * 40, {"sweep": name, "trials": grid})
    for config, (_, top), item in zip(configs, runs, grid):
        steps = 2 if config["optimizer"] != "sgd" else 1
        n = config["epochs"]
        records = [new_record(epoch=float(e), iteration=10 * e, grad_evals=10 * e * steps, train_loss=1.0 / e,
                              test_acc=top - 0.02 * (n - e), time_train=0.1 * e * steps, time_total=0.2 * e)
                   for e in range(1, n + 1)]
        row = store.trial_row(sweep=name, spec_hash="0" * 40, trial_id=item["trial_id"], config=config,
                              records=records, status="ok", error=None, attempts=1, info={"device": "cpu"},
                              node="host-a/0123abcd", provenance=store.provenance())
        store.write_trial(sweep, row, records)
    return sweep


def _cosine_runs(sgd_epochs: tuple[int, ...]) -> list[tuple[dict, float]]:
    runs = [({"optimizer": "sam", "rho": 0.05, "epochs": 4, "lr_schedule": "cosine", "seed": s}, 0.90 + 0.01 * s)
            for s in range(3)]
    runs += [({"optimizer": "sgd", "epochs": e, "lr_schedule": "cosine", "seed": s}, 0.88 + 0.01 * s)
             for e in sgd_epochs for s in range(3)]
    return runs


def test_equal_compute_is_budget_matched_or_not_claimed(tmp_path, monkeypatch):
    _only(monkeypatch)
    mid = report.build_report(_sweep(tmp_path, "mid", _cosine_runs((4,)))).with_name("report.md").read_text()
    assert "At equal gradient evaluations: not compared" in mid and "cosine" in mid
    assert not (tmp_path / "mid" / "report" / "tables" / "vs_baseline_equal_compute.csv").exists()
    # SGD also at twice the epochs: the 8-epoch SGD runs paid what 4-epoch SAM runs paid
    out = report.build_report(_sweep(tmp_path, "fair", _cosine_runs((4, 8)))).parent
    text = (out / "report.md").read_text()
    assert "budget-matched runs at equal gradient evaluations, final values (budget 80)" in text
    fair = pd.read_csv(out / "tables" / "vs_baseline_equal_compute.csv")
    assert list(fair["budget"]) == [80.0] and list(fair["baseline_epochs"]) == [8]
    assert fair["test_acc_final_diff"].iloc[0] == pytest.approx(0.02)


def test_report_baseline_option_and_a_bad_filter(tmp_path, monkeypatch, capsys):
    from harness import cli

    _only(monkeypatch)
    sweep = _sweep(tmp_path, "base", _cosine_runs((4,)))
    assert cli.main(["report", str(sweep), "--baseline", "optimizer=sam"]) == 0
    text = (sweep / "report" / "report.md").read_text()
    assert "Against the baseline optimizer=sam" in text and "Against optimizer=sam at equal epochs" in text
    cmp = pd.read_csv(sweep / "report" / "tables" / "vs_baseline_equal_epochs.csv")
    assert list(cmp["method"]) == ["SGD"] and cmp["test_acc_final_diff"].iloc[0] == pytest.approx(-0.02)
    capsys.readouterr()
    assert cli.main(["report", str(sweep), "--baseline", "colour=red"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "baseline" in err[0] and "'colour'" in err[0]
    assert cli.main(["report", str(sweep), "--baseline", "optimizer"]) == 2
    assert cli.main(["report", str(sweep), "--baseline", "optimizer=adam"]) == 2
    assert "optimizer: sam, sgd" in capsys.readouterr().err
