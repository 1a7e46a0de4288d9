"""LookSAM (Liu et al., CVPR 2022): the SAM gradient every k steps, a cheap stand-in between.

On steps 1, k + 1, 2k + 1, ... it takes SAM's two passes (lam mixes that ascent as for SAM)
and remembers g_v = g_s - (<g, g_s> / ||g||^2) g, the part of the SAM gradient g_s
orthogonal to the clean gradient g. On the other steps it takes ONE gradient g and steps
along g + alpha (||g|| / ||g_v||) g_v: those steps cost one gradient evaluation, which the
records' ``grad_evals`` show.

The paper's norms and projection are global (``convention: paper``, default). The
reference ``pytorch_optimizer.LookSAM`` works per parameter tensor and adds 1e-8 to ||g_v||
(``convention: reference``); it also recomputes the clean gradient on reuse steps, which
gives the same numbers at twice the cost.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from harness.optim.base import Tensors, TwoPassSAM, check_choice, check_number, dot, global_norm

CONVENTIONS = ("paper", "reference")


class LookSAM(TwoPassSAM):
    HYPER: ClassVar[dict[str, Any]] = {"k": 5, "alpha": 0.7, "convention": "paper"}
    KEEP_CLEAN_GRADS: ClassVar[bool] = True

    def check_hyper(self) -> None:
        check_number("looksam", "k", self.k, 1, integer=True)
        check_number("looksam", "alpha", self.alpha, 0.0)
        check_choice("looksam", "convention", self.convention, CONVENTIONS)

    def ascends_now(self) -> bool:
        return (self.t - 1) % self.k == 0

    def adjust_descent(self, params: Tensors, clean_grads: dict[torch.Tensor, torch.Tensor] | None) -> None:
        if clean_grads is not None:  # a full step: p.grad is g_s, remember g_v
            params = [p for p in params if p in clean_grads]
            g, g_s = [clean_grads[p] for p in params], [p.grad for p in params]
            if self.convention == "paper":
                coef = dot(g, g_s) / (dot(g, g) + self.eps)
                g_v = torch._foreach_sub(g_s, torch._foreach_mul(g, coef))
            else:
                g_v = []
                for gi, gsi in zip(g, g_s):
                    unit = gi / gi.norm().clamp_min(self.eps)
                    gs_norm = gsi.norm()
                    g_v.append(gsi - gs_norm * (unit * (gsi / gs_norm.clamp_min(self.eps))).sum() * unit)
            for p, v in zip(params, g_v):
                self.state[p]["looksam_gv"] = v
            return
        params = [p for p in params if "looksam_gv" in self.state[p]]
        if not params:
            return
        grads, g_v = [p.grad for p in params], [self.state[p]["looksam_gv"] for p in params]
        if self.convention == "paper":
            scale = self.alpha * global_norm(grads) / (global_norm(g_v) + self.eps)
            torch._foreach_add_(grads, torch._foreach_mul(g_v, scale))
        else:
            for gi, v in zip(grads, g_v):
                gi.add_(gi.norm() / (v.norm() + 1e-8) * v, alpha=self.alpha)
