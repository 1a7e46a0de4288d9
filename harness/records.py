"""The record: one flat row per evaluation of a trial (an epoch, or every ``eval_every``
iterations on a synthetic problem). Every record of every trial has exactly these keys, so
a record is one Parquet row; a value that was not measured is ``None`` (a null), never NaN.
"""

from __future__ import annotations

import math
from typing import Any

# name -> (pyarrow type name, unit, meaning). The store and results/README.md use this.
RECORD_FIELDS: dict[str, tuple[str, str, str]] = {
    "epoch": ("float64", "epochs", "passes over the training data: optimizer steps / ceil(n / batch_size)"),
    "iteration": ("int64", "steps", "optimizer steps completed"),
    "grad_evals": ("int64", "gradients", "cumulative forward-backward passes (SAM-family: 2 per step, LookSAM: 1 on reuse steps)"),
    "grad_samples": ("int64", "per-sample gradients",
                     "cumulative per-sample gradient evaluations: batch size x passes (2 per SAM step, 1 for SGD)"),
    "refresh_samples": ("int64", "per-sample forward passes",
                        "cumulative forward passes spent refreshing the importance-sampling proxy (0 otherwise)"),
    "train_loss": ("float64", "nats", "mean training loss at evaluation (synthetic: f(x))"),
    "train_acc": ("float64", "fraction", "training accuracy (null for regression)"),
    "test_loss": ("float64", "nats", "mean test loss (null for synthetic problems)"),
    "test_acc": ("float64", "fraction", "test accuracy (null for regression and synthetic problems)"),
    "val_loss": ("float64", "nats", "mean loss on the validation split (null without val_fraction)"),
    "val_acc": ("float64", "fraction", "accuracy on the validation split (null without val_fraction)"),
    "rel_subopt": ("float64", "ratio", "(f(x_t) - f*) / (f(x_0) - f*), synthetic problems only"),
    "grad_norm": ("float64", "l2 norm", "full-data gradient norm, synthetic problems only"),
    "weight_norm": ("float64", "l2 norm", "l2 norm of all parameters"),
    "lam_max": ("float64", "eigenvalue", "top (largest algebraic) Hessian eigenvalue of the training loss"),
    "lam_max_hvps": ("int64", "HVPs", "Hessian-vector products spent on lam_max"),
    "lam_max_residual": ("float64", "eigenvalue", "explicit residual norm(H y - lam_max y) of the returned unit vector y"),
    "lam_max_error": ("float64", "eigenvalue", "estimated bound on the absolute error of lam_max (see results/README.md)"),
    "trace": ("float64", "sum of eigenvalues", "Hutchinson estimate of the Hessian trace"),
    "trace_hvps": ("int64", "HVPs", "Hessian-vector products spent on the trace"),
    "lr": ("float64", "step size", "learning rate gamma_t in use at this evaluation"),
    "rho": ("float64", "radius", "perturbation radius rho_t in use"),
    "lam": ("float64", "mix", "Unified SAM lam_t in use (null for SGD)"),
    "skipped_steps": ("int64", "steps", "cumulative steps skipped by the fp16 loss scale (inf/NaN gradients); null for synthetic problems"),
    "time_train": ("float64", "s", "cumulative training-only wall-clock (device synchronised)"),
    "time_eval": ("float64", "s", "cumulative evaluation wall-clock"),
    "time_sharpness": ("float64", "s", "cumulative sharpness-measurement wall-clock"),
    "time_total": ("float64", "s", "wall-clock since the trial started, everything included"),
}

Record = dict[str, Any]


def new_record(**values: Any) -> Record:
    """A record with every field present: the given values, ``None`` elsewhere. A NaN or
    infinite value (a diverged trial) also becomes ``None``, so it never poisons a mean."""
    unknown = set(values) - set(RECORD_FIELDS)
    if unknown:
        raise KeyError(f"unknown record fields: {sorted(unknown)}")
    return {name: _finite_or_none(values.get(name)) for name in RECORD_FIELDS}


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
