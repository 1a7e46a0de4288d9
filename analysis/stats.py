"""Intervals, tests and corrections over independent replicates (seeds), vectorised.

Every function here states its assumptions in its docstring and says "no answer" (NaN plus
a reason) rather than a confident one when the data cannot support it: fewer than two
replicates, or replicates that agree exactly (zero sample variance, as when a test set of
359 examples makes accuracy move in steps of 1/359). docs/statistics.md describes each in
words.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

# Reasons a comparison gives no verdict; verdicts otherwise are better / worse / unclear.
TOO_FEW = "too few seeds"
ZERO_VARIANCE = "zero variance"


def ci_name(level: float) -> str:
    """Column infix of an interval: 0.95 -> 'ci95', 0.995 -> 'ci99_5' (never rounded)."""
    if not 0 < level < 1:
        raise ValueError(f"level {level!r} is not in (0, 1)")
    return "ci" + f"{100 * level:.10g}".replace(".", "_")


def t_quantile(level: float, dof) -> np.ndarray:
    """Two-sided Student-t quantile for ``level`` (NaN where dof is not positive)."""
    dof = np.asarray(dof, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(dof > 0, stats.t.ppf(0.5 + level / 2, np.where(dof > 0, dof, 1.0)), np.nan)


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of independent seeds. NaN bounds below two seeds and when
    every seed gave the same value (an interval of width 0 would claim certainty)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(x.mean())
    sd = x.std(ddof=1) if len(x) > 1 else np.nan
    if not sd > 0:
        return (mean, np.nan, np.nan)
    half = float(t_quantile(level, len(x) - 1)) * sd / np.sqrt(len(x))
    return (mean, mean - half, mean + half)


def summarize(values: pd.DataFrame, value: str, by: Sequence[str], level: float = 0.95,
              log: bool = False) -> pd.DataFrame:
    """Per group of ``by``: mean, sample sd (ddof 1), count and Student-t interval of ``value``.

    ``log=True`` (positive ratios such as the relative suboptimality) summarises log10 of the
    values instead: ``<value>_geomean`` is the geometric mean, ``<value>_log10_std`` the sd of
    log10 and the interval is the t interval of log10 mapped back, so it is never negative.
    Missing values (and, with ``log``, non-positive ones) are not counted. The interval is
    NaN below two values and when the values' sd is 0. An accuracy's interval (a ``*_acc_*``
    column) is clipped to [0, 1]: a t interval of few seeds can pass 0% or 100%, and
    clipping to the values' range only raises its coverage."""
    frame = values[[*by, value]].copy()
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            frame[value] = np.log10(frame[value].where(frame[value] > 0))
    g = frame.groupby(list(by), observed=True, dropna=False, sort=True)[value]
    mean, std, n = g.mean(), g.std(ddof=1), g.count()
    center, spread = (f"{value}_geomean", f"{value}_log10_std") if log else (f"{value}_mean", f"{value}_std")
    out = pd.DataFrame({center: mean, spread: std, f"{value}_n": n})
    sd = std.to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = np.where(sd > 0, t_quantile(level, n.to_numpy(dtype=float) - 1) * sd / np.sqrt(n), np.nan)
    low, high = mean.to_numpy(dtype=float) - half, mean.to_numpy(dtype=float) + half
    if log:
        out[center], low, high = 10.0 ** mean, 10.0 ** low, 10.0 ** high
    if "acc" in value.split("_"):
        low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
    name = ci_name(level)
    out[f"{value}_{name}_low"], out[f"{value}_{name}_high"] = low, high
    return out.reset_index()


def center_column(value: str, log: bool) -> str:
    """The column holding the central value of ``summarize``: mean or geometric mean."""
    return f"{value}_geomean" if log else f"{value}_mean"


def middle_median(values: Sequence[float], upper: bool = False) -> float:
    """Median that, for an even count, takes one of the two middle values (the upper when
    ``upper``, else the lower) instead of their mean. NaN is ignored; infinities are values.
    Used where half the replicates must reach a target set from their own median (see
    docs/statistics.md): with the mean of the middles, a configuration with 4 seeds would
    miss its own target."""
    x = np.sort(np.asarray(values, dtype=float))
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return np.nan
    return float(x[len(x) // 2] if upper else x[(len(x) - 1) // 2])


def welch(mean_a, sd_a, n_a, mean_b, sd_b, n_b, level: float = 0.95) -> pd.DataFrame:
    """Welch's unequal-variance comparison of a against b, element-wise: columns ``diff``
    (a - b), ``low``/``high`` (the t interval with Welch–Satterthwaite degrees of freedom),
    ``p`` (two-sided), ``dof`` and ``reason``: empty when tested, else ``too few seeds``
    (either side below 2) or ``zero variance`` (either side's seeds all equal: the
    Satterthwaite approximation then rests on the other side alone and the metric's
    resolution, not the seeds, sets the spread; no test is made). Matches
    ``scipy.stats.ttest_ind(a, b, equal_var=False)`` where it tests."""
    ma, sa, na, mb, sb, nb = (np.atleast_1d(np.asarray(x, dtype=float)) for x in (mean_a, sd_a, n_a, mean_b, sd_b, n_b))
    diff = ma - mb
    few = (na < 2) | (nb < 2) | np.isnan(sa) | np.isnan(sb)
    flat = ~few & ((sa == 0) | (sb == 0))
    tested = ~few & ~flat
    with np.errstate(invalid="ignore", divide="ignore"):
        va, vb = sa ** 2 / na, sb ** 2 / nb
        se = np.sqrt(va + vb)
        dof = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
        half = t_quantile(level, np.where(tested, dof, np.nan)) * se
        p = 2 * stats.t.sf(np.abs(diff) / se, np.where(tested, dof, 1.0))
    reason = np.select([few, flat], [TOO_FEW, ZERO_VARIANCE], "")
    return pd.DataFrame({"diff": diff, "low": np.where(tested, diff - half, np.nan),
                         "high": np.where(tested, diff + half, np.nan), "p": np.where(tested, p, np.nan),
                         "dof": np.where(tested, dof, np.nan), "reason": reason})


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN entries are not part of the
    family and stay NaN): the k-th smallest of m becomes max over j <= k of (m - j + 1) p_(j),
    capped at 1. Controls the family-wise error rate at the nominal level."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    if len(present) == 0:
        return out
    order = present[np.argsort(p[present], kind="stable")]
    m = len(order)
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def fieller(mean_a, sd_a, n_a, mean_b, sd_b, n_b, level: float = 0.95) -> pd.DataFrame:
    """Ratio a / b of two independent means with Fieller's interval, element-wise.

    Fieller's interval is the set of r with |a - r b| <= t * se(a - r b); it carries the
    uncertainty of both means (dividing by b as if it were exact undercovers). t uses the
    Welch–Satterthwaite degrees of freedom of a - r b at the estimated ratio. Columns
    ``ratio``, ``low`` and ``high``; the bounds are NaN below two values per side, when
    either side's sd is 0, or when b is not clearly away from 0 (the set is then unbounded)."""
    ma, sa, na, mb, sb, nb = (np.atleast_1d(np.asarray(x, dtype=float)) for x in (mean_a, sd_a, n_a, mean_b, sd_b, n_b))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = ma / mb
        va, vb = sa ** 2 / na, sb ** 2 / nb
        ok = (na >= 2) & (nb >= 2) & (sa > 0) & (sb > 0)
        dof = (va + ratio ** 2 * vb) ** 2 / (va ** 2 / (na - 1) + ratio ** 4 * vb ** 2 / (nb - 1))
        t2 = t_quantile(level, np.where(ok, dof, np.nan)) ** 2
        quad = mb ** 2 - t2 * vb                      # (b^2 - t^2 vb) r^2 - 2ab r + (a^2 - t^2 va) <= 0
        disc = (ma * mb) ** 2 - quad * (ma ** 2 - t2 * va)
        bounded = ok & (quad > 0) & (disc >= 0)
        root = np.sqrt(np.where(bounded, disc, np.nan))
        low, high = (ma * mb - root) / quad, (ma * mb + root) / quad
    return pd.DataFrame({"ratio": ratio, "low": np.where(bounded, low, np.nan),
                         "high": np.where(bounded, high, np.nan)})
