"""The trial engine for the paper's synthetic problems (least squares, ridge, logistic).

Unified SAM with the plain gradient-descent base (SCIENCE.md section 1), on a problem
from ``harness.data.load_problem``: at step t, with the sampler's indices i_j and weights
w_j and the weighted minibatch gradient g(x) = mean_j w_j grad f_{i_j}(x),

    e       = rho_t (1 - lam_t + lam_t / (||g(x)|| + 1e-12)) g(x)
    x      <- x - gamma_t g(x + e)            (the SAME indices and weights twice)

rho = 0 (or optimizer sgd) takes the single gradient g(x): plain SGD, bit for bit.

Why a numba kernel: the reference code runs one numpy call per gradient and keeps every
iterate (about 26 us per step at batch 1, d = 100, memory growing with the run). Here the
sampler draws a bounded chunk of minibatches at once, the step sizes are vectorised over
the chunk, and one compiled loop runs the steps in place; only O(chunk) memory is ever
held. Small minibatches use hand-written row loops; large ones (and full batch) use BLAS
matrix-vector products on the gathered rows (or on the data itself when S = all n).

Counting and clocks: ``grad_evals`` counts minibatch gradient evaluations, 2 per step
for a SAM-family optimizer with rho > 0, else 1 (a full-batch gradient counts 1 too).
``time_train`` covers drawing the minibatches, the step-size arrays and the stepping
kernel; ``time_eval`` the full-data loss and gradient at evaluation points and building
the record; ``time_total`` is wall-clock since ``records()`` first started (resumes add
to it). ``epoch`` is iteration / n, as in the reference code (``epochs: E`` runs E * n
iterations whatever the batch size).
"""

from __future__ import annotations

import copy
import functools
import math
import time
from typing import TYPE_CHECKING, Any, Iterator

import numba
import numpy as np
import torch

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.config import TrialConfig
from harness.records import Record, new_record

_SQUARED, _LOGISTIC = 0, 1                 # per-sample loss: 1/2 (a.x - y)^2 or log(1 + e^{-y a.x})
_ROWS, _GATHER, _DENSE = 0, 1, 2            # how the kernel forms a minibatch gradient
_GATHER_MIN_BATCH = 8                       # from this batch size on, BLAS on gathered rows wins
_MAX_CHUNK_STEPS = 1 << 16                  # bound the pre-drawn minibatches (constant memory)
_MAX_CHUNK_ELEMENTS = 1 << 18
_EPS = 1e-12


# -- the compiled kernel --------------------------------------------------------------------
@numba.njit(cache=True)
def _dloss(kind: int, z: float, y: float) -> float:
    """Derivative of the per-sample loss with respect to the margin z = a.x."""
    if kind == _SQUARED:
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
    if mode == _ROWS:
        _grad_rows(kind, A, y, reg, rows, w, x, out)
    else:
        _grad_dense(kind, M, yb, reg, w, x, z, c, out)


@numba.njit(cache=True)
def _run_steps(kind, mode, perturb, A, y, reg, x, idx, w, rho, gamma, lam, M, yb, z, c, g, xe):
    """Take idx.shape[0] Unified SAM steps in place on x.

    mode _ROWS: row loops on A; _GATHER: copy the minibatch rows into M/yb once per step,
    then BLAS; _DENSE: M/yb already are the minibatch (full batch: A and y themselves).
    """
    steps, b = idx.shape
    d = x.shape[0]
    for t in range(steps):
        rows = idx[t]
        wt = w[t]
        if mode == _GATHER:
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
def _evaluate(kind, A, y, reg, x, z, c, grad):
    """(f(x), ||grad f(x)||, ||x||, accuracy) on the full data; accuracy is NaN for regression."""
    n = A.shape[0]
    np.dot(A, x, z)
    total = 0.0
    correct = 0
    for i in range(n):
        if kind == _SQUARED:
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
    accuracy = correct / n if kind == _LOGISTIC else np.nan
    return total / n + 0.5 * reg * xx, math.sqrt(gg), math.sqrt(xx), accuracy


@functools.cache
def _warm_up() -> None:
    """Compile (or load from numba's cache) both kernels once per process, on tiny arrays
    of exactly the types a trial passes, so no trial's clock ever includes compilation."""
    A = np.ones((2, 2))
    y = np.ones(2)
    x = np.zeros(2)
    idx = np.zeros((1, 1), dtype=np.int64)
    w = np.ones((1, 1))
    steps = np.ones(1)
    _run_steps(_SQUARED, _ROWS, True, A, y, 0.0, x, idx, w, steps, steps, steps, A, y, y, y, x.copy(), x.copy())
    _evaluate(_SQUARED, A, y, 0.0, x, y.copy(), y.copy(), x.copy())


# -- the trial --------------------------------------------------------------------------------
class SyntheticTrial:
    """One Unified SAM run on a synthetic problem: a validated config in, records out.

    ``records()`` yields the evaluation at iteration 0 (x0), then one every
    ``cfg.eval_every`` iterations and one at the last iteration. A non-finite loss stops
    the trial after the record that shows it (``status`` "diverged"; non-finite values
    are stored as None, as the network trial does). ``state_dict()`` taken between two
    records restores a trial that continues bit-identically.
    """

    def __init__(self, cfg: TrialConfig):
        from harness.data import load_problem
        from harness.samplers import build_sampler

        _check_config(cfg)
        self.cfg = cfg
        self.problem = problem = load_problem(cfg)
        self._kind = _LOGISTIC if problem.kind == "logreg" else _SQUARED
        # Private writable C-contiguous copies: one numba signature for every trial.
        self._A = np.array(problem.A, dtype=np.float64, order="C")
        self._y = np.array(problem.b, dtype=np.float64, order="C")
        self._reg = float(problem.reg)
        n, d = self._A.shape
        # Synthetic problems know L_i exactly: importance sampling uses p_i ~ L_i, unmixed
        # (importance_mix and importance_proxy are for networks).
        self.sampler = build_sampler(
            cfg.sampler, n, cfg.batch_size, seed=cfg.seed, paper_compat=cfg.paper_compat,
            smoothness=np.asarray(problem.L_i, dtype=np.float64), mix=0.0,
        )
        self._constants = self.sampler.constants(np.asarray(problem.L_i, dtype=np.float64))
        self._theory: tuple[float, float] | None = None
        if cfg.step_rule is not None:
            self._theory = self._theory_step_sizes()
            self._rho, self._lr = self._theory
        else:
            self._rho, self._lr = float(cfg.rho), float(cfg.lr)
        self._perturb = cfg.optimizer != "sgd" and self._rho > 0.0
        self.total_steps = cfg.iterations if cfg.iterations is not None else cfg.epochs * n
        self._eval_every = cfg.eval_every
        batch = self.sampler.batch_size
        self._chunk_steps = max(1, min(_MAX_CHUNK_STEPS, _MAX_CHUNK_ELEMENTS // batch))

        self._x = np.array(problem.x0, dtype=np.float64, order="C")
        self._g, self._xe = np.empty(d), np.empty(d)
        self._z, self._c = np.empty(n), np.empty(n)  # batch <= n
        self._M = np.empty((batch, d)) if batch >= _GATHER_MIN_BATCH else np.empty((1, d))
        self._yb = np.empty(batch)
        _warm_up()
        self._f_star = float(problem.f_star)
        self._f0 = self._evaluate()[0]

        self.status = "ok"
        self._t = 0
        self._records_emitted = 0
        self._elapsed = {"train": 0.0, "eval": 0.0, "total": 0.0}
        self._chunk: dict[str, Any] | None = None

    # -- configuration ---------------------------------------------------------------------
    def _theory_step_sizes(self) -> tuple[float, float]:
        """(rho*, gamma*) from the problem's (mu, L) and the sampler's (A, B)."""
        from harness.theory import theory_step_sizes

        cfg, p = self.cfg, self.problem
        if self._constants is None:
            raise ConfigError(
                "sampler", cfg.sampler,
                "a sampler with Expected Residual constants (full, uniform, tau_nice, importance) when step_rule is set",
            )
        # SCIENCE.md section 3: L = L_max in the stochastic case.
        L = p.L if cfg.sampler == "full" else p.L_max
        A, B = self._constants
        return theory_step_sizes(cfg.step_rule, mu=float(p.mu), L=float(L), A=float(A), B=float(B), lam=float(cfg.lam))

    def _schedules(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rho_t, gamma_t, lam_t) at 0-based step indices (lam_t uses t + 1: t = 1 first)."""
        if self.cfg.step_rule is not None:
            from harness.theory import theory_schedule

            rho, lr = theory_schedule(self.cfg.lr_schedule, self._rho, self._lr, float(self.problem.mu), steps)
        else:
            rho, lr = np.full(len(steps), self._rho), np.full(len(steps), self._lr)
        lam = self.cfg.lam
        if lam == "1/t":
            lam_t = 1.0 / (steps + 1.0)
        elif lam == "1-1/t":
            lam_t = 1.0 - 1.0 / (steps + 1.0)
        else:
            lam_t = np.full(len(steps), 0.0 if lam is None else float(lam))
        return (np.ascontiguousarray(rho, dtype=np.float64), np.ascontiguousarray(lr, dtype=np.float64),
                np.ascontiguousarray(lam_t, dtype=np.float64))

    # -- the run ---------------------------------------------------------------------------
    def records(self) -> Iterator[Record]:
        started = time.perf_counter() - self._elapsed["total"]
        if self._records_emitted == 0 and self.status == "ok":
            yield self._record(started)
        every = self._eval_every
        while self._t < self.total_steps and self.status == "ok":
            self._advance(min((self._t // every + 1) * every, self.total_steps))
            yield self._record(started)

    def _advance(self, target: int) -> None:
        """Step until iteration ``target``, chunk by chunk (chunk k covers steps
        [k C, (k+1) C), so chunk boundaries and draws never depend on evaluations)."""
        t0 = time.perf_counter()
        while self._t < target:
            chunk = self._chunk
            if chunk is None or self._t >= chunk["end"]:
                chunk = self._draw_chunk(self._t // self._chunk_steps)
            stop = min(target, chunk["end"])
            a, b = self._t - chunk["start"], stop - chunk["start"]
            _run_steps(
                self._kind, chunk["mode"], self._perturb, self._A, self._y, self._reg, self._x,
                chunk["idx"][a:b], chunk["w"][a:b], chunk["rho"][a:b], chunk["lr"][a:b], chunk["lam"][a:b],
                chunk["M"], chunk["yb"], chunk["z"], chunk["c"], self._g, self._xe,
            )
            self._t = stop
        self._elapsed["train"] += time.perf_counter() - t0

    def _draw_chunk(self, index: int) -> dict[str, Any]:
        start = index * self._chunk_steps
        end = min(start + self._chunk_steps, self.total_steps)
        before = copy.deepcopy(self.sampler.state_dict())
        idx_t, w_t = self.sampler.draw(end - start)
        idx = np.ascontiguousarray(idx_t.numpy(), dtype=np.int64)
        w = np.ascontiguousarray(w_t.numpy(), dtype=np.float64)
        n, batch = self._A.shape[0], idx.shape[1]
        M, yb = self._M, self._yb
        if batch == n and np.array_equal(idx, np.broadcast_to(np.arange(n), idx.shape)):
            mode, M, yb = _DENSE, self._A, self._y
        elif batch >= _GATHER_MIN_BATCH:
            mode = _GATHER
        else:
            mode = _ROWS
        rho, lr, lam = self._schedules(np.arange(start, end, dtype=np.float64))
        self._chunk = dict(start=start, end=end, sampler_before=before, idx=idx, w=w,
                           rho=rho, lr=lr, lam=lam, mode=mode, M=M, yb=yb,
                           z=self._z[:batch], c=self._c[:batch])
        return self._chunk

    def _step_sizes_in_use(self) -> tuple[float, float, float]:
        """(rho_t, gamma_t, lam_t) of the last step taken (of the first step, at iteration 0)."""
        chunk, last = self._chunk, self._t - 1
        if chunk is not None and chunk["start"] <= last < chunk["end"]:
            i = last - chunk["start"]
            return float(chunk["rho"][i]), float(chunk["lr"][i]), float(chunk["lam"][i])
        rho, lr, lam = self._schedules(np.array([max(last, 0)], dtype=np.float64))
        return float(rho[0]), float(lr[0]), float(lam[0])

    def _evaluate(self) -> tuple[float, float, float, float]:
        return _evaluate(self._kind, self._A, self._y, self._reg, self._x, self._z, self._c, self._g)

    def _record(self, started: float) -> Record:
        t0 = time.perf_counter()
        loss, grad_norm, weight_norm, accuracy = self._evaluate()
        if not math.isfinite(loss):
            self.status = "diverged"
        gap0 = self._f0 - self._f_star
        rel = (loss - self._f_star) / gap0 if gap0 > 0 else None
        rho, lr, lam = self._step_sizes_in_use()
        steps = self._t
        values = dict(
            epoch=steps / self._A.shape[0], iteration=steps,
            grad_evals=steps * (2 if self._perturb else 1),
            train_loss=loss, train_acc=None if math.isnan(accuracy) else accuracy,
            rel_subopt=rel, grad_norm=grad_norm, weight_norm=weight_norm,
            lr=lr, rho=rho,
            lam=None if self.cfg.lam is None else lam,
        )
        record = new_record(**values)
        self._records_emitted += 1
        now = time.perf_counter()
        self._elapsed["eval"] += now - t0
        self._elapsed["total"] = now - started
        record.update(time_train=self._elapsed["train"], time_eval=self._elapsed["eval"],
                      time_sharpness=0.0, time_total=self._elapsed["total"])
        return record

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed trial needs. Mid-chunk, the sampler state is the one from
        before that chunk was drawn: the resumed trial redraws the same chunk."""
        chunk = self._chunk
        mid_chunk = chunk is not None and chunk["start"] <= self._t < chunk["end"]
        sampler = chunk["sampler_before"] if mid_chunk else self.sampler.state_dict()
        return {
            "config": self.cfg.to_dict(),
            "x": torch.from_numpy(self._x.copy()),  # a tensor: weights-only loadable
            "t": self._t,
            "records_emitted": self._records_emitted,
            "status": self.status,
            "sampler": copy.deepcopy(sampler),
            "elapsed": dict(self._elapsed),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["config"] != self.cfg.to_dict():
            raise ValueError("this state belongs to a trial with a different config")
        x = np.asarray(torch.as_tensor(state["x"]).numpy(), dtype=np.float64)
        if x.shape != self._x.shape:
            raise ValueError(f"state x has shape {x.shape}, expected {self._x.shape}")
        self._x[:] = x
        self._t = int(state["t"])
        self._records_emitted = int(state["records_emitted"])
        self.status = state["status"]
        self.sampler.load_state_dict(copy.deepcopy(state["sampler"]))
        self._elapsed = dict(state["elapsed"])
        self._chunk = None

    def info(self) -> dict[str, Any]:
        p = self.problem
        A, B = self._constants if self._constants is not None else (None, None)
        rho, lr = self._theory if self._theory is not None else (None, None)
        return {
            "sampler_desc": self.sampler.describe(), "device": "cpu",
            "problem_L": float(p.L), "problem_mu": float(p.mu), "problem_L_max": float(p.L_max),
            "problem_L_bar": float(p.L_bar), "problem_f_star": float(p.f_star),
            "sampler_A": _float_or_none(A), "sampler_B": _float_or_none(B),
            "theory_rho": rho, "theory_lr": lr,
        }


def _check_config(cfg: TrialConfig) -> None:
    """What the synthetic engine cannot honour, refused in one line."""
    from harness.data import SYNTHETIC

    if cfg.dataset not in SYNTHETIC:
        raise ConfigError("dataset", cfg.dataset, ", ".join(SYNTHETIC) + " (the synthetic engine)")
    for name in ("momentum", "weight_decay"):
        if getattr(cfg, name) != 0:
            raise ConfigError(name, getattr(cfg, name), "0 for synthetic problems (plain gradient-descent base)")
    if cfg.device == "cuda":
        raise ConfigError("device", cfg.device, "auto or cpu (synthetic problems run on the CPU)")
    if cfg.step_rule is not None and cfg.optimizer == "sgd":
        raise ConfigError("step_rule", cfg.step_rule, "null for optimizer sgd (the rules give Unified SAM step sizes; set lr)")


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)

