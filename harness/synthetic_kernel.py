"""The compiled kernel of the synthetic engine (``harness.synthetic``): Unified SAM steps
and full-data evaluation for least squares, ridge and logistic regression, in numba.

Why numba: the reference code runs one numpy call per gradient (about 26 us per step at
batch 1, d = 100). Here one compiled loop runs a whole chunk of pre-drawn minibatches in
place. Small minibatches use hand-written row loops; large ones (and full batch) use BLAS
matrix-vector products on the gathered rows (or on the data itself when S = all n).
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

SQUARED, LOGISTIC = 0, 1      # per-sample loss: 1/2 (a.x - y)^2 or log(1 + e^{-y a.x})
ROWS, GATHER, DENSE = 0, 1, 2  # how the kernel forms a minibatch gradient
GATHER_MIN_BATCH = 8           # from this batch size on, BLAS on gathered rows wins
_EPS = 1e-12


# -- the compiled kernel --------------------------------------------------------------------
@numba.njit(cache=True)
def _dloss(kind: int, z: float, y: float) -> float:
    """Derivative of the per-sample loss with respect to the margin z = a.x."""
    if kind == SQUARED:
        return z - y
    t = y * z
    if t >= 0.0:
        e = math.exp(-t)
        return -y * e / (1.0 + e)
    return -y / (1.0 + math.exp(t))


@numba.njit(cache=True)
def _dot(u, v):
    """u . v with four accumulators in a fixed order: deterministic, and about 1.5x
    faster than one serial sum (fastmath stays off, so LLVM may not reorder a reduction)."""
    d = u.shape[0]
    m = d - d % 4
    s0 = s1 = s2 = s3 = 0.0
    for k in range(0, m, 4):
        s0 += u[k] * v[k]
        s1 += u[k + 1] * v[k + 1]
        s2 += u[k + 2] * v[k + 2]
        s3 += u[k + 3] * v[k + 3]
    for k in range(m, d):
        s0 += u[k] * v[k]
    return (s0 + s1) + (s2 + s3)


@numba.njit(cache=True)
def _grad_rows(kind, A, y, reg, rows, w, x, out):
    """out = mean_j w_j grad f_{rows_j}(x) by row loops (cheapest for small batches)."""
    b = rows.shape[0]
    wsum = 0.0
    for j in range(b):
        wsum += w[j]
    s = reg * wsum / b
    for k in range(x.shape[0]):
        out[k] = s * x[k]
    for j in range(b):
        i = rows[j]
        c = w[j] * _dloss(kind, _dot(A[i], x), y[i]) / b
        for k in range(x.shape[0]):
            out[k] += c * A[i, k]


@numba.njit(cache=True)
def _grad_dense(kind, M, yb, reg, w, x, z, c, out):
    """out = mean_j w_j grad f_j(x) for the rows M (b x d) with targets yb, via BLAS."""
    b = M.shape[0]
    np.dot(M, x, z)
    wsum = 0.0
    for j in range(b):
        c[j] = w[j] * _dloss(kind, z[j], yb[j]) / b
        wsum += w[j]
    np.dot(c, M, out)
    s = reg * wsum / b
    for k in range(x.shape[0]):
        out[k] += s * x[k]


@numba.njit(cache=True)
def _minibatch_grad(kind, mode, A, y, reg, rows, w, x, M, yb, z, c, out):
    if mode == ROWS:
        _grad_rows(kind, A, y, reg, rows, w, x, out)
    else:
        _grad_dense(kind, M, yb, reg, w, x, z, c, out)


@numba.njit(cache=True)
def run_steps(kind, mode, perturb, A, y, reg, x, idx, w, rho, gamma, lam, M, yb, z, c, g, xe):
    """Take idx.shape[0] Unified SAM steps in place on x.

    mode ROWS: row loops on A; GATHER: copy the minibatch rows into M/yb once per step,
    then BLAS; DENSE: M/yb already are the minibatch (full batch: A and y themselves).
    """
    steps, b = idx.shape
    d = x.shape[0]
    for t in range(steps):
        rows = idx[t]
        wt = w[t]
        if mode == GATHER:
            for j in range(b):
                i = rows[j]
                yb[j] = y[i]
                for k in range(d):
                    M[j, k] = A[i, k]
        _minibatch_grad(kind, mode, A, y, reg, rows, wt, x, M, yb, z, c, g)
        if perturb:
            scale = rho[t] * (1.0 - lam[t] + lam[t] / (math.sqrt(_dot(g, g)) + _EPS))
            for k in range(d):
                xe[k] = x[k] + scale * g[k]
            _minibatch_grad(kind, mode, A, y, reg, rows, wt, xe, M, yb, z, c, g)
        for k in range(d):
            x[k] -= gamma[t] * g[k]


@numba.njit(cache=True)
def evaluate(kind, A, y, reg, x, z, c, grad):
    """(f(x), ||grad f(x)||, ||x||, accuracy) on the full data; accuracy is NaN for regression."""
    n = A.shape[0]
    np.dot(A, x, z)
    total = 0.0
    correct = 0
    for i in range(n):
        if kind == SQUARED:
            r = z[i] - y[i]
            total += 0.5 * r * r
        else:
            t = y[i] * z[i]
            total += max(-t, 0.0) + math.log1p(math.exp(-abs(t)))
            correct += t > 0.0
        c[i] = _dloss(kind, z[i], y[i]) / n
    np.dot(c, A, grad)
    xx = 0.0
    gg = 0.0
    for k in range(x.shape[0]):
        xx += x[k] * x[k]
        grad[k] += reg * x[k]
        gg += grad[k] * grad[k]
    accuracy = correct / n if kind == LOGISTIC else np.nan
    return total / n + 0.5 * reg * xx, math.sqrt(gg), math.sqrt(xx), accuracy


@functools.cache
def warm_up() -> None:
    """Compile (or load from numba's cache) both kernels once per process, on tiny arrays
    of exactly the types a trial passes, so no trial's clock ever includes compilation."""
    A = np.ones((2, 2))
    y = np.ones(2)
    x = np.zeros(2)
    idx = np.zeros((1, 1), dtype=np.int64)
    w = np.ones((1, 1))
    steps = np.ones(1)
    run_steps(SQUARED, ROWS, True, A, y, 0.0, x, idx, w, steps, steps, steps, A, y, y, y, x.copy(), x.copy())
    evaluate(SQUARED, A, y, 0.0, x, y.copy(), y.copy(), x.copy())
