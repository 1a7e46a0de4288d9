"""Aggregations, targets, comparisons and timing against values computed by hand on small
tables shaped like analysis.load's."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import aggregate as agg
from analysis import compare, stats, targets, timing
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
    by_rho = stats.summarize(values, "test_acc_final", ["rho"])
    assert list(by_rho["rho"]) == [0.0, 0.05]
    assert list(by_rho["test_acc_final_n"]) == [3, 4]
    one = stats.summarize(values[values["trial_id"] == "g0"], "test_acc_final", ["method"])
    assert one["test_acc_final_n"].iloc[0] == 1 and np.isnan(one["test_acc_final_ci95_low"].iloc[0])
    half = T_975_2 / math.sqrt(3)  # sd of 1, 2, 3 is 1
    assert stats.mean_ci([1.0, 2.0, 3.0]) == pytest.approx((2.0, 2.0 - half, 2.0 + half), abs=1e-5)


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


def test_reference_target_fixes_the_best_configuration_first():
    trials, epochs = _curves_frame()
    target = targets.reference_target(trials, epochs, "SGD")
    # AlgoPerf: the best SGD configuration by seed mean is lr=0.1 (0.84 against 0.787); the
    # median of its seeds' bests 0.80, 0.82, 0.90 is 0.82. The old per-seed best over
    # configurations (0.85, 0.82, 0.90 -> 0.85) is a target lr=0.1 misses with 2 of 3 seeds.
    assert target["target"].iloc[0] == pytest.approx(0.82)
    assert target["lr"].iloc[0] == 0.1 and target["target_n"].iloc[0] == 3
    # a setting that varies only among other methods' trials changes nothing
    sam_momentum = trials.assign(momentum=np.where(trials["method"] == "SAM", 0.9, 0.0))
    assert targets.reference_target(sam_momentum, epochs, "SGD")["target"].iloc[0] == pytest.approx(0.82)
    # two seeds: lr=0.05 is best (0.83 against 0.81); the easier middle value of 0.85, 0.81
    two_seeds = trials[trials["seed"] < 2]
    assert targets.reference_target(two_seeds, epochs, "SGD")["target"].iloc[0] == pytest.approx(0.81)
    # SGD's chosen configuration reaches its own target with its median seed
    ttt = targets.time_to_target(trials, epochs, target)
    sgd = targets.method_time_to_target(ttt, "time_to_target").set_index("method").loc["SGD"]
    assert sgd["lr"] == 0.1 and np.isfinite(sgd["time_to_target"]) and sgd["seeds_reached"] == 2


def test_reference_target_selects_on_validation_when_recorded():
    trials, epochs = _curves_frame()
    # validation says lr=0.05 is better, whatever the test values say
    epochs["val_acc"] = np.where(epochs["trial_id"].astype(str).str.startswith("sgd-0.05"), 0.95, 0.5)
    target = targets.reference_target(trials, epochs, "SGD")
    assert target["lr"].iloc[0] == 0.05 and target["target"].iloc[0] == pytest.approx(0.81)
    assert agg.selection_for("test_acc", trials, epochs) == agg.Selection("val_acc", "validation data")
    assert agg.selection_for("test_acc", trials).uses_test_data


def test_replicates_are_seeds_and_problem_seeds():
    """One configuration, 2 seeds x 3 problem draws: the target is the median over all six
    replicates (5.2e-4), not the best over draws (2e-5)."""
    rows, curves = [], {}
    finals = {(0, 0): 2e-5, (0, 1): 5.2e-4, (0, 2): 9e-4, (1, 0): 3e-4, (1, 1): 6e-4, (1, 2): 5.2e-4}
    for (seed, problem), final in finals.items():
        tid = f"t{seed}{problem}"
        rows.append({"trial_id": tid, "method": "SGD", "lam": None, "rho": 0.0, "seed": seed,
                     "problem_seed": problem, "dataset": "ridge", "model": "linear", "final_rel_subopt": final})
        curves[tid] = {"rel_subopt": [1.0, 10 * final, final], "time_train": [1.0, 2.0, 3.0],
                       "grad_evals": [1, 2, 3]}
    trials, epochs = _trials(rows), _epochs(curves)
    target = targets.reference_target(trials, epochs, "SGD", "rel_subopt")
    assert target["target_n"].iloc[0] == 6
    assert target["target"].iloc[0] == pytest.approx(5.2e-4)  # lower is better: the easier (higher) middle


def test_failed_seeds_never_reach_the_target():
    """3 of 5 seeds diverged after a fast start, 2 fast: 2/5 reached, and the median is infinite."""
    rows, curves = [], {}
    for seed in range(5):
        tid = f"sam-{seed}"
        rows.append({"trial_id": tid, "method": "SAM", "lam": "1", "rho": 0.05, "seed": seed,
                     "status": "ok" if seed < 2 else "diverged"})
        curves[tid] = {"test_acc": [0.9, 0.95], "time_train": [1.0, 2.0], "grad_evals": [2, 4]}
    trials, epochs = _trials(rows), _epochs(curves)
    ttt = targets.time_to_target(trials, epochs, 0.85)
    assert len(ttt) == 5 and ttt["reached"].sum() == 2
    assert ttt.loc[ttt["status"] == "diverged", "time_to_target"].isna().all()
    row = targets.method_time_to_target(ttt, "time_to_target").iloc[0]
    assert (row["seeds_reached"], row["seeds"]) == (2, 5) and np.isinf(row["time_to_target"])


def test_time_to_target_reads_first_crossing():
    trials, epochs = _curves_frame()
    ttt = targets.time_to_target(trials, epochs, 0.83).set_index("trial_id")
    # sam-0 reaches 0.84 at its second evaluation: 4.2 s and 40 gradients
    assert ttt.loc["sam-0", "time_to_target"] == pytest.approx(4.2)
    assert ttt.loc["sam-0", "grad_evals_to_target"] == 40
    assert ttt.loc["sam-0", "epoch_to_target"] == 2.0
    assert not ttt.loc["sam-2", "reached"] and np.isnan(ttt.loc["sam-2", "time_to_target"])
    assert ttt.loc["sgd-0.1-2", "time_to_target"] == pytest.approx(3.0)  # 0.8 at epoch 2 < 0.83; 0.9 at 3
    # per method: SAM's median over its seeds [4.2, 4.2, inf] is 4.2; SGD lr=0.1 [inf, inf, 3.0] -> inf,
    # lr=0.05 [3.0 (0.85), inf (0.81), inf] -> inf: SGD never reaches the target in the median
    per_method = targets.method_time_to_target(ttt.reset_index(), "time_to_target").set_index("method")
    assert per_method.loc["SAM", "time_to_target"] == pytest.approx(4.2)
    assert per_method.loc["SAM", "seeds_reached"] == 2 and per_method.loc["SAM", "seeds"] == 3
    assert np.isinf(per_method.loc["SGD", "time_to_target"])
    # all-infinite ties go to the configuration with more seeds reached: lr=0.1 and 0.05 both 1/3
    # here; drop one crossing of lr=0.1 and lr=0.05 (1/3) must win over lr=0.1 (0/3)
    fewer = ttt.reset_index()
    fewer.loc[fewer["trial_id"] == "sgd-0.1-2", "reached"] = False
    sgd = targets.method_time_to_target(fewer, "time_to_target").set_index("method").loc["SGD"]
    assert sgd["lr"] == 0.05 and sgd["seeds_reached"] == 1


def test_each_time_to_target_row_describes_one_configuration():
    """SAM rho=0.05 is fastest in seconds, rho=0.1 in gradient evaluations: two rows, and each
    row's seconds and gradients are its own configuration's."""
    rows, curves = [], {}
    for rho, time, evals in ((0.05, 1.0, 40), (0.1, 2.0, 20)):
        for seed in range(2):
            tid = f"sam-{rho}-{seed}"
            rows.append({"trial_id": tid, "method": "SAM", "lam": "1", "rho": rho, "seed": seed})
            curves[tid] = {"test_acc": [0.9], "time_train": [time], "grad_evals": [evals]}
    ttt = targets.time_to_target(_trials(rows), _epochs(curves), 0.85)
    table = targets.time_to_target_table(ttt).set_index("chosen_by")
    assert table.loc["time_to_target", "rho"] == 0.05 and table.loc["time_to_target", "grad_evals_to_target"] == 40
    assert table.loc["grad_evals_to_target", "rho"] == 0.1
    assert table.loc["grad_evals_to_target", "time_to_target"] == 2.0


def test_times_are_never_compared_across_devices():
    rows = []
    for device, times in (("cpu", {"A": 10.0, "B": 20.0}), ("cuda:0 (H200)", {"A": 1.0, "B": 0.5})):
        for method, t in times.items():
            rows.append({"dataset": "w", "model": "m", "sampler": "s", "method": method, "seed": 0,
                         "device_used": device, "time_to_target": t, "reached": True})
    ratios = targets.performance_ratios(pd.DataFrame(rows)).set_index(["device_used", "method"])["ratio"]
    assert ratios[("cpu", "A")] == 1.0 and ratios[("cpu", "B")] == 2.0
    assert ratios[("cuda:0 (H200)", "B")] == 1.0 and ratios[("cuda:0 (H200)", "A")] == 2.0
    assert targets.n_workloads(targets.performance_ratios(pd.DataFrame(rows))) == 2


def test_equal_compute_reads_sam_at_sgds_budget():
    trials, epochs = _curves_frame()
    values = compare.at_equal_cost(trials, epochs).set_index("trial_id")
    assert (values["budget"] == 30).all()  # SGD's whole run
    assert values.loc["sam-1", "test_acc_at_equal_grad_evals"] == 0.75  # 20 gradients <= 30 < 40
    assert values.loc["sam-1", "epoch_at_equal_grad_evals"] == 1.0
    assert values.loc["sgd-0.1-2", "test_acc_at_equal_grad_evals"] == pytest.approx(0.9)
    assert compare.schedules_constant(trials)
    assert not compare.schedules_constant(trials.assign(lr_schedule="cosine"))


def test_budget_matched_runs_pair_sgd_at_twice_the_epochs():
    """SGD run for 6 epochs (60 gradients) against SAM for 3 (60): matched; SGD's 3-epoch run
    (30) has no SAM partner and is left out."""
    rows, curves = [], {}
    for tid, method, epochs_, evals in (("g3", "SGD", 3, 30), ("g6", "SGD", 6, 60), ("s3", "SAM", 3, 60)):
        rows.append({"trial_id": tid, "method": method, "lam": None if method == "SGD" else "1",
                     "rho": 0.0 if method == "SGD" else 0.05, "seed": 0, "epochs": epochs_})
        curves[tid] = {"test_acc": [0.5] * epochs_, "grad_evals": list(np.linspace(evals / epochs_, evals, epochs_)),
                       "time_train": list(range(1, epochs_ + 1))}
    matched = compare.budget_matched(_trials(rows), _epochs(curves)).set_index("trial_id")["budget"]
    assert dict(matched) == {"g6": 60.0, "s3": 60.0}


def test_welch_comparison_against_best_baseline(two_methods):
    values = agg.trial_values(two_methods, None, "test_acc", "final")
    cmp = compare.compare_with_baseline(values, "test_acc_final", "SGD").iloc[0]
    assert cmp["method"] == "SAM" and cmp["baseline_test_acc_final_mean"] == pytest.approx(0.82)
    assert cmp["test_acc_final_diff"] == pytest.approx(0.05)
    # Welch: se = sqrt(0.0007/3 + 0.0004/3) = 0.019149, dof 3.7231, t = 2.8598
    assert cmp["test_acc_final_diff_ci95_low"] == pytest.approx(0.05 - 0.054761, abs=1e-5)
    assert cmp["test_acc_final_diff_ci95_high"] == pytest.approx(0.05 + 0.054761, abs=1e-5)
    assert cmp["verdict"] == "unclear" and cmp["p_holm"] == pytest.approx(cmp["p_value"])


def test_a_single_seed_configuration_is_never_the_baseline(two_methods):
    lucky = _trials([{"trial_id": "g9", "method": "SGD", "lam": None, "rho": 0.0, "lr": 0.5, "seed": 0,
                      "final_test_acc": 0.99}])
    values = agg.trial_values(pd.concat([two_methods, lucky], ignore_index=True), None, "test_acc", "final")
    cmp = compare.compare_with_baseline(values, "test_acc_final", "SGD")
    assert (cmp["baseline_lr"] == 0.1).all() and "SGD" not in set(cmp["method"])
    single = compare.compare_with_baseline(values[values["trial_id"].isin(["g0", "g1", "g2", "s0"])],
                                           "test_acc_final", "SGD")
    assert list(single["verdict"]) == ["too few seeds"]
    assert compare.verdict_counts(single) == {"better": 0, "worse": 0, "unclear": 0, "too few seeds": 1,
                                              "zero variance": 0}


def test_any_filter_is_a_baseline_and_methods_compare_pairwise(two_methods):
    values = agg.trial_values(two_methods, None, "test_acc", "final")
    against_sam = compare.compare_with_baseline(values, "test_acc_final", agg.parse_filter("optimizer=sam")
                                                if "optimizer" in values else {"method": "SAM"})
    assert list(against_sam["method"]) == ["SGD"]
    assert against_sam["test_acc_final_diff"].iloc[0] == pytest.approx(-0.05)
    pairs = compare.pairwise(values, "test_acc_final")
    assert list(zip(pairs["method"], pairs["other_method"])) == [("SAM", "SGD")]
    assert pairs["test_acc_final_diff_ci95_low"].iloc[0] == pytest.approx(0.05 - 0.054761, abs=1e-5)
    assert agg.parse_filter("optimizer=unified, lam=0.5") == {"optimizer": "unified", "lam": "0.5"}
    with pytest.raises(ConfigError, match="baseline"):
        agg.parse_filter("optimizer")
    with pytest.raises(ConfigError, match="baseline"):
        agg.baseline_mask(values, {"colour": "red"})


def test_performance_profile_fractions():
    rows = []
    for workload, times in (("w1", {"A": 10.0, "B": 20.0}), ("w2", {"A": None, "B": 15.0}),
                            ("w3", {"A": 0.0, "B": 0.0})):
        for method, t in times.items():
            rows.append({"dataset": workload, "model": "m", "sampler": "s", "method": method, "seed": 0,
                         "time_to_target": t, "reached": t is not None})
    ttt = pd.DataFrame(rows)
    ratios = targets.performance_ratios(ttt).set_index(["dataset", "method"])["ratio"]
    assert ratios[("w1", "A")] == 1.0 and ratios[("w1", "B")] == 2.0
    assert np.isinf(ratios[("w2", "A")]) and ratios[("w2", "B")] == 1.0
    assert ratios[("w3", "A")] == 1.0 and ratios[("w3", "B")] == 1.0  # a cost of 0 is no NaN
    profile = targets.performance_profile(targets.performance_ratios(ttt), taus=[1.0, 1.5, 2.0, 10.0])
    got = profile.pivot(index="tau", columns="method", values="fraction")
    assert list(got["A"]) == pytest.approx([2 / 3] * 4)
    assert list(got["B"]) == pytest.approx([2 / 3, 2 / 3, 1.0, 1.0])


def test_steady_state_epoch_times_and_ratio_to_sgd(two_methods):
    # cumulative training times: the first epoch is warm-up, epoch 4 of g0 a burst of load
    curves = {tid: {"time_train": list(np.cumsum(steps))} for tid, steps in {
        "g0": [5.0, 1.0, 1.0, 9.0, 1.0], "g1": [5.0, 1.1, 1.1, 1.1, 1.1], "g2": [5.0, 0.9, 0.9, 0.9, 0.9],
        "s0": [5.0, 2.0, 2.0, 2.0, 2.0], "s1": [5.0, 2.2, 2.2, 2.2, 2.2], "s2": [5.0, 2.4, 2.4, 2.4, 2.4],
        "x0": [5.0, 9.0, 9.0, 9.0, 9.0]}.items()}
    trials = two_methods.assign(time_train=[9.0] * 7, epochs_done=5.0, attempts=[1, 1, 1, 2, 1, 1, 1],
                                node=["h1/a", "h1/a", "h1/a", "h1/b", "h1/a", "h1/a", "h1/a"],
                                concurrency=[1.0, 1.0, 1.0, 3.0, 1.0, 1.0, 1.0])
    times = timing.epoch_times(trials, _epochs(curves)).set_index("trial_id")
    assert times.loc["g0", "time_per_epoch"] == 1.0 and times.loc["g0", "epochs_timed"] == 4
    assert times.loc["s1", "time_per_epoch"] == pytest.approx(2.2) and "x0" not in times.index
    assert times.loc["s0", "restarted"] and times.loc["s0", "host"] == "h1"
    table = timing.wallclock_table(trials, _epochs(curves)).set_index("method")
    sam = table.loc["SAM"]
    ref = stats.fieller(2.2, 0.2, 3, 1.0, 0.1, 3).iloc[0]
    assert sam["ratio_to_baseline"] == pytest.approx(2.2)
    assert (sam["ratio_ci95_low"], sam["ratio_ci95_high"]) == pytest.approx((ref["low"], ref["high"]))
    assert sam["restarted"] == 1 and sam["sessions"] == 2 and table.loc["SGD", "sessions"] == 1
    # s0 ran beside two other trials, SGD's trials alone: only SAM's row mixes machine loads
    assert (sam["concurrency_min"], sam["concurrency_max"]) == (1.0, 3.0)
    assert (table.loc["SGD", "concurrency_min"], table.loc["SGD", "concurrency_max"]) == (1.0, 1.0)


def test_table2_cells(two_methods):
    extra = _trials([{"trial_id": "u0", "method": "Unified (lam=0.5)", "lam": "0.5", "rho": 0.05, "seed": 0,
                      "final_test_acc": 0.70, "lr": 0.1},
                     {"trial_id": "u1", "method": "Unified (lam=0.5)", "lam": "0.5", "rho": 0.05, "seed": 0,
                      "final_test_acc": 0.75, "lr": 0.2}])
    cells = agg.lam_rho_summary(pd.concat([two_methods, extra], ignore_index=True))
    assert list(cells["lam_key"].fillna("SGD")) == ["SGD", "0.5", "1"]
    # the lam=0.5 cell holds two learning rates: the better one (0.2) is shown
    assert cells.loc[cells["lam_key"] == "0.5", "test_acc_final_mean"].iloc[0] == pytest.approx(0.75)


@pytest.mark.parametrize("seeds", [3, 4])
def test_the_reference_always_reaches_its_own_target_under_the_null(seeds):
    """300 null workloads, 3 SGD configurations: under the old rule (best over configurations
    per seed, then the median) SGD's own best configuration missed the target with its median
    seed in about 63% of them (3 seeds; 93% with 5 and 5). Under AlgoPerf's rule, with the
    easier middle value for even counts, it never does."""
    rng = np.random.default_rng(seeds)
    w, lr, seed = (a.ravel() for a in np.meshgrid(np.arange(300), [0.1, 0.05, 0.01], np.arange(seeds), indexing="ij"))
    ids = [f"{a}-{b}-{c}" for a, b, c in zip(w, lr, seed)]
    trials = _trials([{"trial_id": t, "dataset": f"w{a}", "method": "SGD", "lam": None, "rho": 0.0, "lr": b,
                       "seed": int(c)} for t, a, b, c in zip(ids, w, lr, seed)])
    top = rng.normal(0.9, 0.01, len(ids))
    epochs = pd.DataFrame({"trial_id": pd.Categorical(np.repeat(ids, 2)), "iteration": np.tile([10, 20], len(ids)),
                           "epoch": np.tile([1.0, 2.0], len(ids)), "test_acc": np.c_[top - 0.05, top].ravel(),
                           "time_train": np.tile([1.0, 2.0], len(ids)), "grad_evals": np.tile([10, 20], len(ids))})
    target = targets.reference_target(trials, epochs)
    best = targets.method_time_to_target(targets.time_to_target(trials, epochs, target), "time_to_target")
    assert len(best) == 300 and np.isfinite(best["time_to_target"]).all()
    assert (best["seeds_reached"] >= seeds // 2).all()
    # the old rule on the same values: per seed the best over configurations, then the median
    values = agg.trial_values(trials, epochs, "test_acc", "best")
    old = values.groupby(["dataset", "seed"], observed=True)["test_acc_best_epoch"].max().groupby(
        level="dataset", observed=True).median()
    chosen = values.merge(target[["dataset", "lr"]], on=["dataset", "lr"])
    chosen["old_target"] = chosen["dataset"].astype(str).map(old.rename(index=str)).astype(float)
    reached = (chosen["test_acc_best_epoch"] >= chosen["old_target"]).groupby(chosen["dataset"], observed=True).sum()
    assert (reached < (seeds + 1) // 2).mean() > 0.3


def test_per_sample_work_is_the_unit_where_batch_sizes_differ():
    rows, curves = [], {}
    for tid, batch, method in (("a", 32, "SGD"), ("b", 128, "SAM")):
        rows.append({"trial_id": tid, "method": method, "lam": None if method == "SGD" else "1",
                     "rho": 0.0 if method == "SGD" else 0.05, "seed": 0, "batch_size": batch})
        steps = 1 if method == "SGD" else 2
        curves[tid] = {"test_acc": [0.5, 0.9], "time_train": [1.0, 2.0], "grad_evals": [10 * steps, 20 * steps],
                       "grad_samples": [10.0 * steps * batch, 20.0 * steps * batch], "refresh_samples": [0.0, 100.0]}
    trials, epochs = _trials(rows), _epochs(curves)
    assert compare.cost_column(trials, epochs) == "samples"
    assert compare.cost_column(trials.assign(batch_size=32), epochs) == "grad_evals"
    ttt = targets.time_to_target(trials, epochs, 0.85).set_index("trial_id")
    assert ttt.loc["a", "samples_to_target"] == 20 * 32 + 100 and ttt.loc["b", "samples_to_target"] == 40 * 128 + 100
    assert compare.total_cost(trials, epochs, "samples")["b"] == 40 * 128 + 100


def test_summary_text_says_when_seeds_agree_exactly():
    from analysis import report_text

    table = stats.summarize(pd.DataFrame({"g": 0, "v": [0.9, 0.9, 0.9]}), "v", ["g"]).iloc[0]
    assert report_text.stat_text(table, "v", "test_acc") == "90.00% ± 0.00% (n=3, every seed equal: no interval)"


def test_an_accuracy_interval_stays_within_0_and_100_percent():
    from analysis import report_text

    values = pd.DataFrame({"g": 0, "v": [0.70, 0.98], "test_acc_final": [0.70, 0.98]})
    raw = stats.summarize(values, "v", ["g"]).iloc[0]
    assert raw["v_ci95_low"] < 0 and raw["v_ci95_high"] > 1  # the t interval of two seeds
    table = stats.summarize(values, "test_acc_final", ["g"]).iloc[0]
    assert (table["test_acc_final_ci95_low"], table["test_acc_final_ci95_high"]) == (0.0, 1.0)
    assert report_text.stat_text(table, "test_acc_final", "test_acc").endswith("95% CI 0.00% to 100.00%)")


def test_a_time_ratio_interval_never_goes_below_zero():
    """SAM's three epoch times spread so widely that Fieller's lower bound is negative:
    a ratio of positive times is reported as at least 0."""
    times = {"g0": 1.0, "g1": 1.01, "g2": 0.99, "s0": 0.2, "s1": 1.0, "s2": 3.0}
    trials = pd.DataFrame({"trial_id": list(times), "method": ["SGD"] * 3 + ["SAM"] * 3,
                           "optimizer": ["sgd"] * 3 + ["sam"] * 3, "dataset": "digits", "model": "mlp",
                           "sampler": "reshuffle", "status": "ok", "time_train": list(times.values()),
                           "epochs_done": 1.0})
    sam = timing.wallclock_table(trials).set_index("method").loc["SAM"]
    raw = stats.fieller(sam["time_per_epoch_mean"], sam["time_per_epoch_std"], 3, 1.0, 0.01, 3).iloc[0]
    assert raw["low"] < 0 and sam["ratio_ci95_low"] == 0.0
    assert sam["ratio_ci95_high"] == pytest.approx(raw["high"], rel=1e-3)
