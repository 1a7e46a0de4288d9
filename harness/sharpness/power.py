"""Power iteration as PyHessian 0.1 runs it, kept as the comparison method.

It converges to the eigenvalue of LARGEST MAGNITUDE (negative on a Hessian whose most
negative eigenvalue dominates) and stops when the Rayleigh quotient changes by less than
``tol`` relative, which bounds the change per step, not the error: on close top
eigenvalues it stops with percent-level error. Vectors and dot products are float64.
"""

from __future__ import annotations

import math

import torch

from harness.sharpness.lanczos import EigenResult
from harness.sharpness.operator import HessianOperator, clock, normal_vector, unit


def power_iteration(op: HessianOperator, *, generator: torch.Generator, max_iter: int = 100,
                    tol: float = 1e-3) -> EigenResult:
    """``residual`` (also reported as ``error``: power iteration knows no gap) is
    ||H v - value v|| of the last iterate, from the product already computed; it bounds the
    distance to SOME eigenvalue, not necessarily the largest."""
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    start, hvps0 = clock(op), op.hvps
    v = unit(normal_vector(op, generator))
    value, residual, converged = math.nan, math.inf, False
    for _ in range(max_iter):
        hv = op.matvec(v).to(torch.float64)
        previous, value = value, float(v @ hv)
        residual = float(torch.linalg.vector_norm(hv - value * v))
        if not math.isnan(previous) and abs(value - previous) / (abs(previous) + 1e-6) < tol:
            converged = True
            break
        v = unit(hv)
    return EigenResult(value, op.hvps - hvps0, residual, residual, clock(op) - start, converged)
