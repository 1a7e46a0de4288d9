"""The values analysis works on: per-trial values (final or best epoch) beside each trial's
configuration, seed summaries, how configurations are chosen (on validation data where the
sweep has a split) and which trials form the baseline.

Every value column names its selection (``test_acc_final``, ``test_acc_best_epoch``,
``test_acc_at_equal_grad_evals``), and every statistic keeps that name as its prefix
(``test_acc_final_mean``), so a table never hides which epoch it reports. Statistics live in
``analysis.stats``, time-to-target and profiles in ``analysis.targets``, comparisons in
``analysis.compare`` and timing in ``analysis.timing``. All functions are vectorised pandas
and sort their output, so the same Parquet always gives the same tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.stats import summarize
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
LOWER_IS_BETTER = frozenset({"train_loss", "test_loss", "val_loss", "rel_subopt", "grad_norm", "lam_max",
                             "trace"})
# Positive ratios spanning decades: summarised on a log scale (geometric mean, log interval).
LOG_METRICS = frozenset({"rel_subopt"})
# Held-out metric to select configurations on, for a test metric.
VALIDATION = {"test_acc": "val_acc", "test_loss": "val_loss"}
MIN_SEEDS = 2  # configurations with fewer replicates are never ranked


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def log_scale(metric: str) -> bool:
    return metric in LOG_METRICS


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
    """trial_id, the configuration columns, the optimizer (for baseline filters) and the
    replicate keys of the trials with these statuses."""
    keep = trials[trials["status"].astype(str).isin(list(statuses))] if "status" in trials else trials
    columns = [*config_columns(trials), *(c for c in ("optimizer", *REPLICATES) if c in trials)]
    base = keep[["trial_id", *dict.fromkeys(columns)]].copy()
    base["trial_id"] = base["trial_id"].astype(str)
    return base


def trial_values(trials: pd.DataFrame, epochs: pd.DataFrame | None = None, metric: str = "test_acc",
                 at: str = "final", statuses: Iterable[str] = ("ok",), rank_by: str | None = None) -> pd.DataFrame:
    """Per-trial values beside each trial's configuration, for trials with the given statuses.
    Without ``epochs`` it reads the trials table's ``final_<metric>`` / ``best_<metric>``;
    with them, the best epoch is chosen by ``rank_by`` (e.g. validation accuracy)."""
    column = value_column(metric, at)
    keep = trials[trials["status"].astype(str).isin(list(statuses))] if "status" in trials else trials
    base = trial_configs(trials, statuses)
    if epochs is not None:
        values = per_trial(epochs, metric, at, rank_by)
        out = base.merge(values, on="trial_id", how="left")
    else:
        summary = f"{'final' if at == 'final' else 'best'}_{metric}"
        if summary not in keep:
            raise KeyError(f"the trials table has no {summary} column; pass the epochs table")
        out = base.assign(**{column: keep[summary].to_numpy()})
    return out.sort_values("trial_id").reset_index(drop=True)


def seed_summary(trials: pd.DataFrame, epochs: pd.DataFrame | None = None, metric: str = "test_acc",
                 at: str = "final", by: Sequence[str] | None = None) -> pd.DataFrame:
    """The standard table: one row per configuration, statistics over its seeds (geometric
    for the metrics of ``LOG_METRICS``)."""
    values = trial_values(trials, epochs, metric, at)
    return summarize(values, value_column(metric, at), by or config_columns(trials), log=log_scale(metric))


def best_configurations(summary: pd.DataFrame, value: str, by: Sequence[str] = WORKLOAD,
                        min_n: int = MIN_SEEDS) -> pd.DataFrame:
    """The configuration with the best central value (mean, or geometric mean) of ``value``
    in each group (e.g. each workload), among those with at least ``min_n`` values: a single
    lucky seed never wins. Ties keep the first in the table's order."""
    center = next(c for c in (f"{value}_mean", f"{value}_geomean") if c in summary)
    ranked = summary[summary[f"{value}_n"] >= min_n].dropna(subset=[center]).sort_values(
        center, ascending=not higher_is_better(metric_of(value)), kind="stable")
    return grouped(ranked, [c for c in by if c in summary]).head(1).reset_index(drop=True)


# -- selection and baselines -------------------------------------------------------------

@dataclass(frozen=True)
class Selection:
    """How configurations are ranked: ``metric`` is what they are chosen by, ``on`` says on
    which data (validation, test or the training objective) in the report's words."""
    metric: str
    on: str

    @property
    def uses_test_data(self) -> bool:
        return self.on == "test data"


def selection_for(metric: str, trials: pd.DataFrame, epochs: pd.DataFrame | None = None) -> Selection:
    """Choose on the validation counterpart of a test metric when the sweep recorded one
    (``val_acc`` for ``test_acc``), else on the metric itself, and say so. Synthetic problems
    have no held-out data: their metric is the training objective."""
    held_out = VALIDATION.get(metric)
    if held_out is not None:
        recorded = (f"final_{held_out}" in trials and trials[f"final_{held_out}"].notna().any()) or (
            epochs is not None and held_out in epochs and epochs[held_out].notna().any())
        return Selection(held_out, "validation data") if recorded else Selection(metric, "test data")
    return Selection(metric, "the training objective" if metric in ("rel_subopt", "train_loss") else "test data")


def selection_values(trials: pd.DataFrame, epochs: pd.DataFrame | None, selection: Selection,
                     at: str = "final") -> pd.DataFrame:
    """Per-trial values of the selection metric (from the trials table when it has them)."""
    summary = f"{'final' if at == 'final' else 'best'}_{selection.metric}"
    source = None if summary in trials or epochs is None else epochs
    return trial_values(trials, source, selection.metric, at)


def parse_filter(text: str) -> dict[str, str]:
    """'optimizer=sam' or 'optimizer=unified,lam=0.5' -> {column: value text}."""
    out: dict[str, str] = {}
    for part in str(text).split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError("baseline", text, "KEY=VALUE[,KEY=VALUE], e.g. optimizer=sam or method=SGD")
        out[key.strip()] = value.strip()
    return out


def baseline_mask(trials: pd.DataFrame, baseline: str | Mapping[str, str]) -> pd.Series:
    """Which rows form the baseline: a method label ('SGD') or a filter on any trials
    column ({'optimizer': 'sam'}; lam compared as canonical text, numbers as numbers)."""
    wanted = {"method": baseline} if isinstance(baseline, str) else dict(baseline)
    mask = pd.Series(True, index=trials.index)
    for column, value in wanted.items():
        if column not in trials:
            allowed = ", ".join(c for c in ("method", "optimizer", *CONFIG_FIELDS) if c in trials)
            raise ConfigError("baseline", column, f"a trials column ({allowed})")
        stored = trials[column]
        if column == "lam":
            mask &= stored.map(lam_text).astype(object) == lam_text(value)
        elif pd.api.types.is_numeric_dtype(stored) and not pd.api.types.is_bool_dtype(stored):
            try:
                mask &= stored.astype(float) == float(value)
            except ValueError:
                raise ConfigError("baseline", f"{column}={value}", f"a number for {column}") from None
        else:
            mask &= stored.astype(str).str.lower() == str(value).lower()
    return mask


def baseline_text(baseline: str | Mapping[str, str]) -> str:
    return baseline if isinstance(baseline, str) else ", ".join(f"{k}={v}" for k, v in baseline.items())


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
    """All seeds of the best configuration in each ``by`` group, e.g. each method's best rho
    on each workload, chosen by the seed mean of the selection metric (validation where the
    trials table has it) among configurations with at least two seeds (any, when none has):
    trial_id, the configuration and the value."""
    metric = metric or primary_metric(trials)
    values = trial_values(trials, None, metric, at)
    value = value_column(metric, at)
    config = config_columns(trials)
    selection = selection_for(metric, trials)
    rank = value_column(selection.metric, at)
    ranks = selection_values(trials, None, selection, at) if rank != value else values
    summary = summarize(ranks, rank, config, log=log_scale(selection.metric))
    min_n = MIN_SEEDS if (summary[f"{rank}_n"] >= MIN_SEEDS).any() else 1
    best = best_configurations(summary, rank, [c for c in by if c in config], min_n)
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
        summary = summary.merge(ranks[[*config, f"{rank}_mean", f"{rank}_n"]], on=config, how="left")
    summary["lam_key"] = [lam_text(v) for v in summary["lam"]] if "lam" in summary else None
    summary.loc[summary["method"].astype(str) == BASELINE, "lam_key"] = None
    summary = _per_family(summary)
    cells = [c for c in (*WORKLOAD, "family", "rho", "lam_key") if c in summary]
    best = best_configurations(summary, rank, cells, min_n=1)
    if rank != value:
        best = best.drop(columns=[f"{rank}_mean", f"{rank}_n"])
    best["_lam_order"] = [(-1, 0.0, "") if pd.isna(k) else lam_sort_key(k) for k in best["lam_key"]]
    best = best.sort_values([*cells[:-1], "_lam_order"], kind="stable", key=natural)
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


def natural(column: pd.Series) -> pd.Series:
    """Sort key that orders categoricals by their values, not their category codes."""
    return column.astype(object) if isinstance(column.dtype, pd.CategoricalDtype) else column
