"""Importance sampling: i ~ p with replacement, reweighted by 1/(n p_i) to stay unbiased."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from harness.errors import ConfigError
from harness.samplers.base import Sampler
from harness.samplers.constants import (UNWEIGHTED_CAVEAT, check_smoothness, tau_nice_constants,
                                        with_replacement_constants)

IMPORTANCE_PROXY_NAMES = ("loss", "gradnorm")


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


def _check_scores(scores: np.ndarray, n: int, mix: float) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (n,) or not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"importance scores must be {n} finite non-negative numbers, got shape {s.shape}")
    if s.sum() <= 0 and mix < 1.0:
        raise ValueError("importance scores are all zero; use mix > 0 or positive scores")
    return s
