"""Item 8: what sharpness costs, against PyHessian 0.1 on the same model and samples.

- One Hessian-vector product: sambench's ``HessianOperator.matvec`` (forward, gradient
  with its graph, and the double backward, per chunk: memory bounded by one chunk)
  against PyHessian's ``hessian_vector_product`` (one backward through a graph it keeps
  from construction).
- lam_max: ``measure_sharpness`` (Lanczos, 1e-6 relative residual) against PyHessian's
  ``eigenvalues(top_n=1)`` (power iteration, 1e-3 relative change); the HVPs each spent
  are reported beside the seconds. The accuracy of both is the subject of
  ``benchmarks/sharpness_accuracy.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.bench.common import Context, Headline, Measurement, alternate, timed
from harness.models import build_model
from harness.sharpness import HessianOperator, measure_sharpness

ITEM, NAME = 8, "hessian"


def run(ctx: Context) -> list[Measurement]:
    from pyhessian import hessian
    from pyhessian.utils import hessian_vector_product

    samples, width = ctx.pick(64, 128, 2048), ctx.pick(8, 8, 32)
    torch.manual_seed(0)
    model = build_model("cnn", (3, 32, 32), 10, width=width).to(ctx.device).eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 3, 32, 32, generator=generator).to(ctx.device)
    y = torch.randint(0, 10, (samples,), generator=generator).to(ctx.device)
    op = HessianOperator(model, F.cross_entropy, x, y, batch_size=samples)
    reference = hessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=ctx.device.type == "cuda")
    v = torch.randn(op.dim, generator=generator).to(ctx.device)
    pieces = [piece.view_as(p) for piece, p in zip(v.split(op.sizes), op.leaves)]
    hvp = alternate(ctx, {
        "sambench HVP": lambda: op.matvec(v),
        "PyHessian HVP": lambda: hessian_vector_product(reference.gradsH, reference.params, pieces),
    }, repeats=ctx.pick(2, 3, 10), warmup=1)
    hvps: dict[str, float] = {}

    def ours() -> float:
        result: dict = {}
        seconds = timed(ctx, lambda: result.update(measure_sharpness(model, F.cross_entropy, x, y, seed=0,
                                                                     batch_size=samples)))
        hvps["sambench lam_max"] = result["lam_max_hvps"]
        return seconds

    def theirs() -> float:
        torch.manual_seed(0)
        return timed(ctx, lambda: reference.eigenvalues(top_n=1))

    top = alternate(ctx, {"sambench lam_max (Lanczos)": ours, "PyHessian lam_max (power)": theirs},
                    repeats=ctx.pick(1, 1, 3), warmup=0)
    case = f"cnn width {width}, {samples} samples, {op.dim:,} parameters"
    return [
        Measurement(ITEM, NAME, f"one HVP, {case}", hvp, [Headline("sambench HVP", "PyHessian HVP")], warmup=1),
        Measurement(ITEM, NAME, f"lam_max, {case}", top,
                    [Headline("sambench lam_max (Lanczos)", "PyHessian lam_max (power)")], warmup=0,
                    extra={"sambench_hvps": hvps["sambench lam_max"]}),
    ]
