"""The names a spec may give ``optimizer``, what each one fixes, its legend label and colour.

Plain data and no torch import: the configuration, the store and the reports read it
(labels, colours, legend order, the baseline's name) without loading a model library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError, is_number
from harness.plugins import is_import_path

BASELINE = "sgd"  # the method every comparison is made against
LAM_SCHEDULES = ("1/t", "1-1/t")
BN_POLICIES = ("clean", "both")
LAM_ALLOWED = "a number in [0, 1], '1/t' or '1-1/t'"
BASE_OPTIMIZERS = {"sgd": "torch.optim:SGD", "adamw": "torch.optim:AdamW"}


def lam_at(lam: float | str, t: int) -> float:
    """lam_t at step t (t = 1 at the first step) for a fixed lam or a schedule name."""
    if lam == "1/t":
        return 1.0 / t
    if lam == "1-1/t":
        return 1.0 - 1.0 / t
    check_lam(lam)
    return float(lam)


def check_lam(lam: Any) -> None:
    if isinstance(lam, str):
        if lam not in LAM_SCHEDULES:
            raise ConfigError("lam", lam, LAM_ALLOWED)
    elif not is_number(lam) or not 0.0 <= lam <= 1.0:
        raise ConfigError("lam", lam, LAM_ALLOWED)


@dataclass(frozen=True)
class Method:
    """One optimizer name. ``lam`` is what the name does with lam: "none" (refused), a float
    it fixes (sam: 1), "required" (unified) or "optional" (default 1, the published method)."""

    cls: str                   # "module:Class" of the optimizer
    label: str                 # legend label at lam = 1 (or the name's fixed lam)
    color: str                 # fixed colour, the same in every figure
    lam: float | str           # see above
    default_rho: float         # when a spec leaves rho out
    summary: str               # one line for the docs and ``sambench`` help
    reference: str             # paper and the code it is tested against
    lam_meaning: str = "rho (1 - lam + lam / ||d||) d on the method's direction d; lam = 1 is the published method"
    hyper: tuple[str, ...] = ()  # the method's optimizer_args keys


# Okabe-Ito colours first (distinguishable with common colour-vision deficiencies).
OPTIMIZERS: dict[str, Method] = {
    "sgd": Method("harness.optim.sam:UnifiedSAM", "SGD", "#000000", "none", 0.0,
                  "the base optimizer alone (rho = 0): one gradient per step",
                  "Robbins & Monro 1951; torch.optim.SGD", lam_meaning="no ascent: lam is refused"),
    "sam": Method("harness.optim.sam:UnifiedSAM", "SAM", "#D55E00", 1.0, 0.05,
                  "e = rho g / ||g||",
                  "Foret et al., ICLR 2021; davda54/sam, pytorch_optimizer.SAM",
                  lam_meaning="fixed at 1 (use unified for other values)"),
    "usam": Method("harness.optim.sam:UnifiedSAM", "USAM", "#0072B2", 0.0, 0.05,
                   "e = rho g (unnormalised, not clipped to the rho-ball)",
                   "Andriushchenko & Flammarion, ICML 2022", lam_meaning="fixed at 0 (use unified for other values)"),
    "unified": Method("harness.optim.sam:UnifiedSAM", "Unified", "#CC79A7", "required", 0.05,
                      "e = rho (1 - lam + lam / ||g||) g: between USAM (lam 0) and SAM (lam 1)",
                      "Oikonomou & Loizou, ICLR 2025; dimitris-oik/unifiedsam",
                      lam_meaning="required: a number in [0, 1], '1/t' or '1-1/t'"),
    "asam": Method("harness.optim.asam:ASAM", "ASAM", "#009E73", "optional", 0.5,
                   "e = rho T^2 g / ||T g||, T = diag(|w| + eta): scale-invariant radius",
                   "Kwon et al., ICML 2021; pytorch_optimizer.SAM(adaptive=True) (eta = 0)",
                   lam_meaning="rho T (1 - lam + lam / ||T g||) T g: the mix in the rescaled coordinates",
                   hyper=("eta",)),
    "gsam": Method("harness.optim.gsam:GSAM", "GSAM", "#56B4E9", "optional", 0.05,
                   "SAM's ascent; descent along g_p - alpha g_perp (surrogate gap)",
                   "Zhuang et al., ICLR 2022; juntang-zhuang/GSAM, pytorch_optimizer.GSAM",
                   lam_meaning="mixes the ascent rho (1 - lam + lam / ||g||) g; the descent is unchanged",
                   hyper=("alpha", "rho_min")),
    "friendly_sam": Method("harness.optim.friendly_sam:FriendlySAM", "F-SAM", "#E69F00", "optional", 0.05,
                           "e = rho d / ||d||, d = g - sigma m (m an EMA of g)",
                           "Li et al., CVPR 2024; nblt/F-SAM, pytorch_optimizer.FriendlySAM",
                           hyper=("sigma", "lmbda", "convention")),
    "looksam": Method("harness.optim.looksam:LookSAM", "LookSAM", "#8C564B", "optional", 0.05,
                      "SAM every k steps; in between g + alpha (||g|| / ||g_v||) g_v at one gradient",
                      "Liu et al., CVPR 2022; pytorch_optimizer.LookSAM",
                      lam_meaning="mixes the ascent of the full (every k-th) steps",
                      hyper=("k", "alpha", "convention")),
    "vasso": Method("harness.optim.vasso:VaSSO", "VaSSO", "#882255", "optional", 0.05,
                    "e = rho d / ||d||, d an EMA of g (variance suppressed)",
                    "Li & Giannakis, NeurIPS 2023; BingcongLi/VaSSO solver/vasso.py",
                    lam_meaning="rho (1 - lam + lam / ||d||) d: Unified VaSSO (the paper's Tables 4-5; "
                                "the form is not verified against the authors' code)",
                    hyper=("theta",)),
}

_UNIFIED_SAM = "Unified"
_SCHEDULE_COLORS = {"1/t": "#CC79A7", "1-1/t": "#E69F00"}  # Unified SAM's two lam schedules
_BY_LABEL = {m.label: name for name, m in OPTIMIZERS.items()}


def lam_text(lam: float | str | None) -> str | None:
    """lam as labels show it: schedule names as is, numbers without a trailing ".0"."""
    if lam is None or isinstance(lam, str):
        return lam
    text = repr(float(lam))
    return text[:-2] if text.endswith(".0") else text


def method_label(optimizer: str, lam: Any = None) -> str:
    """The legend label: SGD, SAM, USAM, Unified (lam=...), a variant's name at lam = 1 (or
    unset), ``Unified <variant> (lam=...)`` otherwise; an import path stays as written."""
    method = OPTIMIZERS.get(optimizer)
    if method is None:
        return optimizer
    text = lam_text(lam)
    if method.lam == "required":
        return _UNIFIED_SAM if text is None else f"{_UNIFIED_SAM} (lam={text})"
    if method.lam != "optional" or text in (None, "1"):
        return method.label
    return f"{_UNIFIED_SAM} {method.label} (lam={text})"


def parse_label(label: str) -> tuple[str | None, str | None]:
    """(optimizer name, lam text) of a label made by ``method_label``; (None, None) if unknown."""
    if label in _BY_LABEL:
        name = _BY_LABEL[label]
        return name, lam_text(OPTIMIZERS[name].lam) if isinstance(OPTIMIZERS[name].lam, float) else None
    if label.startswith(_UNIFIED_SAM) and label.endswith(")") and " (lam=" in label:
        head, _, lam = label[:-1].partition(" (lam=")
        variant = head[len(_UNIFIED_SAM):].strip()
        name = "unified" if not variant else _BY_LABEL.get(variant)
        if name is not None:
            return name, lam
    return None, None


def baseline_label() -> str:
    return OPTIMIZERS[BASELINE].label


def family(label: str) -> str | None:
    """The method a label belongs to whatever its lam (SAM for SAM, USAM and Unified SAM;
    VaSSO for VaSSO and Unified VaSSO): one rho x lam table each. None for the baseline."""
    name, _ = parse_label(label)
    if name is None:
        return label
    if name == BASELINE:
        return None
    return "SAM" if OPTIMIZERS[name].cls == OPTIMIZERS["sam"].cls else OPTIMIZERS[name].label


def label_order(label: str) -> tuple:
    """Legend order: registry order of the methods; within one, fixed lam by value, then
    the schedules; unknown labels last, alphabetically."""
    names = list(OPTIMIZERS)
    order = {"sgd": 0, "usam": 1, "sam": 2, "unified": 3}  # USAM and SAM are Unified's ends
    name, lam = parse_label(label)
    if name is None:
        return (len(names) + 1, 0, 0.0, label)
    rank = order.get(name, names.index(name))
    if lam is None or OPTIMIZERS[name].lam not in ("required", "optional"):
        return (rank, 1 if name != "unified" else 0, 1.0, "")
    try:
        return (rank, 0, float(lam), "")
    except ValueError:
        return (rank, 2, 0.0, lam)


def label_color(label: str) -> str | None:
    """The fixed colour of a label; None for a label the registry does not know (the caller
    picks a stable fallback). Unified SAM at a fixed lam runs along viridis by lam (set by
    the figures); a variant's Unified versions are its colour, lighter as lam falls."""
    name, lam = parse_label(label)
    if name is None or (name == "unified" and lam not in _SCHEDULE_COLORS):
        return None
    if name == "unified":
        return _SCHEDULE_COLORS[lam]
    method = OPTIMIZERS[name]
    if lam is None or method.lam != "optional":
        return method.color
    if lam in ("1/t", "1-1/t"):
        return _mix(method.color, "#000000", 0.35 if lam == "1/t" else 0.6)
    try:
        value = min(max(float(lam), 0.0), 1.0)
    except ValueError:
        return method.color
    return _mix(method.color, "#FFFFFF", 0.7 * (1.0 - value))


def _mix(color: str, other: str, weight: float) -> str:
    a = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    b = [int(other[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round((1 - weight) * x + weight * y):02X}" for x, y in zip(a, b))


def optimizer_names() -> str:
    return ", ".join(OPTIMIZERS) + " or an import path 'package.module:Class'"


def resolve_lam(optimizer: str, lam: Any) -> float | str | None:
    """The lam a trial runs with: what the name fixes, the default 1 of a variant, or the
    given value; a one-line ConfigError where lam makes no sense for the optimizer."""
    if is_import_path(optimizer):
        if lam is not None:
            raise ConfigError("lam", lam, f"null for optimizer {optimizer} (lam mixes a SAM-family ascent of sambench's own)")
        return None
    if optimizer not in OPTIMIZERS:
        raise ConfigError("optimizer", optimizer, optimizer_names())
    rule = OPTIMIZERS[optimizer].lam
    if rule == "none":
        if lam is not None:
            raise ConfigError("lam", lam, f"null for optimizer {optimizer} ({OPTIMIZERS[optimizer].lam_meaning})")
        return None
    if isinstance(rule, float):
        if lam is not None and lam != rule:
            raise ConfigError("lam", lam, f"null or {rule} for optimizer {optimizer} ({OPTIMIZERS[optimizer].lam_meaning})")
        return rule
    if lam is None:
        if rule == "required":
            raise ConfigError("lam", lam, f"{LAM_ALLOWED} for optimizer {optimizer}")
        return 1.0
    check_lam(lam)
    return lam if isinstance(lam, str) else float(lam)


def resolve_rho(optimizer: str, rho: Any) -> float | None:
    """The rho a trial runs with: 0 for sgd, the method's documented default when unset
    (SAM's 0.05, ASAM's 0.5), else the given number; a plug-in gets rho only if set."""
    if is_import_path(optimizer):
        if rho is not None and (not is_number(rho) or rho < 0):
            raise ConfigError("rho", rho, f"null or a number >= 0 for optimizer {optimizer}")
        return None if rho is None else float(rho)
    method = OPTIMIZERS[optimizer]
    if method.lam == "none":
        if rho not in (None, 0, 0.0):
            raise ConfigError("rho", rho, f"null or 0 for optimizer {optimizer}")
        return 0.0
    if rho is None:
        return method.default_rho
    if not is_number(rho) or rho < 0:
        raise ConfigError("rho", rho, f"a number >= 0 for optimizer {optimizer} (default {method.default_rho})")
    return float(rho)
