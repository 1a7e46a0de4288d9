"""Shared machinery of the figure functions: skipping with a note, facet grids, seed
bands, legends and workload names.

A figure function raises ``SkipFigure(reason)`` (usually through ``require``) when the
sweep lacks what it needs; the ``@figure`` decorator turns that into ``None`` plus a note,
logged and appended to the caller's ``notes`` list, so a report can say why a figure is
absent instead of failing.
"""

from __future__ import annotations

import functools
import logging
import math
import textwrap
from typing import Callable, Iterable, Sequence

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import style
from analysis.aggregate import WORKLOAD, grouped

log = logging.getLogger("analysis.figures")


class SkipFigure(Exception):
    """This sweep does not have what the figure needs; the message says what is missing."""


def figure(fn: Callable[..., Figure]) -> Callable[..., Figure | None]:
    """Return None plus a note (logged, and appended to ``notes=`` when given) on SkipFigure."""

    @functools.wraps(fn)
    def wrapper(*args, notes: list[str] | None = None, **kwargs) -> Figure | None:
        style.apply_theme()
        try:
            return fn(*args, **kwargs)
        except SkipFigure as skip:
            note = f"{fn.__name__}: skipped, {skip}"
            log.info(note)
            if notes is not None:
                notes.append(note)
            return None

    return wrapper


def require(frame: pd.DataFrame | None, columns: Iterable[str], what: str = "the results") -> None:
    """Skip unless ``frame`` exists and has each column with at least one value."""
    if frame is None or len(frame) == 0:
        raise SkipFigure(f"{what} are empty")
    for column in columns:
        if column not in frame or not frame[column].notna().any():
            raise SkipFigure(f"{what} have no {column} values")


def ok_trials(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["status"].astype(str) == "ok"] if "status" in trials else trials


def facet_name(values: Sequence, columns: Sequence[str] = WORKLOAD) -> str:
    """'cifar10 · wrn · importance · λ = 0.5': workload values as they are (the sampler
    spelled out), other columns as name = value."""
    parts = []
    for column, value in zip(columns, values):
        text = "–" if pd.isna(value) else f"{value:g}" if isinstance(value, float) else str(value)
        if column == "sampler":
            parts.append(style.SAMPLER_NAMES.get(text, text))
        elif column in WORKLOAD or column in ("method", "device", "device_used"):
            parts.append(text)
        elif column == "family":
            parts.append(f"{text} family")
        else:
            parts.append(f"{style.LABELS.get(column, column)} = {text}")
    return " · ".join(parts)


def facets(frame: pd.DataFrame, columns: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) for each combination of ``columns`` present, in sorted order; titles
    wrap to fit a panel."""
    columns = [c for c in columns if c in frame]
    if not columns:
        return [("", frame)]
    return [(textwrap.fill(facet_name(key if isinstance(key, tuple) else (key,), columns), 46), rows)
            for key, rows in grouped(frame, columns)]


def grid(n_panels: int, n_rows: int = 1, width: float = 4.6, height: float = 3.5,
         sharey: bool | str = False, max_cols: int = 4) -> tuple[Figure, np.ndarray]:
    """A constrained-layout grid of ``n_rows`` x ``n_panels`` (panels wrap past max_cols
    when there is one row); unused axes are removed."""
    if n_rows == 1:
        cols = min(n_panels, max_cols)
        rows = math.ceil(n_panels / cols)
    else:
        cols, rows = n_panels, n_rows
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                             sharey=sharey, layout="constrained")
    if n_rows == 1:
        for ax in axes.flat[n_panels:]:
            ax.remove()
    return fig, axes


def caption(fig: Figure, text: str) -> None:
    """A one-line note above the panels, wrapped to the figure's width."""
    fig.suptitle(textwrap.fill(text, max(40, int(fig.get_size_inches()[0] * 11))), fontsize=10,
                 fontweight="normal")


def seed_band(ax, x: np.ndarray, mean: np.ndarray, low: np.ndarray, high: np.ndarray,
              color: str, label: str, linestyle: str = "-") -> None:
    """A mean line over a shaded band (the seeds' spread)."""
    ax.plot(x, mean, color=color, label=label, linestyle=linestyle, marker="o" if len(x) <= 12 else None,
            markersize=4)
    if np.any(np.isfinite(low) & np.isfinite(high) & (high > low)):
        ax.fill_between(x, low, high, color=color, alpha=0.18, linewidth=0)


def method_legend(fig: Figure, axes: Iterable, title: str | None = None,
                  key: Callable[[str], object] = style.method_sort_key) -> None:
    """One legend for the whole figure below the panels, entries sorted by ``key`` (default:
    the canonical method order)."""
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(text, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if not handles:
        return
    order = sorted(handles, key=key)
    width = fig.get_size_inches()[0]
    if len(order) > 6 and width < 10:  # a long legend beside narrow figures, not under them
        fig.set_size_inches(width + 2.4 * (1 + len(order) // 16), fig.get_size_inches()[1])
        legend = fig.legend([handles[k] for k in order], order, loc="outside right center", title=title,
                            ncols=1 + len(order) // 16)
        legend.get_title().set_fontsize(9)
        return
    legend = fig.legend([handles[k] for k in order], order, loc="outside lower center", title=title,
                        ncols=max(1, min(len(order), int(width / 1.9))))
    legend.get_title().set_fontsize(9)


def integer_ticks(ax, column: str, axis: str = "x") -> None:
    """Whole-number ticks for counts (epochs, iterations, gradient evaluations)."""
    if column in ("epoch", "iteration", "grad_evals"):
        getattr(ax, f"{axis}axis").set_major_locator(mticker.MaxNLocator(integer=True))


def log_axis(ax, axis: str = "y") -> None:
    """Log scale; a range under two decades gets plain ticks (0.2, 0.3, 0.5; every minor tick
    within one decade) instead of mathtext powers, which read badly at that zoom."""
    getattr(ax, f"set_{axis}scale")("log")
    low, high = getattr(ax, f"get_{axis}lim")()
    if low > 0 and high / low < 100:
        marks = (2, 3, 4, 5, 6, 7, 8, 9) if high / low < 10 else (2, 3, 5)
        target = getattr(ax, f"{axis}axis")
        target.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
        target.set_minor_formatter(mticker.FuncFormatter(lambda v, _: _minor_tick(v, marks)))


def zoom_after_start(ax, x: np.ndarray, low: np.ndarray, high: np.ndarray, start: float = 0.25) -> bool:
    """Fit the y axis to the curves after the first ``start`` of the x range (accuracy rises
    from chance in the first evaluations and would squeeze the end, where methods differ,
    into a sliver). Returns whether points were left below the axis."""
    x, low, high = (np.asarray(v, dtype=float) for v in (x, low, high))
    keep = np.isfinite(x) & np.isfinite(low) & np.isfinite(high)
    if not keep.any():
        return False
    late = keep & (x >= x[keep].min() + start * (x[keep].max() - x[keep].min()))
    if not late.any():
        return False
    bottom, top = low[late].min(), high[late].max()
    pad = 0.08 * max(top - bottom, 1e-9)
    ax.set_ylim(bottom - pad, top + pad)
    return bool((low[keep] < bottom - pad).any())


def wide_range(values) -> bool:
    """Positive values spanning more than a factor 10: worth a log axis."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return len(v) > 0 and v.min() > 0 and v.max() / v.min() > 10


def _minor_tick(value: float, marks: tuple[int, ...]) -> str:
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if any(abs(mantissa - m) < 1e-6 for m in marks) else ""


def curve_stats(rows: pd.DataFrame, keys: Sequence[str], x: str, y: str) -> pd.DataFrame:
    """Seed statistics of a curve: for each group and iteration, the mean x (times differ
    between seeds), the mean y and the mean +- 1 sd band; n counts the seeds."""
    g = grouped(rows, [*keys, "iteration"])
    out = pd.DataFrame({"x": g[x].mean(), "y": g[y].mean(), "sd": g[y].std(ddof=1), "n": g[y].count()})
    out["sd"] = out["sd"].fillna(0.0)
    return out.reset_index()
