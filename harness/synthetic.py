"""The trial engine for the paper's synthetic problems (least squares, ridge, logistic).

Unified SAM with the plain gradient-descent base, on a problem from
``harness.data.load_problem``: at step t, with the sampler's indices i_j and weights w_j
and the weighted minibatch gradient g(x) = mean_j w_j grad f_{i_j}(x),

    e       = rho_t (1 - lam_t + lam_t / (||g(x)|| + 1e-12)) g(x)
    x      <- x - gamma_t g(x + e)            (the SAME indices and weights twice)

rho = 0 (or optimizer sgd) takes the single gradient g(x): plain SGD, bit for bit.

The sampler draws a bounded chunk of minibatches at once, the step sizes are vectorised
over the chunk, and the compiled kernel (``harness.synthetic_kernel``) runs the steps in
place; only O(chunk) memory is ever held, however long the run.

Counting, as in the network engine (``harness.trial``): an epoch is one pass over the
data, ceil(n / b) steps (``epochs: E`` runs E passes; ``epoch`` = iteration / ceil(n / b));
``grad_evals`` counts minibatch gradient evaluations, 2 per step for a SAM-family
optimizer with rho > 0, else 1; ``grad_samples`` counts per-sample gradients, the
minibatch's size times those passes, so a full-batch step costs n times a batch-1 step;
``refresh_samples`` stays 0 (the L_i are known exactly, nothing is refreshed).
Clocks: ``time_train`` covers drawing the minibatches, the step-size arrays and the
stepping kernel; ``time_eval`` the full-data loss and gradient at evaluation points and
building the record; ``time_total`` is wall-clock since ``records()`` first started
(resumes add to it).
"""

from __future__ import annotations

import copy
import math
import time
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from harness import synthetic_kernel as kernel
from harness.errors import ConfigError
from harness.records import Record, new_record

if TYPE_CHECKING:
    from harness.config import TrialConfig

_MAX_CHUNK_STEPS = 1 << 16     # bound the pre-drawn minibatches (constant memory)
_MAX_CHUNK_ELEMENTS = 1 << 18


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
        self._kind = kernel.LOGISTIC if problem.kind == "logreg" else kernel.SQUARED
        # Private writable C-contiguous copies: one numba signature for every trial.
        self._A = np.array(problem.A, dtype=np.float64, order="C")
        self._y = np.array(problem.b, dtype=np.float64, order="C")
        self._reg = float(problem.reg)
        n, d = self._A.shape
        # Synthetic problems know L_i exactly: importance sampling uses p_i ~ L_i, unmixed
        # (the config refuses importance_mix/proxy/refresh here: they would not apply).
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
        self._steps_per_epoch = self.sampler.batches_per_epoch
        self.total_steps = cfg.iterations if cfg.iterations is not None else cfg.epochs * self._steps_per_epoch
        self._eval_every = cfg.eval_every
        batch = self.sampler.batch_size
        self._chunk_steps = max(1, min(_MAX_CHUNK_STEPS, _MAX_CHUNK_ELEMENTS // batch))

        self._x = np.array(problem.x0, dtype=np.float64, order="C")
        self._g, self._xe = np.empty(d), np.empty(d)
        self._z, self._c = np.empty(n), np.empty(n)  # batch <= n
        self._M = np.empty((batch, d)) if batch >= kernel.GATHER_MIN_BATCH else np.empty((1, d))
        self._yb = np.empty(batch)
        kernel.warm_up()
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
        # L = L_max in the stochastic case. The reference code takes L itself whenever the
        # batch size is n, with replacement or not: paper-compat does the same.
        whole = cfg.sampler == "full" or (cfg.paper_compat and self.sampler.batch_size == p.n)
        L = p.L if whole else p.L_max
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
            kernel.run_steps(
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
            mode, M, yb = kernel.DENSE, self._A, self._y
        elif batch >= kernel.GATHER_MIN_BATCH:
            mode = kernel.GATHER
        else:
            mode = kernel.ROWS
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
        return kernel.evaluate(self._kind, self._A, self._y, self._reg, self._x, self._z, self._c, self._g)

    def _record(self, started: float) -> Record:
        t0 = time.perf_counter()
        loss, grad_norm, weight_norm, accuracy = self._evaluate()
        if not math.isfinite(loss):
            self.status = "diverged"
        gap0 = self._f0 - self._f_star
        rel = (loss - self._f_star) / gap0 if gap0 > 0 else None
        rho, lr, lam = self._step_sizes_in_use()
        steps, passes = self._t, 2 if self._perturb else 1
        values = dict(
            epoch=steps / self._steps_per_epoch, iteration=steps, grad_evals=steps * passes,
            grad_samples=self.sampler.samples_in(steps) * passes, refresh_samples=0,
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
        # Keys a checkpoint predates (added to TrialConfig since) keep this config's value.
        if self.cfg.replace(**state["config"]) != self.cfg:
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
        caveat = None if A is None else self.sampler.constants_caveat()
        return {
            "sampler_desc": self.sampler.describe(), "device": "cpu",
            "problem_L": float(p.L), "problem_mu": float(p.mu), "problem_L_max": float(p.L_max),
            "problem_L_bar": float(p.L_bar), "problem_f_star": float(p.f_star),
            "sampler_A": _float_or_none(A), "sampler_B": _float_or_none(B),
            # whether (A, B) are a proved bound for what was drawn (paper-compat: not always)
            "sampler_AB_guaranteed": None if A is None else caveat is None, "sampler_AB_caveat": caveat,
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

