"""Wording of the report: numbers, differences, configurations and verdict counts as text.
One place, so that the summary's sentences say exactly what the tables computed."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from analysis import aggregate as agg
from analysis.compare import verdict_counts
from analysis.plotting import facet_name


def workload(row: Mapping[str, Any]) -> str:
    keys = [c for c in agg.WORKLOAD if c in row]
    return facet_name([row[c] for c in keys], keys)


def config_text(row: Mapping[str, Any], table: pd.DataFrame, prefix: str = "") -> str:
    """The method plus every setting that varies within its workload: 'SAM (rho=0.05, lr=0.1)'.
    ``prefix`` reads the columns of a baseline or other side ('baseline_', 'other_')."""
    method = row[f"{prefix}method"] if f"{prefix}method" in row else row["method"]
    skip = {"method", "optimizer", "lam", *agg.WORKLOAD, *(("rho",) if method == agg.BASELINE else ())}
    for column in agg.WORKLOAD:  # a setting fixed for this workload says nothing here
        if column in table and column in row:
            table = table[table[column].astype(object) == row[column]]
    settings = []
    for column in agg.CONFIG_FIELDS:
        source = f"{prefix}{column}" if f"{prefix}{column}" in table else column
        if column in skip or source not in table or table[source].nunique(dropna=False) < 2:
            continue
        value = row.get(source)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        settings.append(f"{column}={value:g}" if isinstance(value, float) else f"{column}={value}")
    return f"{method}" + (f" ({', '.join(settings)})" if settings else "")


def metric_text(metric: str) -> str:
    return {"test_acc": "test accuracy", "rel_subopt": "relative suboptimality", "train_loss": "training loss",
            "val_acc": "validation accuracy", "lam_max": "λ_max"}.get(metric, metric)


def number(metric: str, value: float) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{100 * value:.2f}%" if metric.endswith("_acc") else f"{value:.3g}"


def diff(metric: str, value: float, log: bool = False) -> str:
    """A difference of means (percentage points for accuracies), or for a log10 difference
    the ratio of geometric means it stands for."""
    if value is None or not np.isfinite(value):
        return "–"
    if log:
        return f"×{10 ** value:.3g}"
    return f"{100 * value:+.2f} pp" if metric.endswith("_acc") else f"{value:+.3g}"


def stat_text(row: Mapping[str, Any], value: str, metric: str, level: str = "ci95") -> str:
    """'97.50% ± 0.20% (n=3, 95% CI 97.00% to 98.00%)', or the geometric mean for log metrics."""
    n = int(row[f"{value}_n"])
    low, high = row[f"{value}_{level}_low"], row[f"{value}_{level}_high"]
    if f"{value}_geomean" in row:
        text = f"geometric mean {number(metric, row[f'{value}_geomean'])} (n={n}"
    else:
        std = row[f"{value}_std"]
        text = f"{number(metric, row[f'{value}_mean'])} ± {number(metric, std) if n > 1 else '–'} (n={n}"
        if n > 1 and std == 0:
            return text + ", every seed equal: no interval)"
    return text + (f", 95% CI {number(metric, low)} to {number(metric, high)})" if np.isfinite(low) else ")")


def counts_text(table: pd.DataFrame) -> str:
    """'of 12 configurations 1 better, 0 worse, 9 unclear, 2 too few seeds' (zeros of the
    no-test reasons left out)."""
    counts = verdict_counts(table)
    parts = [f"{counts[v]} {v}" for v in ("better", "worse", "unclear")]
    parts += [f"{counts[v]} {v}" for v in ("too few seeds", "zero variance") if counts[v]]
    return f"of {len(table)} configurations " + ", ".join(parts)


def pm(row: Mapping[str, Any], value: str) -> str:
    std = row[f"{value}_std"]
    return f"{100 * row[f'{value}_mean']:.2f} ± " + ("–" if pd.isna(std) else f"{100 * std:.2f}")
