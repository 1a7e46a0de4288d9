"""Sharpness: the training-loss Hessian's top eigenvalue and trace on a fixed data subset.

Everything works through Hessian-vector products (HVPs) by double backward, so the
Hessian is never formed. The measurement is invisible to training: the model is in eval
mode only while products run (BatchNorm on running statistics, no dropout), every
module's mode and every parameter's ``.grad`` are left as they were, and all random
probes come from a caller-supplied generator, never the global RNG streams.

- ``lanczos_top_eigenvalue``: the largest ALGEBRAIC eigenvalue (the sharpness), stopped
  by its own Ritz residual estimate.
- ``power_iteration``: PyHessian's method, kept for comparison. It converges to the
  largest-MAGNITUDE eigenvalue (the wrong one on an indefinite Hessian whose most
  negative eigenvalue dominates) and stops on the relative change of the Rayleigh
  quotient, which on close top eigenvalues stops with percent-level error.
- ``hutchinson_trace``: Rademacher probes z, trace ~ mean of z^T H z.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import Tensor, nn

from harness.errors import ConfigError

SHARPNESS_METHODS = ("lanczos", "power")

LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class EigenResult:
    """An eigenvalue estimate. ``residual`` is ||H y - value * y|| for the returned unit
    vector y: some eigenvalue of H lies within it of ``value`` (for Lanczos' top Ritz
    value the actual error is usually far smaller, about residual^2 / spectral gap)."""

    value: float
    hvps: int
    residual: float
    seconds: float
    converged: bool


@dataclass
class TraceResult:
    """A Hutchinson trace estimate with the standard error of its sample mean."""

    value: float
    hvps: int
    stderr: float
    seconds: float


class HessianOperator:
    """The Hessian of the mean loss over a fixed subset, as a symmetric linear operator on
    flat vectors of all trainable parameters (``model.parameters()`` order).

    The subset is processed in chunks of ``batch_size`` (moved to the parameters' device
    per chunk) and each chunk's product is weighted by its share of the subset, so memory
    is bounded by one chunk's double-backward graph while the operator is exactly the
    Hessian of the subset mean. ``loss_fn(outputs, targets)`` must return the chunk mean;
    a term that does not depend on the data (e.g. an L2 penalty closing over the model's
    parameters) is then counted once, since the weights sum to one.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor,
                 batch_size: int = 512):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(inputs) != len(targets) or len(inputs) == 0:
            raise ValueError(f"need equal, non-zero numbers of inputs and targets, got {len(inputs)} and {len(targets)}")
        self.model, self.loss_fn = model, loss_fn
        self.inputs, self.targets, self.batch_size = inputs, targets, batch_size
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no parameters with requires_grad")
        if len({(p.dtype, p.device) for p in self.params}) != 1:
            raise ValueError("all trainable parameters must share one dtype and device")
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        self.dim = sum(p.numel() for p in self.params)
        self.hvps = 0

    def matvec(self, v: Tensor) -> Tensor:
        """H @ v for a flat vector v of length ``dim``; returns a detached flat vector."""
        if v.shape != (self.dim,):
            raise ValueError(f"expected a flat vector of length {self.dim}, got shape {tuple(v.shape)}")
        v = v.detach().to(device=self.device, dtype=self.dtype)
        pieces = [piece.view_as(p) for piece, p in zip(v.split([p.numel() for p in self.params]), self.params)]
        out = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        n = len(self.inputs)
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        try:
            with torch.enable_grad():
                for start in range(0, n, self.batch_size):
                    x = self.inputs[start:start + self.batch_size].to(self.device, non_blocking=True)
                    y = self.targets[start:start + self.batch_size].to(self.device, non_blocking=True)
                    out.add_(self._chunk_hvp(x, y, pieces), alpha=len(x) / n)
        finally:
            for module, training in modes:
                module.training = training
        self.hvps += 1
        return out

    def _chunk_hvp(self, x: Tensor, y: Tensor, pieces: list[Tensor]) -> Tensor:
        # autograd.grad never touches .grad, and the second call (no create_graph) frees
        # the double-backward graph, so nothing outlives this call.
        loss = self.loss_fn(self.model(x), y)
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        used = [(g, piece) for g, piece in zip(grads, pieces) if g is not None]
        dot = sum((g * piece).sum() for g, piece in used)
        if not torch.is_tensor(dot) or not dot.requires_grad:  # loss linear in all params
            return torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        hv = torch.autograd.grad(dot, self.params, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if h is None else h).reshape(-1) for h, p in zip(hv, self.params)])


def lanczos_top_eigenvalue(op: HessianOperator, *, generator: torch.Generator, max_iter: int = 100,
                           tol: float = 1e-6) -> EigenResult:
    """The largest algebraic eigenvalue by Lanczos with full reorthogonalisation.

    Stops when the Ritz residual estimate |beta_k * s_k| (beta_k the next off-diagonal,
    s_k the last component of the top Ritz vector of the k x k tridiagonal T_k) falls
    below ``tol * |theta|``; it never looks at a known answer. T_k's eigenproblem is
    solved in float64. Memory: the Krylov basis lives on the parameters' device in their
    dtype and grows by doubling, so it holds about (iterations used + 1) * dim elements
    (at most 1.5x that while growing): ~20 iterations of a 36M-parameter WRN-28-10 take
    about 3 GB in float32, not the 15 GB a max_iter-sized basis would.
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    start, hvps0 = _clock(op), op.hvps
    steps = min(max_iter, op.dim)
    basis = torch.empty(min(steps + 1, 16), op.dim, dtype=op.dtype, device=op.device)
    basis[0] = _unit(_normal(op, generator))
    alphas: list[float] = []
    betas: list[float] = []
    theta, residual, converged, scale = math.nan, math.inf, False, 0.0
    for k in range(steps):
        w = op.matvec(basis[k])
        alphas.append(float(basis[k] @ w))
        # Full reorthogonalisation against the whole basis (classical Gram-Schmidt, twice)
        # also removes the three-term recurrence terms alpha_k q_k and beta_{k-1} q_{k-1}.
        q = basis[:k + 1]
        for _ in range(2):
            w -= q.T @ (q @ w)
        beta = float(torch.linalg.vector_norm(w))
        scale = max(scale, abs(alphas[-1]), beta)
        evals, evecs = eigh_tridiagonal(np.array(alphas), np.array(betas), select="i",
                                        select_range=(k, k))
        theta = float(evals[0])
        residual = abs(beta * float(evecs[-1, 0]))
        # A breakdown (beta ~ rounding) means the Krylov space is invariant: theta is exact.
        if residual <= tol * abs(theta) or beta <= 100 * torch.finfo(op.dtype).eps * scale:
            converged = True
            break
        betas.append(beta)
        if k + 1 == len(basis):
            grown = torch.empty(min(2 * len(basis), steps + 1), op.dim, dtype=op.dtype, device=op.device)
            grown[:len(basis)] = basis
            basis = grown
        basis[k + 1] = w / beta
    return EigenResult(theta, op.hvps - hvps0, residual, _clock(op) - start, converged)


def power_iteration(op: HessianOperator, *, generator: torch.Generator, max_iter: int = 100,
                    tol: float = 1e-3) -> EigenResult:
    """PyHessian's power iteration, for comparison only: it converges to the eigenvalue
    of LARGEST MAGNITUDE (negative on a Hessian whose most negative eigenvalue dominates),
    and it stops when the Rayleigh quotient changes by less than ``tol`` relative, which
    bounds the change per step, not the error. ``residual`` is ||H v - value v|| of the
    last iterate, from the product already computed."""
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    start, hvps0 = _clock(op), op.hvps
    v = _unit(_normal(op, generator))
    value, residual, converged = math.nan, math.inf, False
    for _ in range(max_iter):
        hv = op.matvec(v)
        previous, value = value, float(v @ hv)
        residual = float(torch.linalg.vector_norm(hv - value * v))
        if not math.isnan(previous) and abs(value - previous) / (abs(previous) + 1e-6) < tol:
            converged = True
            break
        v = _unit(hv)
    return EigenResult(value, op.hvps - hvps0, residual, _clock(op) - start, converged)


def hutchinson_trace(op: HessianOperator, *, generator: torch.Generator, samples: int = 20) -> TraceResult:
    """Hutchinson's estimate tr(H) ~ mean z^T H z over Rademacher probes z; its variance
    per probe is 2 * sum_{i != j} H_ij^2, so a diagonal Hessian gives the exact trace."""
    if samples < 2:
        raise ValueError(f"samples must be >= 2 for a standard error, got {samples}")
    start, hvps0 = _clock(op), op.hvps
    estimates = []
    for _ in range(samples):
        z = torch.randint(0, 2, (op.dim,), generator=generator, device=generator.device)
        z = (2 * z - 1).to(device=op.device, dtype=op.dtype)
        estimates.append(float(z @ op.matvec(z)))
    values = np.array(estimates)
    stderr = float(values.std(ddof=1) / math.sqrt(samples))
    return TraceResult(float(values.mean()), op.hvps - hvps0, stderr, _clock(op) - start)


def measure_sharpness(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, *,
                      method: str = "lanczos", trace: bool = False, seed: int = 0, batch_size: int = 512,
                      max_iter: int = 100, tol: float | None = None) -> dict[str, float | int | None]:
    """lam_max (by ``method``: "lanczos" or "power"), optionally the Hutchinson trace, and
    the seconds spent, as record fields. Probes come from a generator seeded with ``seed``
    on the model's device, so the global and training random streams are untouched.
    ``tol=None`` keeps each method's own default: 1e-6 relative residual for Lanczos,
    PyHessian's 1e-3 relative change for power iteration (so its numbers match PyHessian's).
    """
    if method not in SHARPNESS_METHODS:
        raise ConfigError("sharpness_method", method, ", ".join(SHARPNESS_METHODS))
    op = HessianOperator(model, loss_fn, inputs, targets, batch_size=batch_size)
    generator = torch.Generator(device=op.device).manual_seed(seed)
    start = _clock(op)
    solver = lanczos_top_eigenvalue if method == "lanczos" else power_iteration
    eig = solver(op, generator=generator, max_iter=max_iter, **({} if tol is None else {"tol": tol}))
    tr = hutchinson_trace(op, generator=generator) if trace else None
    return {
        "lam_max": eig.value,
        "lam_max_hvps": eig.hvps,
        "lam_max_residual": eig.residual,
        "trace": None if tr is None else tr.value,
        "trace_hvps": None if tr is None else tr.hvps,
        "seconds": _clock(op) - start,
    }


def _normal(op: HessianOperator, generator: torch.Generator) -> Tensor:
    """A standard normal vector drawn on the generator's device, then moved to the op's."""
    z = torch.randn(op.dim, generator=generator, device=generator.device, dtype=op.dtype)
    return z.to(op.device)


def _unit(v: Tensor) -> Tensor:
    return v / torch.linalg.vector_norm(v)


def _clock(op: HessianOperator) -> float:
    """perf_counter after the device's queued work is done, so GPU time is counted."""
    if op.device.type == "cuda":
        torch.cuda.synchronize(op.device)
    return time.perf_counter()
