"""Item 1: a whole SAM step against the two-pass floor, pytorch_optimizer's SAM and an
SGD step, on the small CNN (batch 128) and CIFAR ResNet-18 (batch 32 on CPU, 128 on GPU).

The floor is what any SAM must do: two forward-backward passes and one SGD update,
written as plain torch with nothing else. The ratio SAM / floor is sambench's own
overhead (ascent, exact restore, BatchNorm freeze, closure calls).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from harness.bench.common import Context, Headline, Measurement, alternate
from harness.models import build_model
from harness.optim import build_optimizer

ITEM, NAME = 1, "step"
SGD = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
RHO = 0.05


def batch(ctx: Context, size: int, shape: tuple[int, ...] = (3, 32, 32)) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random CIFAR-shaped batch on the device."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(size, *shape, generator=generator).to(ctx.device)
    return x, torch.randint(0, 10, (size,), generator=generator).to(ctx.device)


def model(ctx: Context, name: str, width: int | None = None, depth: int | None = None) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, (3, 32, 32), 10, width=width, depth=depth).to(ctx.device)


def step_sides(ctx: Context, name: str, width: int | None, size: int) -> dict[str, Callable[[], None]]:
    """sambench SAM and SGD, the floor and pytorch_optimizer.SAM, each on its own model copy."""
    from pytorch_optimizer import SAM

    x, y = batch(ctx, size)
    sides: dict[str, Callable[[], None]] = {}
    for optimizer in ("sam", "sgd"):
        net = model(ctx, name, width)
        opt = build_optimizer(optimizer, net.parameters(), rho=RHO if optimizer == "sam" else None,
                              model=net, **SGD)

        def closure(net: torch.nn.Module = net) -> torch.Tensor:
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            return loss

        sides[f"sambench {optimizer}"] = lambda opt=opt, closure=closure: opt.step(closure)

    net = model(ctx, name, width)
    sgd = torch.optim.SGD(net.parameters(), **SGD)

    def floor(net: torch.nn.Module = net) -> None:
        for _ in range(2):
            sgd.zero_grad()
            F.cross_entropy(net(x), y).backward()
        sgd.step()

    sides["two-pass floor"] = floor
    net = model(ctx, name, width)
    reference = SAM(net.parameters(), torch.optim.SGD, rho=RHO, **SGD)

    def pytorch_optimizer_sam(net: torch.nn.Module = net) -> None:
        reference.zero_grad()
        F.cross_entropy(net(x), y).backward()
        reference.first_step(zero_grad=True)
        F.cross_entropy(net(x), y).backward()
        reference.second_step(zero_grad=True)

    sides["pytorch_optimizer SAM"] = pytorch_optimizer_sam
    return sides


HEADLINES = [Headline("sambench sam", "two-pass floor", goal=1.02),
             Headline("sambench sam", "pytorch_optimizer SAM", goal=1.0),
             Headline("sambench sam", "sambench sgd")]


def run(ctx: Context) -> list[Measurement]:
    cases = [("cnn", ctx.pick(8, 16, 32), ctx.pick(16, 128, 128)),
             ("resnet18", None, ctx.pick(4, 16, 128 if ctx.device.type == "cuda" else 32))]
    out = []
    for name, width, size in cases:
        sides = step_sides(ctx, name, width, size)
        values = alternate(ctx, sides, repeats=ctx.pick(2, 5, 20), warmup=ctx.pick(1, 1, 5))
        label = f"{name}{'' if width is None else f' width {width}'}, batch {size}"
        out.append(Measurement(ITEM, NAME, label, values, HEADLINES, warmup=ctx.pick(1, 1, 5)))
    return out
