"""One look for every figure: a fixed colour per method, axis labels with units, fonts.

Colours depend on the method label alone (never on which methods a sweep happens to
hold), so SAM has the same colour in every figure of every report. The optimizer registry
(``harness.optim.registry``) owns the labels, colours and legend order: SGD black, SAM
vermillion, USAM blue, Unified SAM's lam schedules pink and orange, each variant its own
colour and its Unified versions lighter as lam falls; fixed-lam Unified SAM runs along
viridis by its lam value.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import matplotlib as mpl
import seaborn as sns

from harness.optim import registry

BASELINE = registry.baseline_label()  # "SGD": the method every comparison is made against
_FALLBACK = ("#56B4E9", "#009E73", "#8C564B", "#7F7F7F", "#BCBD22", "#17BECF")
_LAM_CMAP = "viridis"
_LAM_RANGE = (0.0, 0.88)  # viridis' last yellows vanish on white

# column -> axis label with units. Accuracies are plotted in percent.
LABELS = {
    "epoch": "Epoch",
    "iteration": "Iterations",
    "grad_evals": "Gradient evaluations",
    "time_train": "Training-only wall-clock (s)",
    "time_total": "Total wall-clock (s)",
    "test_acc": "Test accuracy (%)",
    "train_acc": "Training accuracy (%)",
    "train_loss": "Training loss (nats)",
    "test_loss": "Test loss (nats)",
    "rel_subopt": r"$(f(x_t)-f^*)\,/\,(f(x_0)-f^*)$",
    "lam_max": r"Sharpness $\lambda_{\max}$ (Hessian)",
    "trace": "Hessian trace (Hutchinson)",
    "weight_norm": "Weight norm ($\\ell_2$)",
    "lam": r"$\lambda$",
    "rho": r"$\rho$",
    "lr": r"Learning rate $\gamma$",
    "method": "Method",
    "sampler": "Sampler",
}
PERCENT_COLUMNS = frozenset({"test_acc", "train_acc"})
SAMPLER_NAMES = {"reshuffle": "random reshuffling", "uniform": "uniform", "importance": "importance",
                 "tau_nice": "tau-nice", "full": "full batch"}
SAMPLER_COLORS = {"uniform": "#0072B2", "importance": "#D55E00", "reshuffle": "#009E73",
                  "tau_nice": "#56B4E9", "full": "#000000"}


def unified_lam(method: str) -> str | None:
    """The lam part of a Unified SAM label 'Unified (lam=...)', else None."""
    name, lam = registry.parse_label(method)
    return lam if name == "unified" else None


def method_color(method: str) -> str:
    """The colour of a method label, the same in every figure and every sweep: the optimizer
    registry's, viridis by lam for Unified SAM at a fixed lam, a stable fallback otherwise."""
    fixed = registry.label_color(method)
    if fixed is not None:
        return fixed
    lam = unified_lam(method)
    if lam is not None:
        try:
            value = float(lam)
        except ValueError:
            value = None
        if value is not None and 0.0 <= value <= 1.0:
            low, high = _LAM_RANGE
            return mpl.colors.to_hex(mpl.colormaps[_LAM_CMAP](low + (high - low) * value))
    return color_for(method)


def color_for(value: str, fixed: dict[str, str] | None = None) -> str:
    """A colour for a non-method category (sampler, step rule): fixed if known, else stable."""
    if fixed and value in fixed:
        return fixed[value]
    digest = int(hashlib.sha1(value.encode()).hexdigest(), 16)
    return _FALLBACK[digest % len(_FALLBACK)]


def method_sort_key(method: str) -> tuple:
    """The registry's legend order: SGD, USAM, SAM, Unified SAM by lam, then each variant
    with its Unified versions by lam, then anything else."""
    return registry.label_order(method)


def method_order(methods: Iterable[str]) -> list[str]:
    return sorted({str(m) for m in methods}, key=method_sort_key)


def palette(methods: Iterable[str]) -> dict[str, str]:
    """method -> colour, for seaborn's ``palette=`` argument."""
    return {m: method_color(m) for m in method_order(methods)}


def label(column: str, at: str | None = None) -> str:
    """Axis label with units; ``at`` ('final' / 'best epoch') names which value is shown."""
    text = LABELS.get(column, column.replace("_", " "))
    return f"{text}, {at}" if at else text


def scale(column: str) -> float:
    """Factor from the stored unit to the plotted one (fractions -> percent)."""
    return 100.0 if column in PERCENT_COLUMNS else 1.0


def apply_theme() -> None:
    """Readable publication defaults: white grid, 10-11 pt text, no clipped labels."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.25)
    mpl.rcParams.update({
        "figure.dpi": 110,
        "savefig.dpi": 150,
        "axes.titlesize": 11,
        "axes.titleweight": "bold",
        "legend.frameon": False,
        "legend.fontsize": 9,
        "lines.linewidth": 1.8,
        "svg.hashsalt": "sambench",  # deterministic SVG ids
    })
