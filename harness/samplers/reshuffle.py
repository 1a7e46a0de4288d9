"""Random reshuffling: a permutation per epoch cut into consecutive batches."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from harness.errors import ConfigError
from harness.samplers.base import Sampler
from harness.samplers.constants import check_smoothness


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
