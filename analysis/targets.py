"""Time-to-target and AlgoPerf-style performance profiles.

The target of a workload follows AlgoPerf's rule: fix the reference method's best
configuration first (ranked on validation data where the sweep has a split), then take the
median over that one configuration's replicates of each replicate's best value. Taking the
best over configurations per seed first would select a lucky outlier, a target the
reference itself usually misses. Replicates are every trial of a configuration: each seed
and each ``problem_seed``. A diverged or errored replicate never reaches the target, and
counts in n. Times are compared only between trials that ran on the same device.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.aggregate import (BASELINE, CONFIG_FIELDS, ENVIRONMENT, MIN_SEEDS, WORKLOAD, Selection, baseline_mask,
                                best_configurations, config_columns, grouped, higher_is_better, log_scale, natural,
                                selection_for, selection_values, trial_configs, trial_values, value_column)
from analysis.stats import middle_median, summarize

DEVICE = "device_used"
COSTS = ("time_to_target", "grad_evals_to_target", "samples_to_target")
# Per-sample work counters: where batch sizes differ, a gradient evaluation is no common unit.
SAMPLE_COUNTERS = ("grad_samples", "refresh_samples")
FAILED = ("diverged", "error")


def reference_target(trials: pd.DataFrame, epochs: pd.DataFrame, reference: str | Mapping[str, str] = BASELINE,
                     metric: str = "test_acc", by: Sequence[str] = WORKLOAD,
                     selection: Selection | None = None) -> pd.DataFrame:
    """AlgoPerf's target per workload: the reference's configuration with the best seed mean
    of the selection metric's best-epoch value (validation where recorded; among
    configurations with at least two replicates, any when none has), then the median over
    that configuration's replicates of their best ``metric``. For an even count the easier of
    the two middle values is taken where AlgoPerf averages them: so the configuration still
    reaches its own target with half its replicates (``middle_median``). Columns: the
    workload columns,
    ``target``, ``target_n`` (replicates) and the chosen configuration's columns."""
    done = trials[trials["status"].astype(str) == "ok"] if "status" in trials else trials
    base = done[baseline_mask(done, reference)]
    if base.empty:
        return pd.DataFrame(columns=[*by, "target", "target_n"])
    selection = selection or selection_for(metric, trials, epochs)
    column = value_column(metric, "best")
    values = trial_values(base, epochs, metric, "best")
    config = [c for c in config_columns(trials) if c in values]  # what varies among the reference's trials
    rank = value_column(selection.metric, "best")
    if rank != column:
        values = values.merge(selection_values(base, epochs, selection, "best")[["trial_id", rank]], on="trial_id")
    summary = summarize(values, rank, config, log=log_scale(selection.metric))
    min_n = MIN_SEEDS if (summary[f"{rank}_n"] >= MIN_SEEDS).any() else 1
    chosen = best_configurations(summary, rank, [c for c in by if c in config], min_n)[config]
    picked = values.merge(chosen, on=config, how="inner")
    g = grouped(picked, config)[column]
    easier = not higher_is_better(metric)  # the lower middle accuracy, the upper middle loss
    out = pd.DataFrame({"target": g.agg(lambda v: middle_median(v, upper=easier)),
                        "target_n": g.count()}).reset_index()
    return out.dropna(subset=["target"]).reset_index(drop=True)


def time_to_target(trials: pd.DataFrame, epochs: pd.DataFrame, target: float | pd.DataFrame,
                   metric: str = "test_acc", by: Sequence[str] = WORKLOAD) -> pd.DataFrame:
    """Per trial (ok, diverged or errored): the first training-only time (s), gradient
    evaluations, per-sample work (``grad_samples + refresh_samples`` where recorded) and
    epoch at which ``metric`` reaches ``target`` (a number, or a table of targets per
    workload from ``reference_target``). A trial that never reaches it, or that diverged or
    errored (even after reaching it), has ``reached`` False and NaN costs."""
    values = trial_configs(trials, ("ok", *FAILED))
    extra = [c for c in ("status", DEVICE) if c in trials]
    side = trials[["trial_id", *extra]].assign(trial_id=trials["trial_id"].astype(str))
    values = values.merge(side, on="trial_id", how="left")
    if isinstance(target, pd.DataFrame):
        values = values.merge(target[[*by, "target"]], on=list(by), how="inner")
    else:
        values["target"] = float(target)
    counters = [c for c in SAMPLE_COUNTERS if c in epochs and epochs[c].notna().any()]
    rows = epochs[["trial_id", "iteration", "epoch", "grad_evals", "time_train", metric, *counters]].copy()
    rows["trial_id"] = rows["trial_id"].astype(str)
    if counters:
        rows["samples"] = rows[counters].astype(float).fillna(0.0).sum(axis=1)
    goal = rows["trial_id"].map(values.set_index("trial_id")["target"])
    hit = rows[(rows[metric] >= goal) if higher_is_better(metric) else (rows[metric] <= goal)]
    first = hit.sort_values(["trial_id", "iteration"], kind="stable").groupby("trial_id", sort=True).head(1)
    first = first.rename(columns={"time_train": "time_to_target", "grad_evals": "grad_evals_to_target",
                                  "epoch": "epoch_to_target", "samples": "samples_to_target"})
    keep = ["trial_id", "time_to_target", "grad_evals_to_target", "epoch_to_target",
            *(["samples_to_target"] if counters else [])]
    out = values.merge(first[keep], on="trial_id", how="left")
    ok = out["status"].astype(str).eq("ok") if "status" in out else True
    out["reached"] = out["epoch_to_target"].notna() & ok
    for column in keep[1:]:
        out[column] = out[column].astype(float).where(out["reached"])
    return out.sort_values("trial_id").reset_index(drop=True)


def _config(ttt: pd.DataFrame, config: Sequence[str] | None) -> list[str]:
    keys = list(config or [c for c in ttt if c in ("method", *WORKLOAD, *CONFIG_FIELDS) and c not in ENVIRONMENT])
    return keys + ([DEVICE] if DEVICE in ttt and DEVICE not in keys else [])


def config_time_to_target(ttt: pd.DataFrame, config: Sequence[str] | None = None) -> pd.DataFrame:
    """Per configuration (and device): for every cost, the median over all its replicates
    (missed ones infinite, so a median over mostly-missed replicates is infinite; for an even
    count the lower middle value, matching the target's rule), the min
    and max over those that reached the target; ``seeds_reached`` and ``seeds`` (all
    replicates, failed ones included)."""
    keys = _config(ttt, config)
    costs = [c for c in COSTS if c in ttt]
    frame = ttt.assign(**{f"_{c}": ttt[c].where(ttt["reached"], np.inf).astype(float) for c in costs})
    g = grouped(frame, keys)
    parts = {"seeds_reached": g["reached"].sum().astype(int), "seeds": g["reached"].size()}
    for cost in costs:
        parts |= {cost: g[f"_{cost}"].agg(middle_median), f"{cost}_min": g[cost].min(),
                  f"{cost}_max": g[cost].max()}
    return pd.DataFrame(parts).reset_index()


def method_time_to_target(ttt: pd.DataFrame, cost: str = "time_to_target", by: Sequence[str] = WORKLOAD,
                          config: Sequence[str] | None = None) -> pd.DataFrame:
    """Per workload, device and method, the configuration with the lowest median ``cost``;
    ties (all infinite among them) go to the one whose most replicates reached the target.
    Every column of a row describes that one configuration."""
    per_config = config_time_to_target(ttt, config)
    group = [*[c for c in by if c in per_config], *([DEVICE] if DEVICE in per_config else []), "method"]
    ranked = per_config.assign(_missed=-per_config["seeds_reached"]).sort_values(
        [cost, "_missed"], kind="stable")
    best = grouped(ranked, group).head(1).drop(columns="_missed")
    return best.sort_values(group, kind="stable", key=natural).reset_index(drop=True)


def time_to_target_table(ttt: pd.DataFrame, by: Sequence[str] = WORKLOAD,
                         criteria: Sequence[str] = ("time_to_target", "grad_evals_to_target")) -> pd.DataFrame:
    """One row per workload, device, method and criterion (``chosen_by``): the configuration
    fastest by that criterion, with all of its own costs."""
    parts = [method_time_to_target(ttt, c, by).assign(chosen_by=c) for c in criteria if c in ttt]
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    first = [c for c in (*by, DEVICE, "method", "chosen_by") if c in table]
    return table[[*first, *(c for c in table if c not in first)]]


def performance_ratios(ttt: pd.DataFrame, cost: str = "time_to_target", by: Sequence[str] = WORKLOAD,
                       config: Sequence[str] | None = None) -> pd.DataFrame:
    """Per workload (and device) and method: the method's time-to-target at its best
    configuration and its ratio to the fastest method there. A fastest cost of 0 makes the
    ratio 1 for every method also at 0 and infinite for the others; a workload no method
    solved gives infinite ratios for all."""
    per_method = method_time_to_target(ttt, cost, by, config)
    group = [c for c in (*by, DEVICE) if c in per_method]
    per_method = per_method[[*group, "method", cost, "seeds_reached", "seeds"]].copy()
    best = grouped(per_method, group)[cost].transform("min").to_numpy(dtype=float)
    mine = per_method[cost].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(best > 0, mine / best, np.where(mine == 0, 1.0, np.inf))
    per_method["ratio"] = np.where(np.isfinite(best), ratio, np.inf)
    return per_method.reset_index(drop=True)


def n_workloads(ratios: pd.DataFrame, by: Sequence[str] = WORKLOAD) -> int:
    """How many workloads (times device, where recorded) a ratios table spans."""
    group = [c for c in (*by, DEVICE) if c in ratios]
    return len(grouped(ratios, group).size()) if group else 1


def performance_profile(ratios: pd.DataFrame, taus: Sequence[float] | None = None,
                        by: Sequence[str] = WORKLOAD) -> pd.DataFrame:
    """AlgoPerf's performance profile: for each method and tau, the fraction of workloads on
    which its time-to-target is within a factor tau of the best. Columns method, tau, fraction."""
    total = n_workloads(ratios, by)
    finite = ratios["ratio"][np.isfinite(ratios["ratio"])]
    if taus is None:
        top = max(4.0, float(finite.max()) * 1.05 if len(finite) else 4.0)
        taus = np.unique(np.concatenate([[1.0], finite.to_numpy(), np.geomspace(1.0, top, 200)]))
    taus = np.asarray(taus, dtype=float)
    rows = []
    for method, group in ratios.groupby("method", observed=True, sort=True):
        r = np.sort(group["ratio"].to_numpy(dtype=float))
        within = np.searchsorted(r, taus, side="right") / total
        rows.append(pd.DataFrame({"method": str(method), "tau": taus, "fraction": within}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["method", "tau", "fraction"])
