"""Item 9: one SAM step under the precision/layout/compile settings a trial can choose
(fp32, bf16, bf16 + channels_last, and the same compiled), against fp32 eager, through
the trainer's own ``Precision`` (autocast on both passes, converted batches).

torch.compile is measured on CUDA and in the full CPU suite: its first compilation takes
about 40 s on a 2-core CPU, more than its share of the quick suite's 5 minutes. On a CPU
without native bf16 (no AVX-512 BF16 / AMX) bf16 is emulated and slower than fp32; the
matrix says what this machine does, the GPU script what a GPU does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.bench.common import Context, Headline, Measurement, alternate
from harness.bench.step import RHO, SGD, batch, model
from harness.optim import build_optimizer
from harness.precision import Precision

ITEM, NAME = 9, "matrix"
VARIANTS = {  # name -> (precision, channels_last, compile)
    "fp32": ("fp32", False, False),
    "bf16": ("bf16", False, False),
    "bf16 + channels_last": ("bf16", True, False),
    "bf16 + channels_last + compile": ("bf16", True, True),
}


def sam_step(ctx: Context, name: str, width: int | None, size: int, precision: str, channels_last: bool,
             compile: bool, optimizer: str = "sam", depth: int | None = None):
    """A callable running one step of ``name`` as a trial with these settings would."""
    net = model(ctx, name, width, depth)
    numeric = Precision(precision, ctx.device, channels_last=channels_last, compile=compile)
    forward = numeric.prepare_model(net, name)
    opt = build_optimizer(optimizer, net.parameters(), rho=RHO if optimizer != "sgd" else None, model=net, **SGD)
    x, y = batch(ctx, size)

    def step() -> None:
        inputs = numeric.prepare_inputs(x)

        def closure() -> torch.Tensor:
            with numeric.autocast():
                loss = F.cross_entropy(forward(inputs), y)
            numeric.backward(loss)
            return loss

        numeric.step(opt, closure)

    return step


def run(ctx: Context) -> list[Measurement]:
    with_compile = ctx.device.type == "cuda" or ctx.size == "full"
    name, width, size = "cnn", ctx.pick(8, 16, 32), ctx.pick(8, 16, 128)
    sides = {label: sam_step(ctx, name, width, size, *settings) for label, settings in VARIANTS.items()
             if with_compile or not settings[2]}
    warmup = 3 if with_compile else ctx.pick(1, 2, 3)  # compile: the first steps build both graphs
    values = alternate(ctx, sides, repeats=ctx.pick(2, 4, 20), warmup=warmup)
    headlines = [Headline(label, "fp32") for label in sides if label != "fp32"]
    note = "" if with_compile else "compile left out (CPU quick suite); see the module docstring"
    return [Measurement(ITEM, NAME, f"{name} width {width}, batch {size}, SAM step", values, headlines,
                        warmup=warmup, note=note)]
