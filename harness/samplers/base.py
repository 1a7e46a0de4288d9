"""The sampler base class: the generator, the draw counter and the save/restore format."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from harness.errors import ConfigError


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


def _check_int(field: str, value: Any, low: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ConfigError(field, value, f"an integer >= {low}")
