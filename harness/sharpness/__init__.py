"""Sharpness: the training-loss Hessian's top eigenvalue and trace on a fixed data subset.

Everything works through Hessian-vector products (HVPs), so the Hessian is never formed
(``operator``). The measurement is invisible to training: products run on detached copies
of the parameters with autocast off, the model is in eval mode only while they run, every
module's mode and every parameter's ``.grad`` are left as they were, and random probes
come from a caller-supplied generator, never the global RNG streams.

- ``lanczos_top_eigenvalue``: the largest ALGEBRAIC eigenvalue (the sharpness), float64
  recurrence, stopped on an error estimate of the eigenvalue (``lanczos``).
- ``power_iteration``: PyHessian's method, kept for comparison (``power``).
- ``hutchinson_trace``: Rademacher probes z, trace ~ mean of z^T H z (``trace``).

The method, the error estimate and measured costs are in docs/sharpness.md.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn

from harness.errors import ConfigError
from harness.sharpness.lanczos import EigenResult, lanczos_top_eigenvalue, ritz_error
from harness.sharpness.operator import HVP_MODES, HessianOperator, LossFn, clock
from harness.sharpness.power import power_iteration
from harness.sharpness.trace import TraceResult, hutchinson_trace

SHARPNESS_METHODS = ("lanczos", "power")

__all__ = [
    "HVP_MODES", "SHARPNESS_METHODS", "EigenResult", "HessianOperator", "LossFn", "TraceResult",
    "hutchinson_trace", "lanczos_top_eigenvalue", "measure_sharpness", "power_iteration", "ritz_error",
]


def measure_sharpness(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, *,
                      method: str = "lanczos", trace: bool = False, seed: int = 0,
                      batch_size: int | None = None, hvp: str = "auto", memory_budget: int | None = None,
                      max_iter: int = 100, tol: float | None = None) -> dict[str, float | int | None]:
    """lam_max (by ``method``: "lanczos" or "power"), optionally the Hutchinson trace, and
    the seconds spent, as record fields. Probes come from a generator seeded with ``seed``
    on the model's device, so the global and training random streams are untouched.
    ``tol=None`` keeps each method's own default: 1e-6 relative error of lam_max for
    Lanczos, PyHessian's 1e-3 relative change for power iteration (so its numbers match
    PyHessian's). ``batch_size``, ``hvp`` and ``memory_budget`` go to ``HessianOperator``.
    """
    if method not in SHARPNESS_METHODS:
        raise ConfigError("sharpness_method", method, ", ".join(SHARPNESS_METHODS))
    start = time.perf_counter()  # the operator's set-up (sizing its graph) counts too
    with HessianOperator(model, loss_fn, inputs, targets, batch_size=batch_size, hvp=hvp,
                         memory_budget=memory_budget) as op:
        generator = torch.Generator(device=op.device).manual_seed(seed)
        solver = lanczos_top_eigenvalue if method == "lanczos" else power_iteration
        eig = solver(op, generator=generator, max_iter=max_iter, **({} if tol is None else {"tol": tol}))
        tr = hutchinson_trace(op, generator=generator) if trace else None
        seconds = clock(op) - start
    return {
        "lam_max": eig.value,
        "lam_max_hvps": eig.hvps,
        "lam_max_residual": eig.residual,
        "lam_max_error": eig.error,
        "trace": None if tr is None else tr.value,
        "trace_hvps": None if tr is None else tr.hvps,
        "seconds": seconds,
    }
