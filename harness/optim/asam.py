"""ASAM, adaptive SAM (Kwon et al., ICML 2021): the ascent in rescaled coordinates.

With T = diag(|w| + eta) taken at x, the direction is d = T g and e = rho T d / ||d|| (the
paper's rho T^2 g / ||T g||). lam mixes in the rescaled coordinates:
e = rho (1 - lam + lam / (||T g|| + eps)) T (T g). The paper uses eta = 0.01 and a radius
about ten times SAM's (0.5 by default here); the reference code (davda54/sam with
``adaptive=True``, and ``pytorch_optimizer.SAM(adaptive=True)``) has no eta: eta = 0
reproduces it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from harness.optim.base import Tensors, TwoPassSAM, check_number


class ASAM(TwoPassSAM):
    DEFAULT_RHO: ClassVar[float] = 0.5
    HYPER: ClassVar[dict[str, Any]] = {"eta": 0.01}

    def check_hyper(self) -> None:
        check_number("asam", "eta", self.eta, 0.0)

    def _scaling(self, params: Tensors) -> Tensors:
        return torch._foreach_add(torch._foreach_abs(params), self.eta)

    def direction(self, params: Tensors, grads: Tensors) -> Tensors:
        return torch._foreach_mul(grads, self._scaling(params))

    def to_weights(self, params: Tensors, directions: Tensors) -> Tensors:
        return torch._foreach_mul(directions, self._scaling(params))
