"""Item 2: the SAM update logic alone (gradients given), on ResNet-18's parameter shapes:
UnifiedSAM's first_step + second_step against SGD's own update, pytorch_optimizer's SAM,
and a pointer-swap SAM written here as the reference for the restore.

No forward or backward runs: the gradients are put in place outside the timed calls,
standing in for the backward passes. Pointer swap: instead of copying x aside and back,
the ascent writes x + e into a spare buffer and swaps it with ``p.data``; the restore is
the swap back, no copy. Whatever restore ``UnifiedSAM`` implements is what is measured.
"""

from __future__ import annotations

from typing import Callable

import torch
import torchvision

from harness.bench.common import Context, Headline, Measurement, alternate, timed
from harness.bench.step import RHO, SGD
from harness.optim import UnifiedSAM

ITEM, NAME = 2, "update"


class PointerSwapSAM:
    """The reference: SAM over SGD whose restore swaps tensors instead of copying them."""

    def __init__(self, params: list[torch.nn.Parameter], rho: float = RHO, eps: float = 1e-12):
        self.params, self.rho, self.eps = params, rho, eps
        self.base = torch.optim.SGD(params, **SGD)
        self.spare = [torch.empty_like(p) for p in params]

    @torch.no_grad()
    def first_step(self) -> None:
        grads = [p.grad for p in self.params]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        torch._foreach_copy_(self.spare, self.params)
        torch._foreach_add_(self.spare, torch._foreach_mul(grads, self.rho / (norm + self.eps)))
        self._swap()  # p now holds x + e, the spare holds x
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def second_step(self) -> None:
        self._swap()  # x is back, untouched: no copy
        self.base.step()

    def _swap(self) -> None:
        for i, p in enumerate(self.params):
            p.data, self.spare[i] = self.spare[i], p.data


def _params(ctx: Context, grads: list[torch.Tensor] | None = None) -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    params = [p.to(ctx.device) for p in torchvision.models.resnet18(num_classes=10).parameters()]
    params = [torch.nn.Parameter(p.detach()) for p in params]
    for i, p in enumerate(params):
        p.grad = torch.randn_like(p) * 1e-3 if grads is None else grads[i].clone()
    return params


def run(ctx: Context) -> list[Measurement]:
    from pytorch_optimizer import SAM

    sgd_params = _params(ctx)
    grads = [p.grad for p in sgd_params]
    sgd = torch.optim.SGD(sgd_params, **SGD)
    sam_params, po_params, swap_params = (_params(ctx, grads) for _ in range(3))
    sam = UnifiedSAM(sam_params, rho=RHO, lam=1.0, **SGD)
    po = SAM(po_params, torch.optim.SGD, rho=RHO, **SGD)
    swap = PointerSwapSAM(swap_params)
    held: list[torch.Tensor] = []

    def refill(params: list[torch.nn.Parameter]) -> None:
        """A backward pass's stand-in (untimed): fresh gradients, the old ones kept alive
        so that freeing memory happens here, not inside the timed calls."""
        held[:] = [g.clone() for g in grads]
        for p, g in zip(params, held):
            p.grad = g

    def two_phase(opt: object, params: list[torch.nn.Parameter]) -> Callable[[], float]:
        def call() -> float:
            refill(params)
            seconds = timed(ctx, opt.first_step)
            refill(params)
            return seconds + timed(ctx, opt.second_step)
        return call

    sides = {
        "SGD update": lambda: timed(ctx, sgd.step),
        "UnifiedSAM first+second": two_phase(sam, sam_params),
        "pytorch_optimizer SAM first+second": two_phase(po, po_params),
        "pointer-swap SAM first+second": two_phase(swap, swap_params),
    }
    values = alternate(ctx, sides, repeats=ctx.pick(3, 15, 50), warmup=ctx.pick(1, 3, 5))
    headlines = [Headline("UnifiedSAM first+second", "pointer-swap SAM first+second", goal=1.0),
                 Headline("UnifiedSAM first+second", "pytorch_optimizer SAM first+second"),
                 Headline("UnifiedSAM first+second", "SGD update")]
    n = sum(p.numel() for p in sgd_params)
    return [Measurement(ITEM, NAME, f"resnet18 shapes, {len(sgd_params)} tensors, {n / 1e6:.1f}M parameters",
                        values, headlines, warmup=ctx.pick(1, 3, 5))]
