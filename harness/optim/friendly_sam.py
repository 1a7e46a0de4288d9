"""F-SAM, Friendly SAM (Li et al., CVPR 2024): ascend along the gradient minus its running
mean, which removes the full-batch component of the noise-free direction.

Paper (``convention: paper``, the default): m_t = lmbda m_{t-1} + (1 - lmbda) g_t with
m_0 = 0, d_t = g_t - sigma m_t. Reference code (nblt/F-SAM, ``pytorch_optimizer.FriendlySAM``;
``convention: reference``): m_1 = g_1 and d_1 = g_1, then d_t = g_t - sigma m_{t-1} BEFORE
the mean is updated. With sigma = 1 the two directions differ only by the factor lmbda
(t >= 2), so at lam = 1 (normalised) they agree; with lam < 1 or sigma != 1 they differ.
e = rho (1 - lam + lam / (||d|| + 1e-12)) d.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from harness.optim.base import Tensors, TwoPassSAM, check_choice, check_number

CONVENTIONS = ("paper", "reference")


class FriendlySAM(TwoPassSAM):
    HYPER: ClassVar[dict[str, Any]] = {"sigma": 1.0, "lmbda": 0.9, "convention": "paper"}

    def check_hyper(self) -> None:
        check_number("friendly_sam", "sigma", self.sigma, 0.0)
        check_number("friendly_sam", "lmbda", self.lmbda, 0.0, 1.0)
        check_choice("friendly_sam", "convention", self.convention, CONVENTIONS)

    def direction(self, params: Tensors, grads: Tensors) -> Tensors:
        out = []
        for p, g in zip(params, grads):
            state = self.state[p]
            if self.convention == "reference":
                if "fsam_m" not in state:
                    state["fsam_m"] = g.clone()
                    out.append(g)
                    continue
                out.append(g - self.sigma * state["fsam_m"])
                state["fsam_m"].mul_(self.lmbda).add_(g, alpha=1.0 - self.lmbda)
            else:
                m = state.setdefault("fsam_m", torch.zeros_like(g))
                m.mul_(self.lmbda).add_(g, alpha=1.0 - self.lmbda)
                out.append(g - self.sigma * m)
        return out
