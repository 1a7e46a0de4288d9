"""Index + weight streams for a finite sum f = (1/n) sum_i f_i.

A sampler yields minibatch indices and per-sample weights; the minibatch loss is the
weighted mean ``mean_j w_j * loss_{i_j}``, so plain-mean samplers give weights of ones and
importance sampling gives ``1 / (n p_i)``, which keeps the gradient estimate unbiased.
Each sampler owns a CPU ``torch.Generator`` (the global RNG is never touched) and can be
saved and restored mid-epoch so a resumed run continues the identical stream.

``draw(k)`` returns the next k batches as ``[k, b]`` tensors without a per-step Python
loop; ``next_batch()`` is ``draw(1)`` for one batch, so both read the same stream.

``constants`` gives the sampler's Expected Residual constants (A, B), derived in
``harness.sampler_constants``; ``constants_caveat`` says, in one line, when those numbers
are not a proved bound for what was drawn (None when they are).
"paper-compat" reproduces the reference code: minibatches with replacement, importance
sampling without reweighting, and the constants that code plugs into its step sizes.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from harness.errors import ConfigError
from harness.sampler_constants import (UNWEIGHTED_CAVEAT, WITH_REPLACEMENT_CAVEAT, check_smoothness,
                                       tau_nice_constants, with_replacement_constants)

IMPORTANCE_PROXY_NAMES = ("loss", "gradnorm")
_MAX_CHUNK_ELEMENTS = 1 << 22  # bounds the [rows, n] scratch of the tau-nice fallback


class Sampler:
    """Base class: owns the generator, the draw counter and the save/restore format.

    Subclasses implement ``_draw(k)`` (the next k batches as [k, b] index and weight
    tensors) and ``constants``; those with more stream state extend ``_extra_state``.
    """

    name: ClassVar[str] = ""

    def __init__(self, n: int, batch_size: int, *, seed: int, paper_compat: bool = False):
        _check_int("n", n, 1)
        _check_int("batch_size", batch_size, 1)
        _check_int("seed", seed, 0)
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.paper_compat = bool(paper_compat)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.batches_drawn = 0

    @property
    def batches_per_epoch(self) -> int:
        """ceil(n / b): one pass over the data, or as many draws for with-replacement samplers."""
        return math.ceil(self.n / self.batch_size)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices [b] (CPU int64) and float32 weights [b] of the next minibatch."""
        idx, w = self.draw(1)
        return idx[0], w[0]

    def draw(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next k batches at once: indices [k, b] and float32 weights [k, b]."""
        _check_int("k", k, 0)
        idx, w = self._draw(k)
        self.batches_drawn += k
        return idx, w

    def _draw(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def constants(self, smoothness: np.ndarray) -> tuple[float, float] | None:
        """(A, B) of the Expected Residual bound for these per-sample smoothness constants L_i."""
        raise NotImplementedError

    def constants_caveat(self) -> str | None:
        """Why ``constants`` are not a proved bound for this draw (one line), or None."""
        return None

    def samples_in(self, batches: int) -> int:
        """How many samples the first ``batches`` batches of the stream hold (b each here)."""
        return int(batches) * self.batch_size

    def update_scores(self, scores: torch.Tensor | np.ndarray) -> None:
        raise TypeError(f"sampler {self.name!r} has no sampling scores; only 'importance' does")

    def describe(self) -> str:
        """A one-line statement of what was sampled, stored with the results."""
        raise NotImplementedError

    # -- save / restore ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A snapshot (no aliases) from which ``load_state_dict`` continues the same stream."""
        return {
            "describe": self.describe(),
            "n": self.n,
            "generator": self.generator.get_state(),
            "batches_drawn": self.batches_drawn,
            **self._extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["describe"] != self.describe() or state["n"] != self.n:
            raise ValueError(
                f"sampler state of {state['describe']} (n={state['n']}) cannot be loaded "
                f"into {self.describe()} (n={self.n})"
            )
        self.generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8).clone())
        self.batches_drawn = int(state["batches_drawn"])
        self._load_extra_state(state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass


class FullBatch(Sampler):
    """S = all n every step; batch_size is ignored (always n); consumes no randomness."""

    name = "full"

    def __init__(self, n: int, batch_size: int, *, seed: int, paper_compat: bool = False):
        super().__init__(n, n, seed=seed, paper_compat=paper_compat)

    def _draw(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.arange(self.n).repeat(k, 1), torch.ones(k, self.n)

    def constants(self, smoothness: np.ndarray) -> tuple[float, float]:
        check_smoothness(smoothness, self.n)
        return 0.0, 1.0

    def describe(self) -> str:
        return "full"


class Uniform(Sampler):
    """b indices uniformly with replacement, plain mean (b = 1 is the table's 'uniform single')."""

    name = "uniform"

    def _draw(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, self.n, (k, self.batch_size), generator=self.generator)
        return idx, torch.ones(k, self.batch_size)

    def constants(self, smoothness: np.ndarray) -> tuple[float, float]:
        L = check_smoothness(smoothness, self.n)
        if self.paper_compat:
            return tau_nice_constants(L, self.batch_size)
        return float(L.max()) / self.batch_size, (self.batch_size - 1) / self.batch_size

    def constants_caveat(self) -> str | None:
        return WITH_REPLACEMENT_CAVEAT if self.paper_compat and self.batch_size > 1 else None

    def describe(self) -> str:
        tail = ", paper-compat constants" if self.paper_compat else ""
        return f"uniform(b={self.batch_size}, with replacement{tail})"


class TauNice(Sampler):
    """tau distinct indices uniformly, fresh each step, plain mean.

    paper-compat draws with replacement (as the reference code does) but still reports
    the tau-nice constants, as that code does.
    """

    name = "tau_nice"

    def __init__(self, n: int, batch_size: int, *, seed: int, paper_compat: bool = False):
        if batch_size > n:
            raise ConfigError("batch_size", batch_size, f"at most n = {n} for sampler tau_nice")
        super().__init__(n, batch_size, seed=seed, paper_compat=paper_compat)

    def _draw(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.paper_compat:
            idx = torch.randint(0, self.n, (k, self.batch_size), generator=self.generator)
        else:
            idx = _distinct_rows(k, self.n, self.batch_size, self.generator)
        return idx, torch.ones(k, self.batch_size)

    def constants(self, smoothness: np.ndarray) -> tuple[float, float]:
        return tau_nice_constants(check_smoothness(smoothness, self.n), self.batch_size)

    def constants_caveat(self) -> str | None:
        return WITH_REPLACEMENT_CAVEAT if self.paper_compat and self.batch_size > 1 else None

    def describe(self) -> str:
        how = "paper-compat: with replacement" if self.paper_compat else "without replacement"
        return f"tau_nice(b={self.batch_size}, {how})"


class Importance(Sampler):
    """i ~ p with replacement, weight 1/(n p_i) so the estimate stays unbiased.

    p = (1 - mix) * s / sum(s) + mix / n, where s is either the known smoothness L_i (fixed)
    or a proxy score the caller refreshes with ``update_scores`` (uniform until then).
    paper-compat keeps the draw but drops the reweighting (weights of ones), as the
    reference code does; that estimate is biased.
    """

    name = "importance"

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int,
        paper_compat: bool = False,
        smoothness: np.ndarray | None = None,
        mix: float = 0.0,
        proxy: str = "loss",
    ):
        super().__init__(n, batch_size, seed=seed, paper_compat=paper_compat)
        if not isinstance(mix, (int, float)) or isinstance(mix, bool) or not 0.0 <= mix <= 1.0:
            raise ConfigError("importance_mix", mix, "a number in [0, 1]")
        if smoothness is None and proxy not in IMPORTANCE_PROXY_NAMES:
            raise ConfigError("importance_proxy", proxy, ", ".join(IMPORTANCE_PROXY_NAMES))
        self.mix = float(mix)
        self.source = "L_i" if smoothness is not None else f"{proxy} proxy"
        if smoothness is not None:
            self._set_probabilities(self._mixed(_check_scores(smoothness, n, self.mix)))
        else:
            self._set_probabilities(np.full(n, 1.0 / n))

    @property
    def probabilities(self) -> np.ndarray:
        """The current sampling distribution p (a float64 copy)."""
        return self._p.numpy().copy()

    def update_scores(self, scores: torch.Tensor | np.ndarray) -> None:
        """Refresh a proxy (e.g. per-sample losses); p follows the mix rule above."""
        if self.source == "L_i":
            raise ValueError("this importance sampler uses fixed smoothness constants L_i")
        if isinstance(scores, torch.Tensor):
            scores = scores.detach().cpu().numpy()
        self._set_probabilities(self._mixed(_check_scores(scores, self.n, self.mix)))

    def _mixed(self, scores: np.ndarray) -> np.ndarray:
        total = scores.sum()
        share = scores / total if total > 0 else np.zeros_like(scores)
        return (1.0 - self.mix) * share + self.mix / self.n

    def _set_probabilities(self, p: np.ndarray) -> None:
        self._p = torch.as_tensor(p, dtype=torch.float64).clone()
        scaled = self.n * self._p
        # p_i = 0 is never drawn; its infinite weight never reaches a loss.
        self._weights = torch.where(scaled > 0, 1.0 / scaled, torch.full_like(scaled, math.inf))

    def _draw(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.batch_size
        if k == 0:
            return torch.zeros(0, b, dtype=torch.long), torch.zeros(0, b)
        idx = torch.multinomial(self._p, k * b, replacement=True, generator=self.generator).view(k, b)
        if self.paper_compat:
            return idx, torch.ones(k, b)
        return idx, self._weights[idx].float()

    def constants(self, smoothness: np.ndarray) -> tuple[float, float]:
        """Reweighted: (max_i L_i/(n p_i) / b, (b-1)/b), i.e. (Lbar, 0) for p = L_i/sum L at b = 1.

        paper-compat: the reference code's numbers, (Lbar, 0) at b = 1 (its importance
        experiment) and the tau-nice constants at b > 1 (its minibatch experiments).
        """
        L = check_smoothness(smoothness, self.n)
        if self.paper_compat:
            return (float(L.mean()), 0.0) if self.batch_size == 1 else tau_nice_constants(L, self.batch_size)
        return with_replacement_constants(L, self._p.numpy(), self.batch_size)

    def constants_caveat(self) -> str | None:
        return UNWEIGHTED_CAVEAT if self.paper_compat else None

    def describe(self) -> str:
        mix = f", mix={self.mix:g}" if self.mix > 0 else ""
        how = "paper-compat: unreweighted" if self.paper_compat else "reweighted"
        return f"importance({self.source}{mix}, b={self.batch_size}, {how})"

    def _extra_state(self) -> dict[str, Any]:
        return {"probabilities": self._p.clone()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self._set_probabilities(torch.as_tensor(state["probabilities"], dtype=torch.float64).numpy())


class Reshuffle(Sampler):
    """A fresh permutation per epoch cut into consecutive chunks (PyTorch's default sampler).

    The last batch of an epoch keeps the remainder (drop_last=False), so ``next_batch`` can
    return fewer than b indices. ``draw`` keeps [k, b] rectangular by padding a short batch
    with index 0 at weight 0 and giving its real entries weight b / b_last, so the weighted
    mean over b equals the plain mean over the b_last real samples. Not covered by the
    theory: ``constants`` is None. A batch_size above n is cut to n.
    """

    name = "reshuffle"

    def __init__(self, n: int, batch_size: int, *, seed: int, paper_compat: bool = False):
        if paper_compat:
            raise ConfigError("paper_compat", True, "false for sampler reshuffle (the reference code never reshuffles)")
        super().__init__(n, min(batch_size, n), seed=seed)
        self._perm: torch.Tensor | None = None  # the current epoch's permutation
        self._next_row = 0                     # index of the next batch within that epoch

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        # The training loop's hot path: a slice of the current permutation, the same
        # stream as draw(1) without its padding arithmetic.
        if self._perm is None or self._next_row >= self.batches_per_epoch:
            self._perm = torch.rand(1, self.n, dtype=torch.float64, generator=self.generator).argsort(dim=1)[0]
            self._next_row = 0
        start = self._next_row * self.batch_size
        idx = self._perm[start:start + self.batch_size]
        self._next_row += 1
        self.batches_drawn += 1
        return idx, torch.ones(len(idx))

    def _draw(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        n, b, per_epoch = self.n, self.batch_size, self.batches_per_epoch
        if k == 0:
            return torch.zeros(0, b, dtype=torch.long), torch.zeros(0, b)
        left = per_epoch - self._next_row if self._perm is not None else 0
        fresh = math.ceil(max(0, k - left) / per_epoch)
        epochs = [self._perm] if left > 0 else []
        if fresh > 0:
            new = torch.rand(fresh, n, dtype=torch.float64, generator=self.generator).argsort(dim=1)
            epochs.extend(new.unbind(0))
        perms = torch.stack(epochs) if len(epochs) > 1 else epochs[0].unsqueeze(0)
        # Row r of the stream is chunk r % per_epoch of epoch r // per_epoch; only the
        # requested k rows are gathered, so a single next_batch costs O(b), not O(n).
        row = torch.arange(k) + (self._next_row if left > 0 else 0)
        pos = (row % per_epoch).unsqueeze(1) * b + torch.arange(b)
        real = pos < n
        idx = perms[(row // per_epoch).unsqueeze(1), pos.clamp(max=n - 1)].masked_fill(~real, 0)
        weights = real.float() * (b / real.sum(dim=1, keepdim=True).float())
        self._perm = perms[-1] if fresh == 0 else perms[-1].clone()
        self._next_row = int(row[-1]) % per_epoch + 1
        return idx, weights

    def constants(self, smoothness: np.ndarray) -> None:
        check_smoothness(smoothness, self.n)
        return None

    def samples_in(self, batches: int) -> int:
        """Each epoch of ceil(n/b) batches holds exactly n samples (its last batch is short)."""
        epochs, rest = divmod(int(batches), self.batches_per_epoch)
        return epochs * self.n + rest * self.batch_size

    def describe(self) -> str:
        return f"reshuffle(b={self.batch_size}, keep last)"

    def _extra_state(self) -> dict[str, Any]:
        perm = None if self._perm is None else self._perm.clone()
        return {"perm": perm, "next_row": self._next_row}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        perm = state["perm"]
        self._perm = None if perm is None else torch.as_tensor(perm, dtype=torch.long).clone()
        self._next_row = int(state["next_row"])


SAMPLERS: dict[str, type[Sampler]] = {
    "full": FullBatch,
    "uniform": Uniform,
    "tau_nice": TauNice,
    "importance": Importance,
    "reshuffle": Reshuffle,
}


def build_sampler(
    name: str,
    n: int,
    batch_size: int,
    *,
    seed: int,
    paper_compat: bool = False,
    smoothness: np.ndarray | None = None,
    mix: float = 0.0,
    proxy: str = "loss",
) -> Sampler:
    """A sampler by registry name. ``smoothness``, ``mix`` and ``proxy`` only affect
    'importance': with ``smoothness`` p follows L_i, otherwise the named proxy that the
    caller refreshes via ``update_scores``."""
    if name not in SAMPLERS:
        raise ConfigError("sampler", name, ", ".join(SAMPLERS))
    if name == "importance":
        return Importance(
            n, batch_size, seed=seed, paper_compat=paper_compat, smoothness=smoothness, mix=mix, proxy=proxy
        )
    return SAMPLERS[name](n, batch_size, seed=seed, paper_compat=paper_compat)


# -- helpers -------------------------------------------------------------------------------
def _distinct_rows(k: int, n: int, b: int, generator: torch.Generator) -> torch.Tensor:
    """k rows of b distinct indices, each row a uniform random b-subset of range(n).

    When distinct draws are likely (probability >= 1/2) draw with replacement and redraw
    rows with a repeat: conditioned on no repeat the row is uniform. Otherwise take the
    top b of i.i.d. uniform keys, in chunks so memory stays bounded.
    """
    p_distinct = math.prod(1.0 - r / n for r in range(b))
    if p_distinct >= 0.5:
        rows = torch.randint(0, n, (k, b), generator=generator)
        bad = _has_repeat(rows).nonzero().squeeze(1)
        while len(bad) > 0:
            redrawn = torch.randint(0, n, (len(bad), b), generator=generator)
            rows[bad] = redrawn
            bad = bad[_has_repeat(redrawn)]
        return rows
    chunk = max(1, _MAX_CHUNK_ELEMENTS // n)
    parts = [
        torch.rand(min(chunk, k - s), n, dtype=torch.float64, generator=generator).topk(b, dim=1).indices
        for s in range(0, k, chunk)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, b, dtype=torch.long)


def _has_repeat(rows: torch.Tensor) -> torch.Tensor:
    ordered = rows.sort(dim=1).values
    return (ordered[:, 1:] == ordered[:, :-1]).any(dim=1)


def _check_scores(scores: np.ndarray, n: int, mix: float) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (n,) or not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"importance scores must be {n} finite non-negative numbers, got shape {s.shape}")
    if s.sum() <= 0 and mix < 1.0:
        raise ValueError("importance scores are all zero; use mix > 0 or positive scores")
    return s


def _check_int(field: str, value: Any, low: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ConfigError(field, value, f"an integer >= {low}")
