"""How much UnifiedSAM's own update logic costs, next to SGD's update and a per-parameter
loop SAM, and what a whole SAM training step costs next to an SGD step.

    .venv/bin/python benchmarks/optimizer_step.py

(1) Update logic only, on the parameter shapes of torchvision's resnet18(num_classes=10)
    (the CIFAR variant differs only in the stem): no forward/backward runs; gradients are
    put in place outside the timed calls, standing in for the backward passes.
    SGD: one base step. SAM: first_step + second_step (norm, ascent, exact restore, base
    step). Loop SAM: the same update with one Python iteration per tensor.
(2) Whole step of harness.models' cnn, batch 128: step(closure) of sam vs sgd (two
    forward-backward passes against one, so about 2x is the floor).

Variants are interleaved within each repeat and the median over repeats is reported.
Runs in well under a minute on 2 idle cores. Wall-clock with 2 threads is only meaningful
when nothing else runs on the cores; on a busy machine compare with ``--threads 1``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
import torchvision

from harness.models import build_model
from harness.optim import UnifiedSAM, build_optimizer

SGD_KWARGS = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)


class LoopSAM:
    """SAM written the direct way: one Python iteration (and one allocation) per tensor."""

    def __init__(self, params: list[torch.nn.Parameter], rho: float = 0.05, eps: float = 1e-12):
        self.params, self.rho, self.eps = params, rho, eps
        self.base = torch.optim.SGD(params, **SGD_KWARGS)
        self.old: dict[torch.Tensor, torch.Tensor] = {}

    @torch.no_grad()
    def first_step(self) -> None:
        norm = torch.norm(torch.stack([p.grad.norm(p=2) for p in self.params if p.grad is not None]), p=2)
        scale = self.rho / (norm + self.eps)
        for p in self.params:
            if p.grad is None:
                continue
            self.old[p] = p.data.clone()
            p.add_(p.grad * scale)

    @torch.no_grad()
    def second_step(self) -> None:
        for p in self.params:
            if p in self.old:
                p.data.copy_(self.old[p])
        self.base.step()


Phase = tuple[Callable[[], None] | None, Callable[[], None]]  # (untimed set-up, timed call)


def interleaved_median_ms(variants: dict[str, list[Phase]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median over repeats of each variant's timed calls, the variants taking turns."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(warmup + repeats):
        for name, phases in variants.items():
            elapsed = 0.0
            for setup, call in phases:
                if setup is not None:
                    setup()
                start = time.perf_counter()
                call()
                elapsed += time.perf_counter() - start
            if repeat >= warmup:
                times[name].append(elapsed * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def resnet18_params(grads: list[torch.Tensor] | None = None) -> list[torch.nn.Parameter]:
    """Fresh resnet18(num_classes=10) parameters with gradients filled in."""
    params = list(torchvision.models.resnet18(num_classes=10).parameters())
    for i, p in enumerate(params):
        p.grad = torch.randn_like(p) * 1e-3 if grads is None else grads[i].clone()
    return params


def update_logic() -> None:
    sgd_params = resnet18_params()
    grads = [p.grad for p in sgd_params]
    sam_params, loop_params = resnet18_params(grads), resnet18_params(grads)
    sgd = torch.optim.SGD(sgd_params, **SGD_KWARGS)
    sam = UnifiedSAM(sam_params, rho=0.05, lam=1.0, **SGD_KWARGS)
    loop = LoopSAM(loop_params)

    held: list[torch.Tensor] = []

    def refill() -> None:
        """Stand-in for a backward pass, as first_step uses up and drops the gradients.
        ``held`` keeps them alive so that freeing memory happens here, untimed, as SGD's
        timed step never frees gradients either."""
        held[:] = [g.clone() for g in grads]
        for p, g in zip(sam_params, held):
            p.grad = g

    variants: dict[str, list[Phase]] = {
        "SGD.step": [(None, sgd.step)],
        "UnifiedSAM first+second": [(refill, sam.first_step), (refill, sam.second_step)],
        "loop SAM": [(None, loop.first_step), (None, loop.second_step)],
    }
    ms = interleaved_median_ms(variants, repeats=15)
    n = sum(p.numel() for p in sgd_params)
    print(f"(1) update logic only, resnet18(num_classes=10): {len(sgd_params)} tensors, {n / 1e6:.1f}M parameters")
    for name, value in ms.items():
        print(f"    {name:26s} {value:7.2f} ms   {value / ms['SGD.step']:5.2f} x SGD")


def whole_step() -> None:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(128, 3, 32, 32, generator=generator)
    targets = torch.randint(0, 10, (128,), generator=generator)
    variants: dict[str, list[Phase]] = {}
    for name, rho in (("sgd", None), ("sam", 0.05)):
        torch.manual_seed(0)
        model = build_model("cnn", input_shape=(3, 32, 32), num_classes=10)
        opt = build_optimizer(name, model.parameters(), rho=rho, model=model, **SGD_KWARGS)

        def closure(model: torch.nn.Module = model) -> torch.Tensor:
            loss = F.cross_entropy(model(inputs), targets)
            loss.backward()
            return loss

        variants[name] = [(None, lambda opt=opt, closure=closure: opt.step(closure))]
    ms = interleaved_median_ms(variants, repeats=5, warmup=1)
    print("(2) whole training step, cnn (harness.models), batch 128, step(closure)")
    for name, value in ms.items():
        print(f"    {name:26s} {value:7.2f} ms   {value / ms['sgd']:5.2f} x SGD")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2 on the reference CPU)")
    threads = parser.parse_args().threads
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {threads} threads")
    update_logic()
    whole_step()


if __name__ == "__main__":
    main()
