"""Uniform sampling with replacement (b = 1 is the theory's 'uniform single')."""

from __future__ import annotations

import numpy as np
import torch

from harness.samplers.base import Sampler
from harness.samplers.constants import WITH_REPLACEMENT_CAVEAT, check_smoothness, tau_nice_constants


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
