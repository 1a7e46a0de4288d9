"""Figures of deep-learning sweeps: learning curves, accuracy against lam, and the rho x
lam heatmap in the layout of the paper's Table 2. Each takes the tidy tables of
``analysis.load`` and returns a matplotlib Figure, or None plus a note (see plotting)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from analysis import style
from analysis.aggregate import (AT_TEXT, WORKLOAD, best_config_trials, lam_rho_summary, lam_sort_key,
                                value_column)
from analysis.plotting import (SkipFigure, caption, curve_stats, facets, figure, grid, integer_ticks, log_axis,
                               method_legend, ok_trials, require, seed_band, wide_range, zoom_after_start)

CURVE_X = ("epoch", "time_train", "grad_evals")


@figure
def fig_learning_curves(trials: pd.DataFrame, epochs: pd.DataFrame, x: str = "epoch",
                        metrics: tuple[str, ...] = ("test_acc", "train_loss")) -> Figure:
    """Test accuracy and training loss against ``x`` (epoch, training-only time or gradient
    evaluations): one panel column per workload, one line per method at its best
    configuration (by final validation accuracy where recorded, else final test accuracy),
    bands of ±1 sd over seeds. Accuracy axes fit the curves after the first quarter of the
    x range; loss axes are logarithmic where the loss spans more than a factor 10."""
    if x not in CURVE_X:
        raise SkipFigure(f"x must be one of {', '.join(CURVE_X)}")
    require(trials, ["final_test_acc"], "the trials")
    require(epochs, [x, "test_acc"], "the epoch records")
    metrics = tuple(m for m in metrics if m in epochs and epochs[m].notna().any())
    classified = ok_trials(trials)
    classified = classified[classified["final_test_acc"].notna()]
    require(classified, ["final_test_acc"], "finished classification trials")
    chosen = best_config_trials(classified, by=[*WORKLOAD, "method"], metric="test_acc")
    keep = [c for c in WORKLOAD if c in chosen]
    rows = epochs.loc[epochs["trial_id"].isin(set(chosen["trial_id"])), ["trial_id", "iteration", x, *metrics]]
    rows = rows.assign(trial_id=rows["trial_id"].astype(str)).merge(
        chosen[["trial_id", "method", *keep]], on="trial_id")
    require(rows, [x, "test_acc"], "the chosen trials' records")
    panels = facets(rows, keep)
    fig, axes = grid(len(panels), n_rows=len(metrics), width=4.4, height=3.2)
    for col, (title, panel) in enumerate(panels):
        for row, metric in enumerate(metrics):
            ax = axes[row, col]
            curves = curve_stats(panel.dropna(subset=[x, metric]), ["method"], x, metric)
            k = style.scale(metric)
            for method in style.method_order(curves["method"]):
                c = curves[curves["method"].astype(str) == method]
                seed_band(ax, c["x"].to_numpy(), k * c["y"].to_numpy(), k * (c["y"] - c["sd"]).to_numpy(),
                          k * (c["y"] + c["sd"]).to_numpy(), style.method_color(method), method)
            if metric.endswith("loss") and wide_range(curves["y"]):
                log_axis(ax)
            if metric.endswith("_acc"):
                zoom_after_start(ax, curves["x"], k * (curves["y"] - curves["sd"]), k * (curves["y"] + curves["sd"]))
            ax.set_title(title if row == 0 else "")
            ax.set_xlabel(style.label(x) if row == len(metrics) - 1 else "")
            integer_ticks(ax, x)
            ax.set_ylabel(style.label(metric) if col == 0 else "")
    method_legend(fig, axes.flat)
    caption(fig, "Each method at its best configuration; bands: ±1 sd over seeds; accuracy axes fit the curves "
            "after the first quarter of the x range (earlier points may lie below)")
    return fig


@figure
def fig_accuracy_vs_lam(trials: pd.DataFrame, at: str = "final") -> Figure:
    """Test accuracy against lam, one line per rho, 95% CI error bars over seeds; SGD as a
    dashed reference with its CI band. lam schedules sit right of the numeric lams."""
    return against_lam(trials, "test_acc", at)


def against_lam(trials: pd.DataFrame, metric: str, at: str, select_by: str | None = None,
                log: bool = False) -> Figure:
    """``metric`` against lam, one line per rho (the body of the *_vs_lam figures)."""
    cells = lam_cells(trials, metric, at, select_by)
    value = value_column(metric, at)
    k = style.scale(metric)
    panels = facets(cells, [c for c in (*WORKLOAD, "family") if c in cells])
    fig, axes = grid(len(panels), width=5.0, height=3.8, max_cols=3)
    rhos = sorted(cells.loc[cells["lam_key"].notna(), "rho"].dropna().unique())
    colors = dict(zip(rhos, sns.color_palette("flare", len(rhos))))
    for ax, (title, panel) in zip(axes.flat, panels):
        lams = sorted(panel["lam_key"].dropna().unique(), key=lam_sort_key)
        position = {lam: i for i, lam in enumerate(lams)}
        base = panel[panel["lam_key"].isna()]
        if len(base) and base[f"{value}_mean"].notna().any():
            mean, low, high = (k * base[f"{value}_{s}"].iloc[0] for s in ("mean", "ci95_low", "ci95_high"))
            ax.axhline(mean, color=style.method_color(style.BASELINE), linestyle="--", label=style.BASELINE)
            if np.isfinite(low):
                ax.axhspan(low, high, color=style.method_color(style.BASELINE), alpha=0.08, linewidth=0)
        for i, rho in enumerate(rhos):
            line = panel[(panel["rho"] == rho) & panel["lam_key"].notna()]
            if line.empty:
                continue
            line = line.iloc[np.argsort([position[key] for key in line["lam_key"]])]
            xs = np.array([position[key] for key in line["lam_key"]]) + 0.06 * (i - (len(rhos) - 1) / 2)
            mean = k * line[f"{value}_mean"].to_numpy()
            err = np.vstack([mean - k * line[f"{value}_ci95_low"].to_numpy(),
                             k * line[f"{value}_ci95_high"].to_numpy() - mean])
            ax.errorbar(xs, mean, yerr=np.nan_to_num(err), color=colors[rho], marker="o", capsize=3,
                        label=f"ρ = {rho:g}")
        ax.set_xticks(range(len(lams)), lams)
        ax.set_xlabel(style.label("lam"))
        ax.set_ylabel(style.label(metric, AT_TEXT[at]))
        if log and wide_range(panel[f"{value}_mean"]):
            log_axis(ax)
        ax.set_title(title)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat:
        if ax.get_legend():
            ax.get_legend().remove()
    legend = fig.legend(handles, labels, loc="outside right center", title="ρ (bars: 95% CI)")
    legend.get_title().set_fontsize(9)
    return fig


@figure
def fig_rho_lam_heatmap(trials: pd.DataFrame, at: str = "final") -> Figure:
    """Mean test accuracy (%) per rho (rows) and lam (columns), annotated mean ± std over
    seeds: the layout of the paper's Table 2. SGD's value is in the panel title."""
    cells = lam_cells(trials, "test_acc", at)
    value = value_column("test_acc", at)
    panels = facets(cells, [c for c in (*WORKLOAD, "family") if c in cells])
    n_lam = cells["lam_key"].nunique()
    n_rho = cells.loc[cells["lam_key"].notna(), "rho"].nunique()
    fig, axes = grid(len(panels), width=1.3 * n_lam + 2.4, height=0.7 * n_rho + 2.0, max_cols=2)
    for ax, (title, panel) in zip(axes.flat, panels):
        grid_cells = panel[panel["lam_key"].notna()]
        lams = sorted(grid_cells["lam_key"].unique(), key=lam_sort_key)
        mean = grid_cells.pivot(index="rho", columns="lam_key", values=f"{value}_mean").reindex(columns=lams) * 100
        std = grid_cells.pivot(index="rho", columns="lam_key", values=f"{value}_std").reindex(columns=lams) * 100
        _heatmap(ax, mean, std, style.label("test_acc", AT_TEXT[at]))
        ax.set_xlabel(style.label("lam"))
        ax.set_ylabel(style.label("rho"))
        base = panel[panel["lam_key"].isna()]
        if len(base):
            sgd = f"{style.BASELINE} {100 * base[f'{value}_mean'].iloc[0]:.2f} ± {100 * base[f'{value}_std'].iloc[0]:.2f}"
            title = f"{title}\n{sgd}" if title else sgd
        ax.set_title(title)
    caption(fig, "Mean ± sd over seeds; each cell at its best other hyperparameters")
    return fig


def _heatmap(ax, mean: pd.DataFrame, std: pd.DataFrame, label: str) -> None:
    """A seaborn-style heatmap, mean and sd written in each cell (dark or light text by the
    cell's luminance). Drawn with matplotlib: seaborn's heatmap redraws the whole figure
    each call, which is quadratic in the number of panels."""
    values = mean.to_numpy(dtype=float)
    mesh = ax.pcolormesh(np.ma.masked_invalid(values), cmap="viridis", edgecolors="white", linewidth=0.5)
    ax.figure.colorbar(mesh, ax=ax, label=label).outline.set_linewidth(0)
    ax.set_xlim(0, values.shape[1])
    ax.set_ylim(values.shape[0], 0)
    ax.set_xticks(np.arange(values.shape[1]) + 0.5, list(mean.columns))
    ax.set_yticks(np.arange(values.shape[0]) + 0.5, [f"{r:g}" for r in mean.index])
    ax.grid(False)
    for side in ax.spines.values():
        side.set_visible(False)
    colors = mesh.cmap(mesh.norm(values))
    for (i, j), value in np.ndenumerate(values):
        if np.isnan(value):
            continue
        r, g, b, _ = colors[i, j]
        spread = "–" if np.isnan(std.iat[i, j]) else f"{std.iat[i, j]:.2f}"
        ax.text(j + 0.5, i + 0.5, f"{value:.2f}\n±{spread}", ha="center", va="center", fontsize=8.5,
                color="black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white")


def lam_cells(trials: pd.DataFrame, metric: str, at: str, select_by: str | None = None) -> pd.DataFrame:
    """The (workload, rho, lam) cells; skip unless some workload varies lam."""
    summary = f"{'final' if at == 'final' else 'best'}_{metric}"
    require(trials, ["lam", "rho", summary], "the trials")
    ok = ok_trials(trials)
    cells = lam_rho_summary(ok, metric, at, select_by)
    sam = cells[cells["lam_key"].notna() & cells[f"{value_column(metric, at)}_mean"].notna()]
    if sam.empty:  # the cells keep only method families that vary lam
        if ((ok["method"].astype(str) != style.BASELINE) & ok[summary].notna()).any():
            raise SkipFigure("no workload has more than one lam value")
        raise SkipFigure(f"there are no SAM-family trials with {summary} values")
    keys = [c for c in (*WORKLOAD, "family") if c in sam]
    sizes = sam.groupby(keys, observed=True)["lam_key"].nunique() if keys else pd.Series([sam["lam_key"].nunique()])
    if sizes.max() < 2:
        raise SkipFigure("no workload has more than one lam value")
    return cells
