"""The SAM family: one two-pass base (``base.py``) and one file per ascent rule (SAM/USAM/
Unified SAM, ASAM, GSAM, F-SAM, LookSAM, VaSSO), the name registry, and the builder.

The registry (names, labels, colours, defaults) is imported eagerly and needs no torch; the
optimizer classes and the builder load on first use, so the reports never import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from harness.optim.registry import (
    BASE_OPTIMIZERS, BASELINE, BN_POLICIES, LAM_SCHEDULES, OPTIMIZERS, Method, check_lam, lam_at, method_label,
    resolve_lam, resolve_rho,
)

_LAZY = {
    "TwoPassSAM": "harness.optim.base", "running_stats_kept": "harness.optim.base",
    "UnifiedSAM": "harness.optim.sam", "ASAM": "harness.optim.asam", "GSAM": "harness.optim.gsam",
    "FriendlySAM": "harness.optim.friendly_sam", "LookSAM": "harness.optim.looksam", "VaSSO": "harness.optim.vasso",
    "build_optimizer": "harness.optim.build", "take_step": "harness.optim.build",
    "param_groups": "harness.optim.build", "canonical_args": "harness.optim.build",
}

__all__ = ["BASE_OPTIMIZERS", "BASELINE", "BN_POLICIES", "LAM_SCHEDULES", "OPTIMIZERS", "Method", "check_lam",
           "lam_at", "method_label", "resolve_lam", "resolve_rho", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harness.optim' has no attribute {name!r}")
