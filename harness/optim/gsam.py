"""GSAM, surrogate gap guided SAM (Zhuang et al., ICLR 2022).

SAM's ascent (lam mixes it as for SAM); the descent uses g_p - alpha g_perp, where g_p is
the gradient at x + e and g_perp = g - (<g, g_p> / ||g_p||^2) g_p is the part of the clean
gradient g orthogonal to g_p. The paper lets rho follow the lr schedule,
rho_t = rho_min + (rho - rho_min) lr_t / lr_max (lr_min = 0): set ``rho_min`` to do so;
without it rho stays as the groups say. Reference: juntang-zhuang/GSAM and
``pytorch_optimizer.GSAM`` (same decomposition and global norms).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from harness.optim.base import Tensors, TwoPassSAM, check_number, dot


class GSAM(TwoPassSAM):
    HYPER: ClassVar[dict[str, Any]] = {"alpha": 0.4, "rho_min": None}
    KEEP_CLEAN_GRADS: ClassVar[bool] = True

    def check_hyper(self) -> None:
        check_number("gsam", "alpha", self.alpha, 0.0, 1.0)
        if self.rho_min is not None:
            check_number("gsam", "rho_min", self.rho_min, 0.0)
        for group in self.param_groups:
            group.setdefault("lr_max", group.get("initial_lr", group["lr"]))

    def rho_at(self, group: dict[str, Any]) -> float:
        if self.rho_min is None or group["rho"] == 0:
            return group["rho"]
        return self.rho_min + (group["rho"] - self.rho_min) * group["lr"] / group["lr_max"]

    def adjust_descent(self, params: Tensors, clean_grads: dict[torch.Tensor, torch.Tensor] | None) -> None:
        if clean_grads is None:
            return
        params = [p for p in params if p in clean_grads]
        g = [clean_grads[p] for p in params]
        g_p = [p.grad for p in params]
        coef = dot(g, g_p) / (dot(g_p, g_p) + self.eps)
        perp = torch._foreach_sub(g, torch._foreach_mul(g_p, coef))
        torch._foreach_add_(g_p, perp, alpha=-self.alpha)
