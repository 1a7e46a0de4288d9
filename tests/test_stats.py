"""analysis.stats against scipy and formulas written out, and the false-positive rates of the
report's comparisons on simulated null sweeps (fixed seeds, loose bounds)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import stats
from analysis.compare import compare_with_baseline


def test_interval_names_are_never_rounded():
    assert stats.ci_name(0.95) == "ci95" and stats.ci_name(0.995) == "ci99_5" and stats.ci_name(0.9) == "ci90"
    table = stats.summarize(pd.DataFrame({"g": [0, 0, 0], "v": [1.0, 2.0, 4.0]}), "v", ["g"], level=0.995)
    assert {"v_ci99_5_low", "v_ci99_5_high"} <= set(table)


def test_summary_matches_scipy_and_zero_variance_has_no_interval():
    x = np.array([0.91, 0.93, 0.96, 0.90])
    frame = pd.DataFrame({"g": ["a"] * 4 + ["b"] * 3, "v": [*x, 0.5, 0.5, 0.5]})
    table = stats.summarize(frame, "v", ["g"]).set_index("g")
    low, high = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert table.loc["a", "v_ci95_low"] == pytest.approx(low, abs=1e-12)
    assert table.loc["a", "v_ci95_high"] == pytest.approx(high, abs=1e-12)
    # three identical seeds: sd 0, and no interval of width 0 (scipy gives NaN too)
    assert table.loc["b", "v_std"] == 0 and np.isnan(table.loc["b", "v_ci95_low"])
    with np.errstate(invalid="ignore"):
        assert all(np.isnan(sps.t.interval(0.95, 2, loc=0.5, scale=0.0)))
    assert np.isnan(stats.mean_ci([0.5, 0.5, 0.5])[1])


def test_log_summary_is_a_geometric_mean_with_a_positive_interval():
    x = np.array([3.4e-3, 1.0e-4, 2.0e-2])  # an arithmetic interval of these goes negative
    table = stats.summarize(pd.DataFrame({"g": 0, "v": x}), "v", ["g"], log=True).iloc[0]
    assert table["v_geomean"] == pytest.approx(sps.gmean(x), rel=1e-12)
    logs = np.log10(x)
    half = sps.t.ppf(0.975, 2) * logs.std(ddof=1) / math.sqrt(3)
    assert table["v_ci95_low"] == pytest.approx(10 ** (logs.mean() - half), rel=1e-12)
    assert table["v_ci95_high"] == pytest.approx(10 ** (logs.mean() + half), rel=1e-12)
    assert table["v_ci95_low"] > 0 and stats.mean_ci(x)[1] < 0


def test_welch_matches_scipy_and_refuses_what_it_cannot_test():
    a, b = np.array([0.85, 0.86, 0.90, 0.88]), np.array([0.80, 0.82, 0.84])
    got = stats.welch(a.mean(), a.std(ddof=1), 4, b.mean(), b.std(ddof=1), 3).iloc[0]
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert got["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    low, high = ref.confidence_interval(0.95)
    assert (got["low"], got["high"]) == pytest.approx((low, high), rel=1e-9)
    assert got["reason"] == ""
    flat = stats.welch([0.5, 0.6], [0.0, 0.01], [3, 1], [0.4, 0.4], [0.02, 0.02], [3, 3])
    assert list(flat["reason"]) == [stats.ZERO_VARIANCE, stats.TOO_FEW]
    assert flat[["low", "high", "p"]].isna().all().all()


def test_holm_matches_the_step_down_formula():
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max
    assert stats.holm(p)[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(stats.holm(p)[4])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_middle_median_for_even_counts():
    assert stats.middle_median([1.0, 4.0, 2.0, 3.0]) == 2.0
    assert stats.middle_median([1.0, 4.0, 2.0, 3.0], upper=True) == 3.0
    assert stats.middle_median([5.0, 1.0, 3.0]) == np.median([5.0, 1.0, 3.0])
    assert stats.middle_median([1.0, np.inf, np.inf, 2.0]) == 2.0  # half the seeds reached it


def test_fieller_ratio_matches_the_quadratic_and_covers():
    got = stats.fieller(2.0, 0.2, 3, 1.0, 0.05, 4).iloc[0]
    va, vb = 0.04 / 3, 0.0025 / 4
    dof = (va + 4 * vb) ** 2 / (va ** 2 / 2 + 16 * vb ** 2 / 3)
    t2 = sps.t.ppf(0.975, dof) ** 2
    a_, b_, c_ = 1 - t2 * vb, -4.0, 4 - t2 * va  # (b^2 - t^2 vb) r^2 - 2 a b r + a^2 - t^2 va
    roots = sorted(np.roots([a_, b_, c_]).real)
    assert got["ratio"] == 2.0 and (got["low"], got["high"]) == pytest.approx(roots, rel=1e-12)
    # coverage over simulated seeds: Fieller near 95%, dividing by the baseline mean as if exact below it
    rng = np.random.default_rng(7)
    a = rng.normal(2.0, 0.3, (4000, 5))
    b = rng.normal(1.0, 0.1, (4000, 5))
    ci = stats.fieller(a.mean(1), a.std(1, ddof=1), 5, b.mean(1), b.std(1, ddof=1), 5)
    covered = ((ci["low"] <= 2.0) & (2.0 <= ci["high"])).mean()
    naive_half = sps.t.ppf(0.975, 4) * a.std(1, ddof=1) / math.sqrt(5) / b.mean(1)
    naive = (np.abs(a.mean(1) / b.mean(1) - 2.0) <= naive_half).mean()
    assert 0.93 <= covered <= 0.97 and naive < covered - 0.02


def _null_workloads(rng: np.random.Generator, n_work: int, n_base: int, n_cand: int, seeds: int,
                    with_validation: bool) -> pd.DataFrame:
    """Sweeps with no true difference: every configuration's seeds are N(0.9, 0.01)."""
    configs = [("SGD", i) for i in range(n_base)] + [("SAM", i) for i in range(n_cand)]
    rows = n_work * len(configs) * seeds
    frame = pd.DataFrame({
        "dataset": np.repeat(np.arange(n_work), len(configs) * seeds).astype(str),
        "method": np.tile(np.repeat([m for m, _ in configs], seeds), n_work),
        "lr": np.tile(np.repeat([float(i) for _, i in configs], seeds), n_work),
        "test_acc_final": rng.normal(0.9, 0.01, rows)})
    if with_validation:
        frame["val_acc_final"] = rng.normal(0.9, 0.01, rows)
    return frame


@pytest.mark.parametrize("with_validation", [False, True])
def test_many_to_one_false_positives_are_bounded(with_validation):
    """3 SGD learning rates, 10 SAM configurations, 3 seeds, no true difference: before this
    rule 3.4% of configurations came out 'worse' (nominal 2.5%) when the baseline was picked
    on the test seeds. Holm over the workload's comparisons keeps each direction's rate, and
    the chance of any verdict in a workload, at or below the nominal level."""
    values = _null_workloads(np.random.default_rng(15), 600, 3, 10, 3, with_validation)
    select = "val_acc_final" if with_validation else None
    cmp = compare_with_baseline(values, "test_acc_final", "SGD", config=["dataset", "method", "lr"],
                                by=["dataset"], select=select)
    assert len(cmp) == 6000
    assert (cmp["verdict"] == "worse").mean() <= 0.02
    assert (cmp["verdict"] == "better").mean() <= 0.02
    any_verdict = cmp.groupby("dataset")["verdict"].agg(lambda v: v.isin(["better", "worse"]).any()).mean()
    assert any_verdict <= 0.07


def test_one_baseline_against_twenty_has_few_false_winners():
    """The deep specs' design (1 SGD configuration, 20 SAM, 3 seeds): uncorrected, 16.5% of
    null workloads showed at least one 'better'. Holm keeps it near or below 2.5%."""
    values = _null_workloads(np.random.default_rng(20), 400, 1, 20, 3, False)
    cmp = compare_with_baseline(values, "test_acc_final", "SGD", config=["dataset", "method", "lr"],
                                by=["dataset"])
    better = cmp.groupby("dataset")["verdict"].agg(lambda v: (v == "better").any()).mean()
    assert better <= 0.05
    uncorrected = cmp.groupby("dataset")["p_value"].agg(lambda p: (p < 0.05).any()).mean()
    assert uncorrected > 0.2  # the same data without the correction: many false discoveries
