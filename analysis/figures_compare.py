"""Figures that compare methods across conditions: samplers, wall-clock cost per epoch,
time-to-target, and the AlgoPerf-style performance profile."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import style
from analysis.aggregate import (AT_TEXT, WORKLOAD, best_config_trials, higher_is_better, log_scale, primary_metric,
                                value_column)
from analysis.plotting import SkipFigure, caption, facets, figure, grid, log_axis, method_legend, ok_trials, require
from analysis.stats import center_column, summarize
from analysis.targets import (DEVICE, method_time_to_target, n_workloads, performance_profile, performance_ratios,
                              reference_target, time_to_target)
from analysis.timing import wallclock_table

SAMPLER_ORDER = ("full", "tau_nice", "uniform", "importance", "reshuffle")
COST_TEXT = {"time_to_target": "Training-only time to target (s)",
             "grad_evals_to_target": "Gradient evaluations to target"}


@figure
def fig_sampler_comparison(trials: pd.DataFrame, at: str = "final") -> Figure:
    """Uniform against importance sampling against reshuffling: each method (at its best
    configuration per sampler) with 95% CI over seeds, one panel per dataset and model.
    Relative suboptimality shows geometric means with log-scale intervals."""
    done = ok_trials(trials)
    metric = primary_metric(done)
    at = at if metric == "test_acc" else "final"
    require(done, ["sampler", f"{'final' if at == 'final' else 'best'}_{metric}"], "the trials")
    keys = [c for c in ("dataset", "model") if c in done]
    chosen = best_config_trials(done, by=[*keys, "sampler", "method"], metric=metric, at=at)
    value = value_column(metric, at)
    log = log_scale(metric)
    stats = summarize(chosen, value, [*keys, "sampler", "method"], log=log)
    center = center_column(value, log)
    panels = [(t, p) for t, p in facets(stats, keys) if p["sampler"].nunique() >= 2]
    if not panels:
        raise SkipFigure("no dataset and model was run with more than one sampler")
    k = style.scale(metric)
    fig, axes = grid(len(panels), width=5.2, height=3.8, max_cols=3)
    for ax, (title, panel) in zip(axes.flat, panels):
        samplers = sorted(panel["sampler"].astype(str).unique(),
                          key=lambda s: (SAMPLER_ORDER.index(s) if s in SAMPLER_ORDER else 99, s))
        methods = style.method_order(panel["method"])
        width = 0.7 / max(len(methods), 1)
        for i, method in enumerate(methods):
            sub = panel[panel["method"].astype(str) == method]
            rows = sub.set_index(sub["sampler"].astype(str)).reindex(samplers)
            xs = np.arange(len(samplers)) + width * (i - (len(methods) - 1) / 2)
            mean = k * rows[center].to_numpy()
            err = np.vstack([mean - k * rows[f"{value}_ci95_low"].to_numpy(),
                             k * rows[f"{value}_ci95_high"].to_numpy() - mean])
            ax.errorbar(xs, mean, yerr=np.nan_to_num(err), fmt="o", capsize=3, color=style.method_color(method),
                        label=method)
        ax.set_xticks(range(len(samplers)), [style.SAMPLER_NAMES.get(s, s) for s in samplers])
        ax.set_xlabel(style.label("sampler"))
        ax.set_ylabel(style.label(metric, AT_TEXT[at]))
        if not higher_is_better(metric) and (panel[center].dropna() > 0).all():
            log_axis(ax)
        ax.set_title(title)
    method_legend(fig, axes.flat, title="each method at its best configuration per sampler; bars: 95% CI")
    return fig


@figure
def fig_wallclock(trials: pd.DataFrame, epochs: pd.DataFrame | None = None, baseline: str = style.BASELINE) -> Figure:
    """Training-only time per epoch of each method as a multiple of the baseline's (SGD) on
    the same workload and device: ratio of mean steady-state epoch times (the median epoch
    of each trial, its first epoch left out), bars: Fieller 95% interval."""
    require(trials, ["time_train", "epochs_done", "method"], "the trials")
    if baseline not in set(ok_trials(trials)["method"].astype(str)):
        raise SkipFigure(f"there are no finished {baseline} trials to measure against")
    table = wallclock_table(trials, epochs, baseline)
    keys = [c for c in (*WORKLOAD, DEVICE) if c in table]
    panels = facets(table, keys)
    fig, axes = grid(len(panels), width=4.8, height=3.8, max_cols=3)
    for ax, (title, panel) in zip(axes.flat, panels):
        methods = style.method_order(panel["method"])
        rows = panel.set_index(panel["method"].astype(str)).reindex(methods)
        mean = rows["ratio_to_baseline"].to_numpy(dtype=float)
        low, high = rows["ratio_ci95_low"].to_numpy(dtype=float), rows["ratio_ci95_high"].to_numpy(dtype=float)
        err = np.vstack([mean - low, high - mean])
        ax.bar(range(len(methods)), mean, yerr=np.nan_to_num(err), capsize=3,
               color=[style.method_color(m) for m in methods])
        tops = np.fmax(mean, high)
        for x, (y, top) in enumerate(zip(mean, tops)):
            ax.annotate(f"{y:.2f}×", (x, top), xytext=(0, 3), textcoords="offset points", ha="center",
                        va="bottom", fontsize=8)
        ax.axhline(1.0, color="0.4", linestyle="--", linewidth=1)
        ax.margins(y=0.12)
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
        ax.set_ylabel(f"Training time per epoch (× {baseline})")
        ax.set_title(title)
    return fig


def targets(trials: pd.DataFrame, epochs: pd.DataFrame, target: float | None, reference: str,
            metric: str) -> tuple[pd.DataFrame, str]:
    """Time-to-target per trial and a sentence saying what the target was."""
    require(epochs, [metric, "time_train", "grad_evals"], "the epoch records")
    goal = "≥" if higher_is_better(metric) else "≤"
    if target is None:
        table = reference_target(trials, epochs, reference, metric)
        if table.empty:
            raise SkipFigure(f"there are no {reference} trials to set the target from (pass target=)")
        text = (f"{style.label(metric)} {goal} the median over seeds of the best value of {reference}'s best "
                "configuration (per workload)")
        return time_to_target(trials, epochs, table, metric), text
    return time_to_target(trials, epochs, target, metric), f"{style.label(metric)} {goal} {target:g}"


@figure
def fig_time_to_target(trials: pd.DataFrame, epochs: pd.DataFrame, target: float | None = None,
                       reference: str = style.BASELINE, metric: str | None = None) -> Figure:
    """Bars: per workload, each method's median training-only time and gradient evaluations
    to reach the target (its fastest configuration by each measure; whiskers span the seeds
    that reached it; 'k/n' counts them out of all seeds, diverged ones included). Methods
    whose median seed misses the target get no bar. Times only compare within a device."""
    metric = metric or primary_metric(trials)
    ttt, text = targets(trials, epochs, target, reference, metric)
    keys = [c for c in (*WORKLOAD, DEVICE) if c in ttt]
    panels = facets(ttt, keys)
    if np.isinf(method_time_to_target(ttt, "time_to_target")["time_to_target"]).all():
        raise SkipFigure("no method reached the target with most of its seeds")
    fig, axes = grid(2, n_rows=len(panels), width=5.0, height=3.6)
    for row, (title, panel) in enumerate(panels):
        for col, cost in enumerate(("time_to_target", "grad_evals_to_target")):
            ax = axes[row, col]
            best = method_time_to_target(panel, cost)
            methods = style.method_order(best["method"])
            rows = best.set_index(best["method"].astype(str)).reindex(methods)
            height = rows[cost].to_numpy(dtype=float)
            shown = np.where(np.isfinite(height), height, 0.0)
            err = np.vstack([shown - rows[f"{cost}_min"].fillna(0).to_numpy(),
                             rows[f"{cost}_max"].fillna(0).to_numpy() - shown]).clip(min=0)
            ax.bar(range(len(methods)), shown, yerr=np.where(np.isfinite(height), err, 0), capsize=3,
                   color=[style.method_color(m) for m in methods])
            for x, (h, hit, n) in enumerate(zip(height, rows["seeds_reached"], rows["seeds"])):
                note = f"{int(hit)}/{int(n)}" if np.isfinite(h) else f"not reached ({int(hit)}/{int(n)})"
                top = shown[x] + (err[1, x] if np.isfinite(h) else 0.0)
                ax.annotate(note, (x, top), xytext=(0, 3), textcoords="offset points", ha="center",
                            va="bottom", fontsize=8, rotation=0 if np.isfinite(h) else 90)
            ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
            ax.set_ylabel(COST_TEXT[cost])
            ax.margins(y=0.15)
            ax.set_title(title)
    caption(fig, f"Target: {text}; bars: median over seeds, whiskers: range")
    return fig


@figure
def fig_performance_profile(trials: pd.DataFrame, epochs: pd.DataFrame, target: float | None = None,
                            reference: str = style.BASELINE, metric: str | None = None) -> Figure:
    """AlgoPerf's performance profile: for each method, the fraction of workloads (dataset x
    model x sampler, and device for times) on which its time-to-target is within a factor
    tau of the fastest method's (log-scaled tau axis), by training-only time and by
    gradient evaluations. Drawn only for two or more workloads."""
    metric = metric or primary_metric(trials)
    ttt, text = targets(trials, epochs, target, reference, metric)
    if n_workloads(performance_ratios(ttt, "grad_evals_to_target")) < 2:
        raise SkipFigure("a performance profile needs two or more workloads; this sweep has one "
                         "(the time-to-target figure shows it)")
    if np.isinf(method_time_to_target(ttt, "time_to_target")["time_to_target"]).all():
        raise SkipFigure("no method reached the target with most of its seeds")
    fig, axes = grid(2, width=4.8, height=3.6)
    for ax, cost in zip(axes.flat, ("time_to_target", "grad_evals_to_target")):
        ratios = performance_ratios(ttt, cost)
        profile = performance_profile(ratios)
        n = n_workloads(ratios)
        methods = style.method_order(profile["method"])
        for i, method in enumerate(methods):
            curve = profile[profile["method"] == method]
            # earlier methods drawn thicker, so identical profiles stay visible as nested lines
            ax.step(curve["tau"], curve["fraction"], where="post", color=style.method_color(method), label=method,
                    linewidth=1.5 + 3.0 * (len(methods) - 1 - i) / max(len(methods) - 1, 1))
        log_axis(ax, "x")
        ax.set_ylim(-0.02, 1.04)
        ax.set_xlabel(r"$\tau$ (ratio to the fastest method)")
        ax.set_ylabel(f"Fraction of the {n} workload{'s' if n != 1 else ''}")
        ax.set_title(COST_TEXT[cost].replace(" (s)", ""))
    method_legend(fig, axes.flat)
    caption(fig, f"Target: {text}")
    return fig
