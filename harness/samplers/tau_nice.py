"""tau-nice sampling: tau distinct indices drawn uniformly, fresh each step."""

from __future__ import annotations

import math

import numpy as np
import torch

from harness.errors import ConfigError
from harness.samplers.base import Sampler
from harness.samplers.constants import WITH_REPLACEMENT_CAVEAT, check_smoothness, tau_nice_constants

_MAX_CHUNK_ELEMENTS = 1 << 22  # bounds the [rows, n] scratch of the top-b fallback


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
