"""Sharpness figures: the Hessian's top eigenvalue against accuracy, over training and
against lam. They need trials run with ``sharpness_every > 0`` and skip otherwise."""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from analysis import style
from analysis.aggregate import AT_TEXT, WORKLOAD, best_config_trials, primary_metric, trial_values, value_column
from analysis.figures_training import against_lam
from analysis.plotting import (caption, curve_stats, facets, figure, grid, integer_ticks, log_axis, method_legend,
                               ok_trials, require, seed_band, wide_range)


@figure
def fig_sharpness_vs_accuracy(trials: pd.DataFrame, at: str = "final") -> Figure:
    """One point per trial: final lam_max against test accuracy, coloured by method (lam_max
    on a log axis in panels where it spans more than a factor 10)."""
    require(trials, ["final_lam_max", "final_test_acc" if at == "final" else "best_test_acc"], "the trials")
    values = trial_values(ok_trials(trials), None, "test_acc", at)
    sharp = trial_values(ok_trials(trials), None, "lam_max", "final")
    data = values.merge(sharp[["trial_id", "lam_max_final"]], on="trial_id")
    accuracy = value_column("test_acc", at)
    data = data.dropna(subset=[accuracy, "lam_max_final"])
    require(data, [accuracy, "lam_max_final"], "trials with both lam_max and test accuracy")
    data = data.assign(**{accuracy: 100 * data[accuracy], "method": data["method"].astype(str)})
    keys = [c for c in WORKLOAD if c in data]
    panels = facets(data, keys)
    fig, axes = grid(len(panels), width=4.8, height=3.8, max_cols=3)
    order = style.method_order(data["method"])
    for ax, (title, panel) in zip(axes.flat, panels):
        sns.scatterplot(data=panel, x="lam_max_final", y=accuracy, hue="method", hue_order=order,
                        palette=style.palette(order), ax=ax, s=36, edgecolor="white", linewidth=0.4)
        if wide_range(panel["lam_max_final"]):
            log_axis(ax, "x")
        ax.set_xlabel(style.label("lam_max", "final"))
        ax.set_ylabel(style.label("test_acc", AT_TEXT[at]))
        ax.set_title(title)
    method_legend(fig, axes.flat)
    return fig


@figure
def fig_sharpness_over_training(trials: pd.DataFrame, epochs: pd.DataFrame) -> Figure:
    """lam_max against epoch for each method at its best configuration; bands ±1 sd over seeds."""
    require(trials, ["final_lam_max"], "the trials")
    require(epochs, ["lam_max", "epoch"], "the epoch records")
    done = ok_trials(trials)
    chosen = best_config_trials(done[done["final_lam_max"].notna()], by=[*WORKLOAD, "method"],
                                metric=primary_metric(done))
    keys = [c for c in WORKLOAD if c in chosen]
    rows = epochs.loc[epochs["trial_id"].isin(set(chosen["trial_id"])) & epochs["lam_max"].notna(),
                      ["trial_id", "iteration", "epoch", "lam_max"]]
    rows = rows.assign(trial_id=rows["trial_id"].astype(str)).merge(chosen[["trial_id", "method", *keys]],
                                                                    on="trial_id")
    require(rows, ["lam_max"], "the chosen trials' records")
    panels = facets(rows, keys)
    fig, axes = grid(len(panels), width=4.8, height=3.6, max_cols=3)
    for ax, (title, panel) in zip(axes.flat, panels):
        curves = curve_stats(panel, ["method"], "epoch", "lam_max")
        for method in style.method_order(curves["method"]):
            c = curves[curves["method"].astype(str) == method]
            seed_band(ax, c["x"].to_numpy(), c["y"].to_numpy(), (c["y"] - c["sd"]).to_numpy(),
                      (c["y"] + c["sd"]).to_numpy(), style.method_color(method), method)
        if wide_range(curves["y"]):
            log_axis(ax)
        ax.set_xlabel(style.label("epoch"))
        integer_ticks(ax, "epoch")
        ax.set_ylabel(style.label("lam_max"))
        ax.set_title(title)
    method_legend(fig, axes.flat)
    caption(fig, "Each method at its best configuration; bands: ±1 sd over seeds")
    return fig


@figure
def fig_sharpness_vs_lam(trials: pd.DataFrame) -> Figure:
    """Final lam_max against lam, one line per rho (each cell at its most accurate setting)."""
    require(trials, ["final_lam_max"], "the trials")
    select = "test_acc" if "final_test_acc" in trials and trials["final_test_acc"].notna().any() else None
    return against_lam(trials, "lam_max", "final", select_by=select, log=True)
