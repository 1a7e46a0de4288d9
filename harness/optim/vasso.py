"""VaSSO, variance suppressed SAM (Li & Giannakis, NeurIPS 2023), and Unified VaSSO.

The direction is an EMA of the gradients, d_t = (1 - theta) d_{t-1} + theta g_t with
d_1 = g_1, and e = rho d_t / (||d_t|| + 1e-7), as in the authors' code (BingcongLi/VaSSO,
``solver/vasso.py``: the same initialisation, theta and epsilon). Unified VaSSO ascends along
rho (1 - lam + lam / (||d_t|| + 1e-7)) d_t: the reading of the Unified SAM paper's
Tables 4-5, not checked against code of theirs (none is public for it).
"""

from __future__ import annotations

from typing import Any, ClassVar

from harness.optim.base import Tensors, TwoPassSAM, check_number


class VaSSO(TwoPassSAM):
    EPS: ClassVar[float] = 1e-7
    HYPER: ClassVar[dict[str, Any]] = {"theta": 0.9}

    def check_hyper(self) -> None:
        check_number("vasso", "theta", self.theta, 0.0, 1.0)

    def direction(self, params: Tensors, grads: Tensors) -> Tensors:
        out = []
        for p, g in zip(params, grads):
            state = self.state[p]
            if "vasso_d" not in state:
                state["vasso_d"] = g.clone()
            else:
                state["vasso_d"].mul_(1.0 - self.theta).add_(g, alpha=self.theta)
            out.append(state["vasso_d"])
        return out
