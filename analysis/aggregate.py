"""Aggregations over the tidy tables of ``analysis.load``: per-trial values (final or
best epoch), seed statistics with 95% confidence intervals, time-to-target, comparisons
at equal compute, and AlgoPerf-style performance profiles.

Every value column names its selection (``test_acc_final``, ``test_acc_best_epoch``,
``test_acc_at_equal_grad_evals``), and every statistic keeps that name as its prefix
(``test_acc_final_mean``), so a table never hides which epoch it reports. All functions
are vectorised pandas so that 10^6 epoch rows aggregate in seconds, and their output is
sorted, so the same Parquet always gives the same tables.
"""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from harness.config import ConfigError, TrialConfig
from harness.optim import registry

BASELINE = registry.baseline_label()  # "SGD", from the optimizer registry

WORKLOAD = ("dataset", "model", "sampler")
AT = {"final": "final", "best": "best_epoch"}
AT_TEXT = {"final": "final", "best": "best epoch"}
CONFIG_FIELDS = tuple(f.name for f in fields(TrialConfig))
# Fields that say where or how a trial ran rather than what it computed.
ENVIRONMENT = frozenset({"seed", "problem_seed", "device", "data_root", "download"})
# Replicates: seeds of the sampling stream and of a synthetic problem's data (the paper's "trials").
REPLICATES = ("seed", "problem_seed")
LOWER_IS_BETTER = frozenset({"train_loss", "test_loss", "rel_subopt", "grad_norm", "lam_max", "trace"})


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def value_column(metric: str, at: str) -> str:
    """The name of a per-trial value: ``test_acc_final`` or ``test_acc_best_epoch``."""
    if at not in AT:
        raise ConfigError("at", at, ", ".join(AT))
    return f"{metric}_{AT[at]}"


def metric_of(value: str) -> str:
    """The metric behind a value column: ``test_acc_at_equal_grad_evals`` -> ``test_acc``."""
    return re.sub(r"_(final|best_epoch|at_equal_\w+)$", "", value)


def config_columns(trials: pd.DataFrame) -> list[str]:
    """Columns that tell configurations apart: method, the workload, lam and rho, and every
    other config field that varies across the trials (seed and environment fields excluded;
    optimizer too, as the method label already names it)."""
    keep = ["method", *WORKLOAD, *(c for c in ("lam", "rho") if c in trials)]
    for name in CONFIG_FIELDS:
        if name in ENVIRONMENT or name in keep or name not in trials or name == "optimizer":
            continue
        if trials[name].nunique(dropna=False) > 1:
            keep.append(name)
    return [c for c in keep if c in trials]


def lam_text(lam: object) -> str | None:
    """A stored lam as one canonical key: '1.0' and '1' -> '1', '1/t' stays; null -> None."""
    if lam is None or (isinstance(lam, float) and np.isnan(lam)) or lam is pd.NA:
        return None
    try:
        return f"{float(lam):g}"
    except (TypeError, ValueError):
        return str(lam)


def lam_sort_key(lam: str) -> tuple:
    """Numeric lams in value order, then the schedules (the column order of the paper's Table 2)."""
    try:
        return (0, float(lam), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(lam))


def grouped(frame: pd.DataFrame, by: Sequence[str]):
    """groupby that keeps null keys (SGD has no lam) and never expands categoricals."""
    return frame.groupby(list(by), observed=True, dropna=False, sort=True)


def per_trial(epochs: pd.DataFrame, metric: str = "test_acc", at: str = "final",
              rank_by: str | None = None) -> pd.DataFrame:
    """One value per trial from the epoch rows: the last measured value (``final``) or the
    value at the best evaluation (``best``): best by ``rank_by``, by default the metric
    itself (highest accuracy, lowest loss or suboptimality); ties go to the earliest
    evaluation. Columns: trial_id, the value, and the epoch it was read at."""
    column = value_column(metric, at)
    rank = rank_by or metric
    cols = ["trial_id", "iteration", "epoch", *dict.fromkeys([metric, rank])]
    rows = epochs[cols].dropna(subset=[metric] if at == "final" else [metric, rank])
    rows = rows.sort_values(["trial_id", "iteration"], kind="stable")
    if at == "final":
        picked = rows.groupby("trial_id", observed=True, sort=True).tail(1)
    else:
        order = rows.sort_values(["trial_id", rank], ascending=[True, not higher_is_better(rank)],
                                 kind="stable")
        picked = order.groupby("trial_id", observed=True, sort=True).head(1)
    out = picked[["trial_id", metric, "epoch"]].rename(columns={metric: column, "epoch": f"epoch_{AT[at]}"})
    out["trial_id"] = out["trial_id"].astype(str)
    return out.sort_values("trial_id").reset_index(drop=True)


def trial_configs(trials: pd.DataFrame, statuses: Iterable[str] = ("ok",)) -> pd.DataFrame:
    """trial_id, the configuration columns and the seed of the trials with these statuses."""
    keep = trials[trials["status"].astype(str).isin(list(statuses))] if "status" in trials else trials
    base = keep[["trial_id", *config_columns(trials), *(c for c in REPLICATES if c in trials)]].copy()
    base["trial_id"] = base["trial_id"].astype(str)
    return base


def trial_values(trials: pd.DataFrame, epochs: pd.DataFrame | None = None, metric: str = "test_acc",
                 at: str = "final", statuses: Iterable[str] = ("ok",)) -> pd.DataFrame:
    """Per-trial values beside each trial's configuration, for trials with the given statuses.
    Without ``epochs`` it reads the trials table's ``final_<metric>`` / ``best_<metric>``."""
    column = value_column(metric, at)
    keep = trials[trials["status"].astype(str).isin(list(statuses))] if "status" in trials else trials
    base = trial_configs(trials, statuses)
    if epochs is not None:
        values = per_trial(epochs, metric, at)
        out = base.merge(values, on="trial_id", how="left")
    else:
        summary = f"{'final' if at == 'final' else 'best'}_{metric}"
        if summary not in keep:
            raise KeyError(f"the trials table has no {summary} column; pass the epochs table")
        out = base.assign(**{column: keep[summary].to_numpy()})
    return out.sort_values("trial_id").reset_index(drop=True)


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of independent seeds (NaN bounds below 2)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(x.mean())
    if len(x) < 2:
        return (mean, np.nan, np.nan)
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return (mean, mean - half, mean + half)


def summarize(values: pd.DataFrame, value: str, by: Sequence[str], level: float = 0.95) -> pd.DataFrame:
    """Mean, sample std, count and Student-t CI of ``value`` over the rows of each group
    (the seeds, when ``by`` is a configuration). Missing values are not counted."""
    g = grouped(values, by)[value]
    out = pd.DataFrame({f"{value}_mean": g.mean(), f"{value}_std": g.std(ddof=1),
                        f"{value}_n": g.count()})
    n = out[f"{value}_n"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(n >= 2, stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)), np.nan)
        half = t * out[f"{value}_std"].to_numpy(dtype=float) / np.sqrt(n)
    pct = round(level * 100)
    out[f"{value}_ci{pct}_low"] = out[f"{value}_mean"] - half
    out[f"{value}_ci{pct}_high"] = out[f"{value}_mean"] + half
    return out.reset_index()


def seed_summary(trials: pd.DataFrame, epochs: pd.DataFrame | None = None, metric: str = "test_acc",
                 at: str = "final", by: Sequence[str] | None = None) -> pd.DataFrame:
    """The standard table: one row per configuration, statistics over its seeds."""
    values = trial_values(trials, epochs, metric, at)
    return summarize(values, value_column(metric, at), by or config_columns(trials))


def best_configurations(summary: pd.DataFrame, value: str, by: Sequence[str] = WORKLOAD) -> pd.DataFrame:
    """The configuration with the best mean ``value`` in each group (e.g. each workload)."""
    ranked = summary.dropna(subset=[f"{value}_mean"]).sort_values(
        f"{value}_mean", ascending=not higher_is_better(metric_of(value)), kind="stable")
    return grouped(ranked, [c for c in by if c in summary]).head(1).reset_index(drop=True)


# -- time to target --------------------------------------------------------------------

def reference_target(trials: pd.DataFrame, epochs: pd.DataFrame, reference: str = BASELINE,
                     metric: str = "test_acc", by: Sequence[str] = WORKLOAD) -> pd.DataFrame:
    """Targets set the way AlgoPerf sets them: within each workload, take for every seed
    the best value any configuration of the ``reference`` method reached (its tuning), then
    the median of those over seeds (for an even count the easier of the two middle values,
    so that with two seeds the target is one both of them reach).
    Columns: the workload columns and ``target``."""
    values = trial_values(trials, epochs, metric, "best")
    values = values[values["method"].astype(str) == reference]
    column = value_column(metric, "best")
    best = grouped(values, [*by, "seed"])[column]
    per_seed = (best.max() if higher_is_better(metric) else best.min()).reset_index()
    up = higher_is_better(metric)
    target = grouped(per_seed, by)[column].agg(lambda v: _easier_median(v, up)).rename("target").reset_index()
    return target.dropna(subset=["target"]).reset_index(drop=True)


def time_to_target(trials: pd.DataFrame, epochs: pd.DataFrame, target: float | pd.DataFrame,
                   metric: str = "test_acc", by: Sequence[str] = WORKLOAD) -> pd.DataFrame:
    """Per trial: the first training-only time (s), gradient-evaluation count and epoch at
    which ``metric`` reaches ``target`` (a number, or a table of targets per workload from
    ``reference_target``). Trials that never reach it get NaN and ``reached`` False."""
    values = trial_configs(trials)
    if isinstance(target, pd.DataFrame):
        values = values.merge(target[[*by, "target"]], on=list(by), how="inner")
    else:
        values["target"] = float(target)
    rows = epochs[["trial_id", "iteration", "epoch", "grad_evals", "time_train", metric]].copy()
    rows["trial_id"] = rows["trial_id"].astype(str)
    goal = rows["trial_id"].map(values.set_index("trial_id")["target"])
    hit = rows[(rows[metric] >= goal) if higher_is_better(metric) else (rows[metric] <= goal)]
    first = hit.sort_values(["trial_id", "iteration"], kind="stable").groupby("trial_id", sort=True).head(1)
    first = first.rename(columns={"time_train": "time_to_target", "grad_evals": "grad_evals_to_target",
                                  "epoch": "epoch_to_target"})
    out = values.merge(first[["trial_id", "time_to_target", "grad_evals_to_target", "epoch_to_target"]],
                       on="trial_id", how="left")
    out["reached"] = out["epoch_to_target"].notna()
    out["grad_evals_to_target"] = out["grad_evals_to_target"].astype(float)
    return out.sort_values("trial_id").reset_index(drop=True)


def _easier_median(values: pd.Series, higher_better: bool) -> float:
    ordered = np.sort(values.dropna().to_numpy(dtype=float))
    if not higher_better:
        ordered = ordered[::-1]
    return float(ordered[(len(ordered) - 1) // 2]) if len(ordered) else np.nan


# -- equal compute ----------------------------------------------------------------------

def at_equal_cost(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str = "test_acc",
                  cost: str = "grad_evals", budget: float | None = None,
                  by: Sequence[str] = WORKLOAD) -> pd.DataFrame:
    """Per trial: ``metric`` at the last evaluation whose ``cost`` (gradient evaluations by
    default) is within the budget. The default budget, per workload, is the smallest total
    cost any trial spent, so that SAM (two gradients a step) is read where it has paid what
    SGD paid for its whole run. Column ``<metric>_at_equal_<cost>``."""
    column = f"{metric}_at_equal_{cost}"
    values = trial_configs(trials)
    rows = epochs[["trial_id", "iteration", "epoch", cost, metric]].dropna(subset=[metric, cost]).copy()
    rows["trial_id"] = rows["trial_id"].astype(str)
    rows = rows[rows["trial_id"].isin(values["trial_id"])]
    if budget is None:
        spent = rows.groupby("trial_id", sort=True)[cost].max().rename("spent").reset_index()
        spent = spent.merge(values[["trial_id", *by]], on="trial_id")
        budgets = grouped(spent, by)["spent"].min().rename("budget").reset_index()
        values = values.merge(budgets, on=list(by), how="left")
    else:
        values["budget"] = float(budget)
    rows["budget"] = rows["trial_id"].map(values.set_index("trial_id")["budget"])
    within = rows[rows[cost] <= rows["budget"]].sort_values(["trial_id", "iteration"], kind="stable")
    last = within.groupby("trial_id", sort=True).tail(1)
    last = last.rename(columns={metric: column, cost: f"{cost}_used", "epoch": f"epoch_at_equal_{cost}"})
    out = values.merge(last[["trial_id", column, f"{cost}_used", f"epoch_at_equal_{cost}"]],
                       on="trial_id", how="left")
    return out.sort_values("trial_id").reset_index(drop=True)


def compare_with_baseline(values: pd.DataFrame, value: str, baseline: str = BASELINE,
                          config: Sequence[str] | None = None, by: Sequence[str] = WORKLOAD,
                          level: float = 0.95) -> pd.DataFrame:
    """Every non-baseline configuration against the best baseline configuration of its
    workload: difference of seed means (candidate minus baseline) with a Welch t interval.
    ``verdict`` is 'better' / 'worse' when the interval excludes 0 in that direction."""
    config = list(config or [c for c in values if c in ("method", *WORKLOAD, *CONFIG_FIELDS) and c not in ENVIRONMENT])
    by = [c for c in by if c in config]
    table = summarize(values, value, config, level)
    mean, std, n = (f"{value}_mean", f"{value}_std", f"{value}_n")
    up = higher_is_better(metric_of(value))
    is_base = table["method"].astype(str) == baseline
    base = table[is_base].sort_values(mean, ascending=not up, kind="stable")
    base = grouped(base, by).head(1)[[*by, mean, std, n]] if by else base.head(1)[[mean, std, n]]
    base = base.rename(columns={mean: "baseline_mean", std: "baseline_std", n: "baseline_n"})
    cand = table[~is_base]
    out = cand.merge(base, on=by, how="inner") if by else cand.merge(base, how="cross")
    diff = out[mean] - out["baseline_mean"]
    var_c = out[std] ** 2 / out[n]
    var_b = out["baseline_std"] ** 2 / out["baseline_n"]
    se = np.sqrt(var_c + var_b)
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = se ** 4 / (var_c ** 2 / (out[n] - 1) + var_b ** 2 / (out["baseline_n"] - 1))
        half = np.where(se == 0, 0.0, stats.t.ppf(0.5 + level / 2, dof) * se)
    pct = round(level * 100)
    out[f"{value}_diff"] = diff
    out[f"{value}_diff_ci{pct}_low"] = diff - half
    out[f"{value}_diff_ci{pct}_high"] = diff + half
    low, high = out[f"{value}_diff_ci{pct}_low"], out[f"{value}_diff_ci{pct}_high"]
    better = (low > 0) if up else (high < 0)
    worse = (high < 0) if up else (low > 0)
    out["verdict"] = np.select([better, worse], ["better", "worse"], "no clear difference")
    out.loc[low.isna(), "verdict"] = "too few seeds"
    drop = [c for c in out if c.startswith(f"{value}_ci")]
    return out.drop(columns=drop).sort_values(config, kind="stable").reset_index(drop=True)


# -- performance profiles -------------------------------------------------------------

def method_time_to_target(ttt: pd.DataFrame, cost: str = "time_to_target", by: Sequence[str] = WORKLOAD,
                          config: Sequence[str] | None = None) -> pd.DataFrame:
    """Per workload and method, the configuration with the lowest median ``cost`` over its
    seeds (seeds that miss the target count as infinite, so a median over mostly-missed
    seeds is infinite): that median, its seeds' min and max among those that reached the
    target, and how many seeds reached it out of how many ran."""
    config = list(config or [c for c in ttt if c in ("method", *WORKLOAD, *CONFIG_FIELDS) and c not in ENVIRONMENT])
    frame = ttt.assign(_cost=ttt[cost].where(ttt["reached"], np.inf).astype(float))
    g = grouped(frame, config)
    per_config = pd.DataFrame({cost: g["_cost"].median(), f"{cost}_min": g[cost].min(),
                               f"{cost}_max": g[cost].max(), "seeds_reached": g["reached"].sum(),
                               "seeds": g["reached"].size()}).reset_index()
    per_config = per_config.sort_values(cost, kind="stable")
    best = grouped(per_config, [*by, "method"]).head(1)
    return best.sort_values([*by, "method"], kind="stable", key=_natural).reset_index(drop=True)


def performance_ratios(ttt: pd.DataFrame, cost: str = "time_to_target", by: Sequence[str] = WORKLOAD,
                       config: Sequence[str] | None = None) -> pd.DataFrame:
    """Per workload and method: the method's time-to-target at its best configuration (see
    ``method_time_to_target``) and its ratio to the fastest method on that workload.
    Workloads no method solved give infinite ratios for all."""
    per_method = method_time_to_target(ttt, cost, by, config)[[*by, "method", cost]]
    best = grouped(per_method, by)[cost].transform("min")
    with np.errstate(invalid="ignore"):
        per_method["ratio"] = np.where(np.isfinite(best), per_method[cost] / best, np.inf)
    return per_method.reset_index(drop=True)


def performance_profile(ratios: pd.DataFrame, taus: Sequence[float] | None = None,
                        by: Sequence[str] = WORKLOAD) -> pd.DataFrame:
    """AlgoPerf's performance profile: for each method and tau, the fraction of workloads on
    which its time-to-target is within a factor tau of the best. Columns method, tau, fraction."""
    n_workloads = len(grouped(ratios, by).size())
    finite = ratios["ratio"][np.isfinite(ratios["ratio"])]
    if taus is None:
        top = max(4.0, float(finite.max()) * 1.05 if len(finite) else 4.0)
        taus = np.unique(np.concatenate([[1.0], finite.to_numpy(), np.geomspace(1.0, top, 200)]))
    taus = np.asarray(taus, dtype=float)
    rows = []
    for method, group in ratios.groupby("method", observed=True, sort=True):
        r = np.sort(group["ratio"].to_numpy(dtype=float))
        within = np.searchsorted(r, taus, side="right") / n_workloads
        rows.append(pd.DataFrame({"method": str(method), "tau": taus, "fraction": within}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["method", "tau", "fraction"])


# -- wall-clock -----------------------------------------------------------------------

def epoch_time_ratio(trials: pd.DataFrame, baseline: str = BASELINE, by: Sequence[str] = WORKLOAD) -> pd.DataFrame:
    """Per trial: training-only seconds per epoch, and that as a multiple of the baseline
    method's mean on the same workload and device (times from different hardware are
    never compared). Columns ``time_per_epoch`` and ``time_per_epoch_vs_<baseline>``."""
    device = "device_used" if "device_used" in trials else "device"
    keys = [*by, *([device] if device in trials else [])]
    frame = trials[trials["status"].astype(str) == "ok"] if "status" in trials else trials
    cols = ["trial_id", *dict.fromkeys(["method", *config_columns(trials), *keys])]
    out = frame[cols].copy()
    out["trial_id"] = out["trial_id"].astype(str)
    out["time_per_epoch"] = (frame["time_train"] / frame["epochs_done"]).to_numpy(dtype=float)
    base = out[out["method"].astype(str) == baseline]
    ref = grouped(base, keys)["time_per_epoch"].mean().rename("_ref").reset_index()
    out = out.merge(ref, on=keys, how="inner")
    out[f"time_per_epoch_vs_{baseline}"] = out["time_per_epoch"] / out["_ref"]
    return out.drop(columns="_ref").sort_values("trial_id").reset_index(drop=True)


# -- choosing what to show ------------------------------------------------------------

def primary_metric(trials: pd.DataFrame) -> str:
    """The metric a sweep is judged by: test accuracy for classification, the relative
    suboptimality for synthetic problems, else the training loss."""
    for metric in ("test_acc", "rel_subopt", "train_loss"):
        column = f"final_{metric}"
        if column in trials and trials[column].notna().any():
            return metric
    return "test_acc"


def best_config_trials(trials: pd.DataFrame, by: Sequence[str], metric: str | None = None,
                       at: str = "final") -> pd.DataFrame:
    """All seeds of the best configuration (by seed mean) in each ``by`` group, e.g. each
    method's best rho on each workload: trial_id, the configuration and the value."""
    metric = metric or primary_metric(trials)
    values = trial_values(trials, None, metric, at)
    value = value_column(metric, at)
    config = config_columns(trials)
    best = best_configurations(summarize(values, value, config), value, [c for c in by if c in config])
    return values.merge(best[config], on=config, how="inner").sort_values("trial_id").reset_index(drop=True)


def lam_rho_summary(trials: pd.DataFrame, metric: str = "test_acc", at: str = "final",
                    select_by: str | None = None) -> pd.DataFrame:
    """Seed statistics of ``metric`` per workload, rho and lam (the cells of the paper's
    Table 2). A cell holding several configurations (other hyperparameters varied) shows
    the one with the best mean ``select_by`` (default: the metric itself). ``lam_key`` is
    the canonical lam text; SGD rows have none and carry the baseline."""
    config = config_columns(trials)
    value = value_column(metric, at)
    summary = summarize(trial_values(trials, None, metric, at), value, config)
    rank = value
    if select_by is not None and select_by != metric:
        rank = value_column(select_by, at)
        ranks = summarize(trial_values(trials, None, select_by, at), rank, config)
        summary = summary.merge(ranks[[*config, f"{rank}_mean"]], on=config, how="left")
    summary["lam_key"] = [lam_text(v) for v in summary["lam"]] if "lam" in summary else None
    summary.loc[summary["method"].astype(str) == BASELINE, "lam_key"] = None
    summary = _per_family(summary)
    cells = [c for c in (*WORKLOAD, "family", "rho", "lam_key") if c in summary]
    best = best_configurations(summary, rank, cells)
    if rank != value:
        best = best.drop(columns=f"{rank}_mean")
    best["_lam_order"] = [(-1, 0.0, "") if pd.isna(k) else lam_sort_key(k) for k in best["lam_key"]]
    best = best.sort_values([*cells[:-1], "_lam_order"], kind="stable", key=_natural)
    return best.drop(columns="_lam_order").reset_index(drop=True)


def _per_family(summary: pd.DataFrame) -> pd.DataFrame:
    """One rho x lam table per method family (SAM, VaSSO, ...) that varies lam on a workload;
    the baseline's rows are repeated in each, so every table carries its reference."""
    summary = summary.assign(family=[registry.family(str(m)) for m in summary["method"]])
    keys = [c for c in WORKLOAD if c in summary]
    grid = summary[summary["family"].notna()]
    counts = grid.groupby([*keys, "family"], observed=True, dropna=False)["lam_key"].transform("nunique")
    grid = grid[counts >= 2]
    pairs = grid[[*keys, "family"]].drop_duplicates()
    base = summary[summary["family"].isna()].drop(columns="family")
    base = base.merge(pairs, on=keys, how="inner") if keys else base.merge(pairs, how="cross")
    return pd.concat([grid, base], ignore_index=True)


def _natural(column: pd.Series) -> pd.Series:
    """Sort key that orders categoricals by their values, not their category codes."""
    return column.astype(object) if isinstance(column.dtype, pd.CategoricalDtype) else column
