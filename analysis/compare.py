"""Comparisons between configurations: many-to-one against a baseline and between methods,
with Welch intervals, Holm-corrected verdicts, and honest equal-compute designs.

The baseline (and each method's representative) is the configuration with the best seed
mean of a *selection* column, which should be validation data where the sweep has a split;
only configurations with at least two seeds are ranked. Every candidate is compared with
Welch's t; verdicts ("better", "worse", "unclear") come from Holm-adjusted p-values over the
comparisons of a workload, so testing 20 configurations does not manufacture a winner.
Comparisons that cannot be tested say why ("too few seeds", "zero variance").
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.aggregate import (BASELINE, CONFIG_FIELDS, ENVIRONMENT, MIN_SEEDS, WORKLOAD, baseline_mask, grouped,
                                higher_is_better, metric_of, trial_configs)
from analysis.stats import ci_name, holm, summarize, welch

VERDICTS = ("better", "worse", "unclear")
COUNTED = (*VERDICTS, "too few seeds", "zero variance")
SAMPLE_COUNTERS = ("grad_samples", "refresh_samples")


def _config(values: pd.DataFrame, config: Sequence[str] | None) -> list[str]:
    return list(config or [c for c in values
                           if c in ("method", *WORKLOAD, *CONFIG_FIELDS) and c not in ENVIRONMENT])


def _stats(values: pd.DataFrame, value: str, select: str, keys: list[str], level: float, log: bool) -> pd.DataFrame:
    """Seed statistics of ``value`` (log10 of it when ``log``) and the selection column's mean."""
    frame = values.copy()
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            frame[value] = np.log10(frame[value].where(frame[value] > 0))
    table = summarize(frame, value, keys, level)
    if select != value:
        table = table.merge(summarize(values, select, keys, level)[[*keys, f"{select}_mean"]], on=keys)
    return table.rename(columns={f"{select}_mean": "_select"}) if select != value else table.assign(
        _select=table[f"{value}_mean"])


def _pick(table: pd.DataFrame, by: list[str], up: bool) -> pd.DataFrame:
    """The best row by selection mean per ``by`` group among rows with >= 2 seeds."""
    ranked = table[table["_n"] >= MIN_SEEDS].sort_values("_select", ascending=not up, kind="stable")
    return grouped(ranked, by).head(1) if by else ranked.head(1)


def _verdicts(out: pd.DataFrame, name: str, up: bool, level: float, family: list[str]) -> pd.DataFrame:
    """Welch columns, Holm-adjusted p per ``family`` group and the verdict of each row."""
    test = welch(out["_mean"], out["_std"], out["_n"], out["_b_mean"], out["_b_std"], out["_b_n"], level)
    ci = ci_name(level)
    out[f"{name}_diff"] = test["diff"].to_numpy()
    out[f"{name}_diff_{ci}_low"] = test["low"].to_numpy()
    out[f"{name}_diff_{ci}_high"] = test["high"].to_numpy()
    out["p_value"] = test["p"].to_numpy()
    if family:
        out["p_holm"] = out.groupby(family, observed=True, dropna=False)["p_value"].transform(
            lambda p: holm(p.to_numpy()))
    else:
        out["p_holm"] = holm(out["p_value"].to_numpy())
    diff = out[f"{name}_diff"]
    significant = out["p_holm"] < 1 - level
    good = (diff > 0) if up else (diff < 0)
    out["verdict"] = np.where(significant & good, "better", np.where(significant, "worse", "unclear"))
    reason = test["reason"].to_numpy()
    out.loc[reason != "", "verdict"] = reason[reason != ""]
    return out


def compare_with_baseline(values: pd.DataFrame, value: str, baseline: str | Mapping[str, str] = BASELINE,
                          config: Sequence[str] | None = None, by: Sequence[str] = WORKLOAD,
                          level: float = 0.95, select: str | None = None, log: bool = False) -> pd.DataFrame:
    """Every non-baseline configuration against the baseline of its ``by`` group (the
    baseline configuration with the best seed mean of ``select``, default ``value``, among
    those with >= 2 seeds): difference of seed means (candidate minus baseline; of log10
    values when ``log``, i.e. a log10 ratio of geometric means) with a Welch interval at
    ``level`` (not adjusted), the Welch p-value, its Holm adjustment over the group's
    comparisons, the verdict from the adjusted p, and ``<select>_selection_mean`` (what a
    headline should be chosen by)."""
    by = [c for c in by if c in values]
    config = [*_config(values, config), *(c for c in by if c not in _config(values, config))]
    select = select or value
    frame = values.assign(_base=baseline_mask(values, baseline).to_numpy())
    table = _stats(frame, value, select, [*config, "_base"], level, log)
    table = table.rename(columns={f"{value}_mean": "_mean", f"{value}_std": "_std", f"{value}_n": "_n"})
    up = higher_is_better(metric_of(value))
    base = _pick(table[table["_base"]], by, up if select == value else higher_is_better(metric_of(select)))
    base = base[[*by, *(c for c in config if c not in by), "_mean", "_std", "_n"]].rename(
        columns={"_mean": "_b_mean", "_std": "_b_std", "_n": "_b_n",
                 **{c: f"baseline_{c}" for c in config if c not in by}})
    cand = table[~table["_base"]]
    out = cand.merge(base, on=by, how="inner") if by else cand.merge(base, how="cross")
    name = f"{value}_log10" if log else value
    out = _verdicts(out, name, up, level, by)
    out = out.rename(columns={"_mean": f"{name}_mean", "_std": f"{name}_std", "_n": f"{value}_n",
                              "_b_mean": f"baseline_{name}_mean", "_b_std": f"baseline_{name}_std",
                              "_b_n": "baseline_n"})
    out = out.rename(columns={"_select": f"{select}_selection_mean"})
    drop = ["_base", *(c for c in out if c.startswith(f"{value}_ci") or c.startswith(f"{select}_ci"))]
    return out.drop(columns=[c for c in drop if c in out]).sort_values(config, kind="stable").reset_index(drop=True)


def pairwise(values: pd.DataFrame, value: str, config: Sequence[str] | None = None,
             by: Sequence[str] = WORKLOAD, level: float = 0.95, select: str | None = None,
             log: bool = False) -> pd.DataFrame:
    """Every pair of methods within each ``by`` group, each at its best configuration (by
    ``select``, >= 2 seeds): ``method`` minus ``other``, with the same Welch interval and
    Holm-corrected verdict as ``compare_with_baseline`` (the family: the group's pairs)."""
    config = _config(values, config)
    by = [c for c in by if c in values]
    select = select or value
    table = _stats(values, value, select, config, level, log)
    table = table.rename(columns={f"{value}_mean": "_mean", f"{value}_std": "_std", f"{value}_n": "_n"})
    up_select = higher_is_better(metric_of(select))
    best = _pick(table, [*by, "method"], up_select)
    keep = [*by, "method", *(c for c in config if c not in by and c != "method"), "_mean", "_std", "_n"]
    best = best[keep]
    other = best.rename(columns={c: f"other_{c}" for c in keep if c not in by} |
                        {"_mean": "_b_mean", "_std": "_b_std", "_n": "_b_n"})
    pairs = best.merge(other, on=by, how="inner") if by else best.merge(other, how="cross")
    pairs = pairs[pairs["method"].astype(str) < pairs["other_method"].astype(str)].reset_index(drop=True)
    name = f"{value}_log10" if log else value
    pairs = _verdicts(pairs, name, higher_is_better(metric_of(value)), level, by)
    pairs = pairs.rename(columns={"_mean": f"{name}_mean", "_std": f"{name}_std", "_n": f"{value}_n",
                                  "_b_mean": f"other_{name}_mean", "_b_std": f"other_{name}_std",
                                  "_b_n": "other_n"})
    drop = [c for c in pairs if c.startswith("other_") and c[6:] in config and c != "other_method"
            and pairs[c].nunique(dropna=False) <= 1]
    return pairs.drop(columns=drop).sort_values([*by, "method", "other_method"], kind="stable").reset_index(drop=True)


def verdict_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many comparisons got each verdict (zeros included), in a fixed order."""
    counts = table["verdict"].value_counts()
    return {v: int(counts.get(v, 0)) for v in COUNTED}


# -- equal compute ------------------------------------------------------------------------

def cost_column(trials: pd.DataFrame, epochs: pd.DataFrame, by: Sequence[str] = WORKLOAD) -> str:
    """The unit of compute: gradient evaluations, or per-sample work (``grad_samples +
    refresh_samples``) where batch sizes differ within a workload and those are recorded."""
    keys = [c for c in by if c in trials]
    varies = "batch_size" in trials and (
        trials.groupby(keys, observed=True)["batch_size"].nunique() > 1).any() if keys else False
    recorded = all(c in epochs and epochs[c].notna().any() for c in SAMPLE_COUNTERS)
    return "samples" if varies and recorded else "grad_evals"


def _with_samples(epochs: pd.DataFrame) -> pd.DataFrame:
    if "samples" in epochs or not all(c in epochs for c in SAMPLE_COUNTERS):
        return epochs
    return epochs.assign(samples=epochs[list(SAMPLE_COUNTERS)].astype(float).fillna(0.0).sum(axis=1))


def total_cost(trials: pd.DataFrame, epochs: pd.DataFrame, cost: str = "grad_evals") -> pd.Series:
    """Each trial's cost over its whole run (trial_id -> the last record's cumulative cost)."""
    rows = _with_samples(epochs).dropna(subset=[cost]).sort_values(["trial_id", "iteration"], kind="stable")
    last = rows.groupby(rows["trial_id"].astype(str), observed=True)[cost].last()
    return last.astype(float)


def budget_matched(trials: pd.DataFrame, epochs: pd.DataFrame, baseline: str | Mapping[str, str] = BASELINE,
                   cost: str = "grad_evals", by: Sequence[str] = WORKLOAD) -> pd.DataFrame:
    """trial_id -> ``budget`` for runs planned at equal compute: trials whose total ``cost``
    (3 significant digits) equals that of some baseline trial of the same workload, e.g. SGD
    at twice the epochs of SAM (as Foret et al. compared them). Others are left out."""
    done = trials[trials["status"].astype(str) == "ok"]
    spent = total_cost(done, epochs, cost)
    frame = trial_configs(done).assign(_base=baseline_mask(done, baseline).to_numpy())
    frame["budget"] = frame["trial_id"].map(spent).map(lambda v: float(f"{v:.3g}") if np.isfinite(v) else np.nan)
    keys = [c for c in by if c in frame]
    base = frame[frame["_base"]][[*keys, "budget"]].drop_duplicates()
    matched = frame[~frame["_base"]].merge(base, on=[*keys, "budget"], how="inner")
    budgets = matched[[*keys, "budget"]].drop_duplicates()
    return frame.merge(budgets, on=[*keys, "budget"], how="inner")[["trial_id", "budget"]]


def schedules_constant(trials: pd.DataFrame) -> bool:
    """Whether every trial ran a constant learning rate (a mid-run reading is then fair)."""
    return "lr_schedule" not in trials or set(trials["lr_schedule"].dropna().astype(str)) <= {"constant"}


def at_equal_cost(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str = "test_acc",
                  cost: str = "grad_evals", budget: float | None = None,
                  by: Sequence[str] = WORKLOAD) -> pd.DataFrame:
    """Per trial: ``metric`` at the last evaluation whose ``cost`` is within the budget. The
    default budget, per workload, is the smallest total cost any trial spent, so that SAM
    (two gradients a step) is read where it has paid what SGD paid for its whole run. Fair
    only with a constant learning rate: under a decaying schedule the reading is taken before
    the anneal (see ``schedules_constant``). Column ``<metric>_at_equal_<cost>``."""
    column = f"{metric}_at_equal_{cost}"
    values = trial_configs(trials)
    epochs = _with_samples(epochs)
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
