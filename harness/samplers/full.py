"""Full batch: every step uses all n samples."""

from __future__ import annotations

import numpy as np
import torch

from harness.samplers.base import Sampler
from harness.samplers.constants import check_smoothness


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
