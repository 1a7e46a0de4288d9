"""Every figure sambench draws, in one registry the report iterates over.

Each figure function takes the tidy tables of ``analysis.load`` (the trials table, and the
epochs table where it plots curves) and returns a matplotlib Figure, or None plus a note
when the sweep lacks what it needs (``notes=[]`` collects the notes). From a notebook:

    trials, epochs = analysis.load("results/my-sweep")
    fig_learning_curves(trials, epochs, x="grad_evals")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from analysis.figures_compare import fig_performance_profile, fig_sampler_comparison, fig_time_to_target, fig_wallclock
from analysis.figures_sharpness import fig_sharpness_over_training, fig_sharpness_vs_accuracy, fig_sharpness_vs_lam
from analysis.figures_theory import fig_theory_curves
from analysis.figures_training import fig_accuracy_vs_lam, fig_learning_curves, fig_rho_lam_heatmap
from harness.files import write_atomically

FORMATS = ("png", "svg", "pdf")
# Keep files byte-identical across runs: no creation dates in the metadata.
_NO_DATES = {"png": {}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}


@dataclass(frozen=True)
class FigureSpec:
    name: str                       # file stem in the report's figures/ folder
    title: str
    function: Callable[..., Figure | None]
    uses_epochs: bool
    options: dict[str, Any] = field(default_factory=dict)

    def draw(self, trials: pd.DataFrame, epochs: pd.DataFrame, notes: list[str]) -> Figure | None:
        args = (trials, epochs) if self.uses_epochs else (trials,)
        return self.function(*args, notes=notes, **self.options)


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("curves_epoch", "Learning curves against epochs", fig_learning_curves, True, {"x": "epoch"}),
    FigureSpec("curves_time", "Learning curves against training-only wall-clock", fig_learning_curves, True,
               {"x": "time_train"}),
    FigureSpec("curves_grad_evals", "Learning curves against gradient evaluations (equal compute)",
               fig_learning_curves, True, {"x": "grad_evals"}),
    FigureSpec("accuracy_vs_lam", "Final test accuracy against λ, one line per ρ", fig_accuracy_vs_lam, False),
    FigureSpec("heatmap_rho_lam", "Final test accuracy per ρ and λ (the layout of the paper's Table 2)",
               fig_rho_lam_heatmap, False),
    FigureSpec("sharpness_vs_accuracy", "Sharpness against test accuracy, one point per trial",
               fig_sharpness_vs_accuracy, False),
    FigureSpec("sharpness_over_training", "Sharpness over training", fig_sharpness_over_training, True),
    FigureSpec("sharpness_vs_lam", "Final sharpness against λ, one line per ρ", fig_sharpness_vs_lam, False),
    FigureSpec("sampler_comparison", "Samplers: uniform, importance and reshuffling", fig_sampler_comparison, False),
    FigureSpec("wallclock", "Training time per epoch relative to SGD", fig_wallclock, True),
    FigureSpec("time_to_target", "Time to target", fig_time_to_target, True),
    FigureSpec("performance_profile", "Performance profile across workloads", fig_performance_profile, True),
    FigureSpec("theory_lam", "Relative suboptimality, one line per λ", fig_theory_curves, True, {"hue": "lam"}),
    FigureSpec("theory_sampler", "Relative suboptimality, one line per sampler", fig_theory_curves, True,
               {"hue": "sampler"}),
    FigureSpec("theory_step", "Relative suboptimality, one line per step-size rule", fig_theory_curves, True,
               {"hue": "step"}),
)


def save(fig: Figure, path: Path, fmt: str) -> Path:
    """Write ``fig`` as ``fmt`` without creation dates (same input, same bytes), atomically
    (a failed write leaves no half figure; harness.files)."""
    write_atomically(path, lambda handle: fig.savefig(handle, format=fmt, metadata=_NO_DATES[fmt]), binary=True)
    return path


def close(fig: Figure) -> None:
    """Release a figure drawn outside pyplot's interactive loop (reports draw dozens)."""
    plt.close(fig)
