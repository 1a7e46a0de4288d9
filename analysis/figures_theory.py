"""The theory figures for synthetic problems, in the form of the paper's Figures 1-3:
relative suboptimality against iterations on a log axis, one line per lam, per sampler or
per step-size rule, with bands over trials (seeds and problem draws)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import style
from analysis.aggregate import WORKLOAD, config_columns, trial_configs
from analysis.plotting import (SkipFigure, curve_stats, facet_name, facets, figure, grid, method_legend, ok_trials,
                               require)

# hue -> the config columns it replaces (they must not split the panels)
HUES = {"lam": ("method", "lam"), "sampler": ("sampler", "paper_compat"),
        "step": ("step_rule", "lr_schedule", "lr", "rho")}
COMPAT = " (paper-compat)"  # the reference code's draw: importance without reweighting
MARKERS = ("o", "^", "v", "s", "D", "<", ">", "p", "h", "d", "P", "X")
SAMPLER_ORDER = ("full", "tau_nice", "uniform", "importance", "reshuffle")


def hue_labels(configs: pd.DataFrame, hue: str) -> pd.Series:
    """The legend label of each trial (row of the trials table) for ``hue``: its method,
    sampler, or step-size rule ('v1, decreasing steps'; 'lr 0.01, constant steps')."""
    if hue == "lam":
        return configs["method"].astype(str)
    if hue == "sampler":
        names = configs["sampler"].astype(str).map(lambda s: style.SAMPLER_NAMES.get(s, s))
        if "paper_compat" in configs:
            names = names + configs["paper_compat"].map(lambda compat: COMPAT if compat is True else "")
        return names
    given = (configs["lr"].map(lambda lr: f"lr {lr:g}") if "lr" in configs
             else pd.Series("given lr", index=configs.index))
    rule = configs["step_rule"].astype(object).where(configs["step_rule"].notna(), given) \
        if "step_rule" in configs else given
    schedule = configs["lr_schedule"].astype(str) if "lr_schedule" in configs else "constant"
    return rule.astype(str) + ", " + schedule + " steps"


def _hue_key(hue: str):
    if hue == "lam":
        return style.method_sort_key
    if hue == "sampler":
        names = [style.SAMPLER_NAMES.get(s, s) for s in SAMPLER_ORDER]
        base = lambda label: label.removesuffix(COMPAT)  # noqa: E731
        return lambda label: (names.index(base(label)) if base(label) in names else 99, label)
    return lambda label: (label.startswith("lr"), label)


def _hue_color(hue: str, label: str) -> str:
    if hue == "lam":
        return style.method_color(label)
    if hue == "sampler":
        names = {style.SAMPLER_NAMES.get(k, k): v for k, v in style.SAMPLER_COLORS.items()}
        names[style.SAMPLER_NAMES["importance"] + COMPAT] = "#CC79A7"
        return style.color_for(label, names)
    return style.color_for(label, {"v1, constant steps": "#0072B2", "v1, decreasing steps": "#D55E00",
                                   "v2, constant steps": "#56B4E9", "v2, decreasing steps": "#E69F00",
                                   "v2_noiseless, constant steps": "#009E73",
                                   "v2_noiseless, decreasing steps": "#CC79A7"})


@figure
def fig_theory_curves(trials: pd.DataFrame, epochs: pd.DataFrame, hue: str = "lam") -> Figure:
    """(f(x_t) - f*)/(f(x_0) - f*) against iterations (log y), one line per ``hue`` ("lam",
    "sampler" or "step"), one panel per combination of the other varied settings. Lines
    are geometric means over trials; bands span ±1 sd of log10 over trials."""
    if hue not in HUES:
        raise SkipFigure(f"hue must be one of {', '.join(HUES)}")
    require(trials, ["final_rel_subopt"], "the trials")
    require(epochs, ["rel_subopt"], "the epoch records")
    done = ok_trials(trials)
    done = done[done["final_rel_subopt"].notna()]
    require(done, ["final_rel_subopt"], "finished synthetic trials")
    configs = trial_configs(done)
    configs["_hue"] = hue_labels(done, hue).to_numpy()
    split = [c for c in (*WORKLOAD, *config_columns(done)) if c in configs and c not in HUES[hue]]
    if "method" in split:  # the method label already names lam
        split = [c for c in split if c != "lam"]
    varied = [c for c in dict.fromkeys(split) if configs[c].nunique(dropna=False) > 1]
    panels = [(title, rows) for title, rows in facets(configs, varied) if rows["_hue"].nunique() >= 2]
    if not panels:
        what = "step-size rule" if hue == "step" else hue
        raise SkipFigure(f"no synthetic problem was run with more than one {what}")
    fixed = [c for c in WORKLOAD if c in split and c not in varied]
    common = facet_name([configs[c].iloc[0] for c in fixed], fixed)
    rows = epochs.loc[epochs["trial_id"].isin(set(configs["trial_id"])), ["trial_id", "iteration", "rel_subopt"]]
    rows = rows.assign(trial_id=rows["trial_id"].astype(str))
    rows["log_subopt"] = np.log10(rows["rel_subopt"].where(rows["rel_subopt"] > 0))
    require(rows, ["log_subopt"], "the synthetic trials' records")
    fig, axes = grid(len(panels), width=4.8, height=3.8, max_cols=3)
    key = _hue_key(hue)
    for ax, (title, panel) in zip(axes.flat, panels):
        data = rows.merge(panel[["trial_id", "_hue"]], on="trial_id")
        curves = curve_stats(data, ["_hue"], "iteration", "log_subopt")
        for i, label in enumerate(sorted(curves["_hue"].unique(), key=key)):
            c = curves[curves["_hue"] == label].dropna(subset=["y"])
            color = _hue_color(hue, label)
            ax.plot(c["x"], 10 ** c["y"], color=color, label=label, marker=MARKERS[i % len(MARKERS)],
                    markevery=max(1, len(c) // 4), markersize=5, markeredgecolor="0.2", markeredgewidth=0.6)
            if (c["sd"] > 0).any():
                ax.fill_between(c["x"], 10 ** (c["y"] - c["sd"]), 10 ** (c["y"] + c["sd"]), color=color,
                                alpha=0.18, linewidth=0)
        ax.set_yscale("log")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 4))  # 3x10^5, not 300000
        ax.set_xlabel(style.label("iteration"))
        ax.set_ylabel(style.label("rel_subopt"))
        ax.set_title(title, fontsize=10)
    method_legend(fig, axes.flat, key=key, title="geometric mean over trials,\nband ±1 sd of log10")
    fig.suptitle(common, fontsize=11)
    return fig
