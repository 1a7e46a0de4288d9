"""Lanczos for the largest algebraic Hessian eigenvalue, in float64, stopped on an error
estimate of the eigenvalue itself.

The recurrence runs in float64 whatever the model's dtype: the Krylov basis, every dot
product, the (twice repeated, classical) Gram-Schmidt re-orthogonalisation and the
projected eigenproblem. Only the products H q run in the operator's dtype.

Instead of the tridiagonal T_k that exact arithmetic would give, it keeps the whole
projected matrix G = Q^T W (W the computed products H q_i, G_ij the Gram-Schmidt
coefficient of q_i in H q_j; upper Hessenberg), so the residual of the returned Ritz
vector y = Q s can be written out exactly without storing W:

    W s - theta y = Q A s + beta_k s_k q_{k+1},   A = (G - G^T) / 2,

with theta, s the top eigenpair of the symmetric part (G + G^T) / 2. In exact arithmetic
A = 0; in floating point A holds the products' own rounding (q_i^T H q_j != q_j^T H q_i),
which is what makes a float32 operator's error visible.

While iterating, the error of theta is estimated as

    min(r, r^2 / gap) + ||A s||,    r = sqrt(||A s||^2 + (beta_k s_k)^2),

- r, the explicit residual: some eigenvalue of the (computed) operator lies within r;
- r^2 / gap (Kato-Temple): the error of a Ritz value separated from the rest of the
  spectrum, with gap = theta_1 - (theta_2 + r_2) from the second Ritz pair (used only when
  positive; theta_2 + r_2 stands in for the second eigenvalue, which a random start
  vector finds before later ones);
- ||A s||: the products' rounding, as seen in their asymmetry.

It stops when that is at most ``tol * |theta|``, or, unconverged, when its Krylov part
has fallen below its rounding part (more products cannot sharpen it).

A float32 operator's products also carry a rounding error that is symmetric (the forward
activations are rounded once, the same for every product) and so invisible in A: against
float64 references it shifted theta by up to 7 units of roundoff (4e-7 relative) on a
million-parameter softmax regression. So, for an operator below float64, one more product
(counted) is taken in float64 on the returned vector y: theta becomes y^T H y and r its
residual ||H y - theta y||, both of the float64 Hessian, and the reported error is
min(r, r^2 / gap) (plus 4 float64 roundoffs of |theta|). The vector itself is good to
float32 accuracy, so this float64 Rayleigh quotient is off by about its square.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from harness.sharpness.operator import HessianOperator, clock, normal_vector, unit



@dataclass
class EigenResult:
    """An eigenvalue estimate. ``residual`` is the explicit residual ||H y - value y|| of
    the returned unit vector y (some eigenvalue lies within it); ``error`` is the method's
    estimate of |value - lam_max| (see the module docstring; power iteration reports the
    residual there, as it knows no gap)."""

    value: float
    hvps: int
    residual: float
    error: float
    seconds: float
    converged: bool


@dataclass
class Ritz:
    """The top Ritz pair of a projected matrix: value, coefficients ``vector`` in the
    basis, explicit residual, error estimate, the rounding part of that estimate, and
    ``second``: theta_2 + r_2, the stand-in for the second eigenvalue."""

    value: float
    vector: np.ndarray
    residual: float
    error: float
    rounding: float
    second: float


def ritz_error(projected: np.ndarray, beta: float) -> Ritz:
    """The top Ritz pair of the k x k projected matrix ``projected`` (G above) with next
    off-diagonal ``beta``, and its error estimate min(r, r^2 / gap) + ||A s||."""
    antisym = (projected - projected.T) / 2
    evals, evecs = np.linalg.eigh((projected + projected.T) / 2)

    def residual(j: int) -> tuple[float, float]:
        s = evecs[:, j]
        rounding = float(np.linalg.norm(antisym @ s))
        return math.hypot(rounding, beta * float(s[-1])), rounding

    theta = float(evals[-1])
    r1, rounding = residual(-1)
    error, second = r1, -math.inf
    if len(evals) > 1:
        second = float(evals[-2]) + residual(-2)[0]
        if theta > second:
            error = min(r1, r1 * r1 / (theta - second))
    return Ritz(theta, evecs[:, -1], r1, error + rounding, rounding, second)


def lanczos_top_eigenvalue(op: HessianOperator, *, generator: torch.Generator, max_iter: int = 100,
                           tol: float = 1e-6) -> EigenResult:
    """The largest algebraic eigenvalue, stopped once the error estimate is at most
    ``tol * |theta|`` (relative error of the eigenvalue, not of the eigenvector: that needs
    about half as many correct digits of the vector), or unconverged once the estimate is
    at the products' rounding floor or after ``max_iter`` products. One product per
    iteration; it never looks at a known answer. Memory: the float64 basis, (iterations + 1) * dim * 8 bytes,
    grown by doubling (1.5x that while growing): 20 iterations of a 36M-parameter
    WRN-28-10 take 5.8 GB.
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    start, hvps0 = clock(op), op.hvps
    steps = min(max_iter, op.dim)
    basis = torch.empty(min(steps + 1, 16), op.dim, dtype=torch.float64, device=op.device)
    basis[0] = unit(normal_vector(op, generator))
    projected = np.zeros((steps + 1, steps + 1))
    theta, residual, error, converged, scale = math.nan, math.inf, math.inf, False, 0.0
    ritz: Ritz | None = None
    for k in range(steps):
        w = op.matvec(basis[k]).to(torch.float64)
        q = basis[:k + 1]
        coefficients = torch.zeros(k + 1, dtype=torch.float64, device=op.device)
        for _ in range(2):  # classical Gram-Schmidt, twice: orthogonal to float64 rounding
            c = q @ w
            w -= q.T @ c
            coefficients += c
        projected[:k + 1, k] = coefficients.cpu().numpy()
        beta = float(torch.linalg.vector_norm(w))
        scale = max(scale, float(torch.linalg.vector_norm(coefficients)))
        ritz = ritz_error(projected[:k + 1, :k + 1], beta)
        theta, residual, error = ritz.value, ritz.residual, ritz.error
        converged = error <= tol * abs(theta)
        # beta at float64 rounding: the Krylov space is invariant and q_{k+1} meaningless.
        # The estimate at the products' rounding floor (its Krylov part below its rounding
        # part): more products cannot sharpen it, so stop, unconverged if tol is below it.
        if converged or beta <= 100 * torch.finfo(torch.float64).eps * scale or error <= 2 * ritz.rounding:
            break
        projected[k + 1, k] = beta
        if k + 1 == len(basis):
            grown = torch.empty(min(2 * len(basis), steps + 1), op.dim, dtype=torch.float64, device=op.device)
            grown[:len(basis)] = basis
            basis = grown
        basis[k + 1] = w / beta
    if op.dtype != torch.float64 and ritz is not None:
        theta, residual, error = _float64_check(op, basis[:len(ritz.vector)], ritz.vector, ritz.second)
        converged = error <= tol * abs(theta)
    return EigenResult(theta, op.hvps - hvps0, residual, error, clock(op) - start, converged)


def _float64_check(op: HessianOperator, basis: torch.Tensor, s: np.ndarray, second: float) -> tuple[float, float, float]:
    """One float64 product of the Ritz vector y = Q s: theta = y^T H y and the residual
    r = ||H y - theta y|| of the float64 Hessian, error min(r, r^2 / (theta - second))."""
    y = basis.T @ torch.from_numpy(s).to(basis)
    y /= torch.linalg.vector_norm(y)
    hy = op.matvec_float64(y)
    theta = float(y @ hy)
    residual = float(torch.linalg.vector_norm(hy - theta * y))
    gap = theta - second
    error = min(residual, residual * residual / gap) if gap > 0 else residual
    return theta, residual, error + 4 * torch.finfo(torch.float64).eps * abs(theta)
