"""The suite's two figures, in the report's look (analysis.style) and written by the
report's ``save`` (no creation dates: the same results give the same bytes)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

MET, MISSED, REPORTED = "#009E73", "#D55E00", "#7F7F7F"


def draw_ratios(ratios: pd.DataFrame, machine: pd.Series, path: Path) -> None:
    """Every headline ratio: median, interquartile range, goal; log scale around 1."""
    import matplotlib.pyplot as plt

    from analysis import style
    from analysis.figures import close, save

    style.apply_theme()
    labels = [f"[{r.item}] {r.case}\n{r.side} / {r.reference}" if r.ratio_of == "side / reference"
              else f"[{r.item}] {r.case}\n{r.reference} / {r.side}" for r in ratios.itertuples()]
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(ratios) + 1.6))
    for y, r in enumerate(ratios.itertuples()):
        color = REPORTED if pd.isna(r.goal) else MET if r.goal_met else MISSED
        ax.plot([r.ratio_q25, r.ratio_q75], [y, y], color=color, lw=3, alpha=0.5, solid_capstyle="butt")
        ax.plot(r.ratio_median, y, "o", color=color)
        ax.annotate(f"{r.ratio_median:.3g}", (r.ratio_median, y), xytext=(6, 4), textcoords="offset points",
                    fontsize=8)
        if not pd.isna(r.goal):
            ax.plot(r.goal, y, marker="|", ms=14, mew=2, color="black")
    ax.axvline(1.0, color="black", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.margins(x=0.12)  # room for the value written right of the largest ratio
    ax.set_yticks(range(len(ratios)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ratio, log scale\n(dot: median per repeat; bar: interquartile range; |: goal)", fontsize=9)
    gpu = machine.get("gpu_name")
    where = f"{gpu}" if isinstance(gpu, str) and gpu else f"{machine['cpu_model']}, {machine['cores']} cores"
    ax.set_title(f"sambench bench ({machine['size']}): {where}, torch {machine['torch_version']}\n"
                 "green: goal met, vermillion: missed, grey: reported only", fontsize=9)
    fig.tight_layout()
    save(fig, path, "png")
    close(fig)


def draw_timings(timings: pd.DataFrame, path: Path) -> None:
    """The raw values of every measurement, one panel each: the spread behind the ratios."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from analysis import style
    from analysis.figures import close, save

    style.apply_theme()
    groups = list(timings.groupby(["item", "case"], sort=False))
    cols = 3
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(13, 2.4 * rows), squeeze=False)
    for ax, ((item, case), frame) in zip(axes.flat, groups):
        sns.stripplot(data=frame, x="value", y="side", ax=ax, size=4, color="#0072B2", jitter=0.15)
        ax.set_title(f"[{item}] {case}", fontsize=8)
        ax.set_xlabel(frame["unit"].iloc[0], fontsize=8)
        ax.set_ylabel("")
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    fig.tight_layout()
    save(fig, path, "png")
    close(fig)
