"""Aggregations against values computed by hand on small tables shaped like analysis.load's."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import aggregate as agg
from harness.config import ConfigError

T_975_2 = 4.302653  # Student t, 97.5% quantile, 2 degrees of freedom (any printed table)


def _trials(rows: list[dict]) -> pd.DataFrame:
    """A trials table: text columns as category, counts as Int64, as analysis.load gives them."""
    base = {"dataset": "digits", "model": "mlp", "sampler": "reshuffle", "status": "ok", "lr": 0.1,
            "epochs_done": 3.0, "device_used": "cpu"}
    frame = pd.DataFrame([base | r for r in rows])
    for column in ("trial_id", "method", "dataset", "model", "sampler", "status", "lam", "device_used"):
        if column in frame:
            frame[column] = frame[column].astype("category")
    frame["seed"] = frame["seed"].astype("Int64")
    return frame


def _epochs(curves: dict[str, dict[str, list]]) -> pd.DataFrame:
    """An epochs table from {trial_id: {column: values per evaluation}}."""
    parts = []
    for tid, columns in curves.items():
        n = len(next(iter(columns.values())))
        part = pd.DataFrame({"trial_id": tid, "iteration": np.arange(1, n + 1) * 10, "epoch": np.arange(1.0, n + 1)})
        parts.append(part.assign(**columns))
    frame = pd.concat(parts, ignore_index=True)
    frame["trial_id"] = frame["trial_id"].astype("category")
    frame["iteration"] = frame["iteration"].astype("Int64")
    if "grad_evals" in frame:
        frame["grad_evals"] = frame["grad_evals"].astype("Int64")
    return frame


@pytest.fixture
def two_methods() -> pd.DataFrame:
    sgd = [0.80, 0.82, 0.84]
    sam = [0.85, 0.86, 0.90]
    rows = [{"trial_id": f"g{i}", "method": "SGD", "lam": None, "rho": 0.0, "seed": i, "final_test_acc": v,
             "best_test_acc": v + 0.01} for i, v in enumerate(sgd)]
    rows += [{"trial_id": f"s{i}", "method": "SAM", "lam": "1", "rho": 0.05, "seed": i, "final_test_acc": v,
              "best_test_acc": v + 0.01} for i, v in enumerate(sam)]
    rows.append({"trial_id": "x0", "method": "SAM", "lam": "1", "rho": 0.05, "seed": 3, "final_test_acc": 0.1,
                 "best_test_acc": 0.1, "status": "diverged"})
    return _trials(rows)


def test_seed_statistics_match_hand_values(two_methods):
    table = agg.seed_summary(two_methods, metric="test_acc", at="final")
    sgd = table[table["method"] == "SGD"].iloc[0]
    assert sgd["test_acc_final_mean"] == pytest.approx(0.82)
    assert sgd["test_acc_final_std"] == pytest.approx(0.02)
    assert sgd["test_acc_final_n"] == 3
    half = T_975_2 * 0.02 / math.sqrt(3)  # 0.049683
    assert sgd["test_acc_final_ci95_low"] == pytest.approx(0.82 - half, abs=1e-6)
    assert sgd["test_acc_final_ci95_high"] == pytest.approx(0.82 + half, abs=1e-6)
    sam = table[table["method"] == "SAM"].iloc[0]
    # the diverged trial is not a seed of the statistics
    assert sam["test_acc_final_n"] == 3
    assert sam["test_acc_final_mean"] == pytest.approx(0.87)
    assert sam["test_acc_final_std"] == pytest.approx(math.sqrt(0.0007))
    best = agg.seed_summary(two_methods, at="best")
    assert best.loc[best["method"] == "SGD", "test_acc_best_epoch_mean"].iloc[0] == pytest.approx(0.83)


def test_any_config_columns_group_and_a_single_seed_has_no_interval(two_methods):
    values = agg.trial_values(two_methods, None, "test_acc", "final", statuses=("ok", "diverged"))
    by_rho = agg.summarize(values, "test_acc_final", ["rho"])
    assert list(by_rho["rho"]) == [0.0, 0.05]
    assert list(by_rho["test_acc_final_n"]) == [3, 4]
    one = agg.summarize(values[values["trial_id"] == "g0"], "test_acc_final", ["method"])
    assert one["test_acc_final_n"].iloc[0] == 1 and np.isnan(one["test_acc_final_ci95_low"].iloc[0])
    half = T_975_2 / math.sqrt(3)  # sd of 1, 2, 3 is 1
    assert agg.mean_ci([1.0, 2.0, 3.0]) == pytest.approx((2.0, 2.0 - half, 2.0 + half), abs=1e-5)


def test_value_names_state_the_selection():
    assert agg.value_column("test_acc", "final") == "test_acc_final"
    assert agg.value_column("train_loss", "best") == "train_loss_best_epoch"
    assert agg.metric_of("test_acc_at_equal_grad_evals") == "test_acc"
    with pytest.raises(ConfigError, match="at"):
        agg.value_column("test_acc", "last")


def test_final_and_best_epoch_values_from_records():
    epochs = _epochs({"a": {"test_acc": [0.5, 0.9, 0.7], "train_loss": [1.0, 0.5, 0.4]},
                      "b": {"test_acc": [0.6, 0.8, 0.8], "train_loss": [0.9, 0.7, 0.6]}})
    final = agg.per_trial(epochs, "test_acc", "final").set_index("trial_id")
    assert final.loc["a", "test_acc_final"] == 0.7 and final.loc["a", "epoch_final"] == 3.0
    best = agg.per_trial(epochs, "test_acc", "best").set_index("trial_id")
    assert best.loc["a", "test_acc_best_epoch"] == 0.9 and best.loc["a", "epoch_best_epoch"] == 2.0
    assert best.loc["b", "epoch_best_epoch"] == 2.0  # a tie goes to the earliest evaluation
    # another metric read at the best-accuracy epoch; a loss's own best is its minimum
    at_best = agg.per_trial(epochs, "train_loss", "best", rank_by="test_acc").set_index("trial_id")
    assert at_best.loc["a", "train_loss_best_epoch"] == 0.5
    assert agg.per_trial(epochs, "train_loss", "best").set_index("trial_id").loc["a", "train_loss_best_epoch"] == 0.4


def _curves_frame():
    """SGD (lr 0.1 and 0.05) and SAM, seeds 0-2: accuracy, training time and gradient counts."""
    rows, curves = [], {}
    sgd_best = {(0.1, 0): 0.80, (0.1, 1): 0.82, (0.1, 2): 0.90, (0.05, 0): 0.85, (0.05, 1): 0.81, (0.05, 2): 0.70}
    for (lr, seed), top in sgd_best.items():
        tid = f"sgd-{lr}-{seed}"
        curves[tid] = {"test_acc": [top - 0.2, top - 0.1, top], "time_train": [1.0, 2.0, 3.0],
                       "grad_evals": [10, 20, 30]}
        rows.append({"trial_id": tid, "method": "SGD", "lam": None, "rho": 0.0, "lr": lr, "seed": seed,
                     "final_test_acc": top, "time_train": 3.0})
    for seed, acc in enumerate(([0.7, 0.84, 0.88], [0.75, 0.86, 0.9], [0.6, 0.7, 0.8])):
        tid = f"sam-{seed}"
        rows.append({"trial_id": tid, "method": "SAM", "lam": "1", "rho": 0.05, "lr": 0.1, "seed": seed,
                     "final_test_acc": acc[-1], "time_train": 6.3})
        curves[tid] = {"test_acc": acc, "time_train": [2.1, 4.2, 6.3], "grad_evals": [20, 40, 60]}
    return _trials(rows), _epochs(curves)


def test_reference_target_is_algoperf_median_of_per_seed_best():
    trials, epochs = _curves_frame()
    target = agg.reference_target(trials, epochs, "SGD")
    # per seed, the best over SGD's two configs: 0.85, 0.82, 0.90 -> median 0.85
    assert target["target"].iloc[0] == pytest.approx(0.85)
    # an even count of seeds takes the easier middle value: 0.85 and 0.82 -> 0.82 for accuracy
    two_seeds = trials[trials["seed"] < 2]
    assert agg.reference_target(two_seeds, epochs, "SGD")["target"].iloc[0] == pytest.approx(0.82)


def test_time_to_target_reads_first_crossing():
    trials, epochs = _curves_frame()
    ttt = agg.time_to_target(trials, epochs, 0.83).set_index("trial_id")
    # sam-0 reaches 0.84 at its second evaluation: 4.2 s and 40 gradients
    assert ttt.loc["sam-0", "time_to_target"] == pytest.approx(4.2)
    assert ttt.loc["sam-0", "grad_evals_to_target"] == 40
    assert ttt.loc["sam-0", "epoch_to_target"] == 2.0
    assert not ttt.loc["sam-2", "reached"] and np.isnan(ttt.loc["sam-2", "time_to_target"])
    assert ttt.loc["sgd-0.1-2", "time_to_target"] == pytest.approx(3.0)  # 0.8 at epoch 2 < 0.83; 0.9 at 3
    # per method: SAM's median over its seeds [4.2, 4.2, inf] is 4.2; SGD lr=0.1 [inf, inf, 3.0] -> inf,
    # lr=0.05 [3.0 (0.85), inf (0.81), inf] -> inf: SGD never reaches the target in the median
    per_method = agg.method_time_to_target(ttt.reset_index(), "time_to_target").set_index("method")
    assert per_method.loc["SAM", "time_to_target"] == pytest.approx(4.2)
    assert per_method.loc["SAM", "seeds_reached"] == 2 and per_method.loc["SAM", "seeds"] == 3
    assert np.isinf(per_method.loc["SGD", "time_to_target"])


def test_equal_compute_reads_sam_at_sgds_budget():
    trials, epochs = _curves_frame()
    values = agg.at_equal_cost(trials, epochs).set_index("trial_id")
    assert (values["budget"] == 30).all()  # SGD's whole run
    assert values.loc["sam-1", "test_acc_at_equal_grad_evals"] == 0.75  # 20 gradients <= 30 < 40
    assert values.loc["sam-1", "epoch_at_equal_grad_evals"] == 1.0
    assert values.loc["sgd-0.1-2", "test_acc_at_equal_grad_evals"] == pytest.approx(0.9)


def test_welch_comparison_against_best_baseline(two_methods):
    values = agg.trial_values(two_methods, None, "test_acc", "final")
    cmp = agg.compare_with_baseline(values, "test_acc_final", "SGD").iloc[0]
    assert cmp["method"] == "SAM" and cmp["baseline_mean"] == pytest.approx(0.82)
    assert cmp["test_acc_final_diff"] == pytest.approx(0.05)
    # Welch: se = sqrt(0.0007/3 + 0.0004/3) = 0.019149, dof 3.7231, t = 2.8598
    assert cmp["test_acc_final_diff_ci95_low"] == pytest.approx(0.05 - 0.054761, abs=1e-5)
    assert cmp["test_acc_final_diff_ci95_high"] == pytest.approx(0.05 + 0.054761, abs=1e-5)
    assert cmp["verdict"] == "no clear difference"


def test_performance_profile_fractions():
    rows = []
    for workload, times in (("w1", {"A": 10.0, "B": 20.0}), ("w2", {"A": None, "B": 15.0})):
        for method, t in times.items():
            rows.append({"dataset": workload, "model": "m", "sampler": "s", "method": method, "seed": 0,
                         "time_to_target": t, "reached": t is not None})
    ttt = pd.DataFrame(rows)
    ratios = agg.performance_ratios(ttt).set_index(["dataset", "method"])["ratio"]
    assert ratios[("w1", "A")] == 1.0 and ratios[("w1", "B")] == 2.0
    assert np.isinf(ratios[("w2", "A")]) and ratios[("w2", "B")] == 1.0
    profile = agg.performance_profile(agg.performance_ratios(ttt), taus=[1.0, 1.5, 2.0, 10.0])
    got = profile.pivot(index="tau", columns="method", values="fraction")
    assert list(got["A"]) == [0.5, 0.5, 0.5, 0.5]
    assert list(got["B"]) == [0.5, 0.5, 1.0, 1.0]


def test_epoch_time_relative_to_sgd_and_table2_cells(two_methods):
    trials = two_methods.assign(time_train=[1.0, 1.1, 0.9, 2.0, 2.2, 2.4, 9.0], epochs_done=1.0)
    ratios = agg.epoch_time_ratio(trials).set_index("trial_id")
    assert ratios.loc["s1", "time_per_epoch_vs_SGD"] == pytest.approx(2.2)
    assert "x0" not in ratios.index  # diverged trials are not timed
    extra = _trials([{"trial_id": "u0", "method": "Unified (lam=0.5)", "lam": "0.5", "rho": 0.05, "seed": 0,
                      "final_test_acc": 0.70, "lr": 0.1},
                     {"trial_id": "u1", "method": "Unified (lam=0.5)", "lam": "0.5", "rho": 0.05, "seed": 0,
                      "final_test_acc": 0.75, "lr": 0.2}])
    cells = agg.lam_rho_summary(pd.concat([two_methods, extra], ignore_index=True))
    assert list(cells["lam_key"].fillna("SGD")) == ["SGD", "0.5", "1"]
    # the lam=0.5 cell holds two learning rates: the better one (0.2) is shown
    assert cells.loc[cells["lam_key"] == "0.5", "test_acc_final_mean"].iloc[0] == pytest.approx(0.75)
