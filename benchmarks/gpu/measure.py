"""The one-shot GPU measurement behind benchmarks/gpu/run.sh (docs/performance.md).

1. WRN-28-10 SAM and SGD steps on CIFAR-shaped synthetic data (batch 128) across fp32
   (TF32), bf16, bf16 + channels_last and bf16 + channels_last + compile. Each variant
   times a few hundred steps, in blocks that alternate between the variants, and the
   epoch time is EXTRAPOLATED to 50,000 images (391 steps); the model's FLOPs come from
   torch's FlopCounterMode and give the fraction of the bf16 peak reached.
2. The suite's step (ResNet-18 and the small CNN at batch 128), update and data-path
   measurements on the GPU.
3. Packing: 1, 2 and 4 concurrent small trials (PreActResNet-18, batch 128, SAM), each its
   own process as Ray's fractional GPUs run them, all timed over the same window; total
   steps/s against one alone, and peak memory per process.
4. lam_max of WRN-28-10 on 2,048 samples: seconds, HVPs, seconds per HVP, peak memory.

``--tiny`` runs every part on the CPU with tiny models and sizes: it proves the script
end to end, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from harness.bench import RESULTS_ROOT  # noqa: E402
from harness.bench import data_path, step, update  # noqa: E402
from harness.bench.common import Context, Headline, Measurement, alternate  # noqa: E402
from harness.bench.machine import machine_facts, machine_name  # noqa: E402
from harness.bench.matrix import VARIANTS, sam_step  # noqa: E402
from harness.bench.results import write_results  # noqa: E402

IMAGES, BATCH = 50_000, 128
BF16_PEAK_TFLOPS = {"h200": 989.0, "h100": 989.0, "a100": 312.0}  # dense, no sparsity


def forward_flops(ctx: Context, name: str, width: int | None, depth: int | None, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    net = step.model(ctx, name, width, depth)
    x, _ = step.batch(ctx, size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x)
    return counter.get_total_flops() / size


def wrn_epochs(ctx: Context, tiny: bool) -> list[Measurement]:
    width, depth, size = (1, 10, 8) if tiny else (10, 28, BATCH)
    block, repeats = (2, 2) if tiny else (20, 10)  # 200 timed steps a variant on the GPU
    out = []
    flops = forward_flops(ctx, "wrn", width, depth, size)
    steps_per_epoch = -(-IMAGES // size)
    for optimizer in ("sam", "sgd"):
        steps = {label: sam_step(ctx, "wrn", width, size, *settings, optimizer=optimizer, depth=depth)
                 for label, settings in VARIANTS.items()}

        def blockwise(fn=None):
            return lambda fn=fn: [fn() for _ in range(block)]

        sides = {label: blockwise(fn) for label, fn in steps.items()}
        values = alternate(ctx, sides, repeats=repeats, warmup=2)
        epoch = {label: [v / block * steps_per_epoch for v in vals] for label, vals in values.items()}
        passes = 2 if optimizer == "sam" else 1
        epoch_flops = 3 * flops * IMAGES * passes  # forward + backward (2x forward) per pass
        extra = {"forward_gflops_per_image": flops / 1e9, "epoch_pflops": epoch_flops / 1e15,
                 "timed_steps_per_variant": block * repeats, "steps_per_epoch": steps_per_epoch}
        peak = _peak_tflops(ctx)
        for label, vals in epoch.items():
            median = sorted(vals)[len(vals) // 2]
            extra[f"fraction_of_bf16_peak {label}"] = (epoch_flops / median / 1e12 / peak) if peak else float("nan")
        out.append(Measurement(
            10, "gpu_wrn", f"WRN-{depth}-{width} {optimizer.upper()} epoch, batch {size}", epoch,
            [Headline(label, "fp32") for label in epoch if label != "fp32"], warmup=2 * block,
            unit="s/epoch (extrapolated)",
            note=f"{block * repeats} timed steps per variant, extrapolated to {IMAGES:,} images "
                 f"({steps_per_epoch} steps); goal for SAM bf16 + channels_last: <= 10 s on an H200",
            extra=extra))
    return out


def _peak_tflops(ctx: Context) -> float | None:
    if ctx.device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(ctx.device).lower()
    return next((tflops for key, tflops in BF16_PEAK_TFLOPS.items() if key in name), None)


WORKER = """
import json, sys, time, torch
sys.path.insert(0, {root!r})
from harness.bench.common import Context
from harness.bench.matrix import sam_step
ctx = Context(device=torch.device({device!r}))
run = sam_step(ctx, {model!r}, {width!r}, {size}, "fp32", False, False)
for _ in range(3):
    run()
ctx.sync()
while time.time() < {start_at}:
    time.sleep(0.01)
steps, start = 0, time.perf_counter()
while time.perf_counter() - start < {window}:
    run(); steps += 1
ctx.sync()
seconds = time.perf_counter() - start
peak = torch.cuda.max_memory_allocated() / 2 ** 20 if ctx.device.type == "cuda" else float("nan")
print(json.dumps({{"steps_per_s": steps / seconds, "peak_mib": peak}}))
"""


def packing(ctx: Context, tiny: bool) -> list[Measurement]:
    model, width, size, window = ("cnn", 8, 16, 3.0) if tiny else ("preact_resnet18", None, BATCH, 30.0)
    counts = (1, 2) if tiny else (1, 2, 4)
    throughput: dict[str, list[float]] = {}  # seconds per step of all N together
    extra: dict[str, float] = {}
    for n in counts:
        code = WORKER.format(root=str(ROOT), device=str(ctx.device), model=model, width=width, size=size,
                             start_at=time.time() + (20 if tiny else 60), window=window)
        procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
                 for _ in range(n)]
        results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        throughput[f"{n} concurrent"] = [1.0 / sum(r["steps_per_s"] for r in results)]
        extra[f"peak_mib_per_process {n} concurrent"] = max(r["peak_mib"] for r in results)
    return [Measurement(11, "gpu_packing", f"{model} SAM, batch {size}: N processes together",
                        throughput, [Headline(f"{n} concurrent", "1 concurrent", goal=2.5 if n == 4 else None,
                                              speedup=True) for n in counts if n > 1],
                        warmup=3, unit="s/step (all processes together)",
                        note="ratio: total steps/s of N processes over one alone; goal for 4: >= 2.5",
                        extra=extra)]


def lam_max(ctx: Context, tiny: bool) -> list[Measurement]:
    from harness.sharpness import measure_sharpness

    width, depth, samples, chunk = (1, 10, 32, 16) if tiny else (10, 28, 2048, 512)
    net = step.model(ctx, "wrn", width, depth)
    x, y = step.batch(ctx, samples)
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    ctx.sync()
    start = time.perf_counter()
    result = measure_sharpness(net, F.cross_entropy, x, y, seed=0, batch_size=chunk)
    ctx.sync()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(ctx.device) / 2 ** 20 if ctx.device.type == "cuda" else float("nan")
    return [Measurement(12, "gpu_lam_max", f"WRN-{depth}-{width} lam_max, {samples} samples, chunks of {chunk}",
                        {"lam_max (Lanczos)": [seconds]}, [], warmup=0, note="reported alone",
                        extra={"hvps": result["lam_max_hvps"], "seconds_per_hvp": seconds / result["lam_max_hvps"],
                               "peak_mib": peak, "lam_max": result["lam_max"]})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU, tiny sizes: proves the script, measures nothing")
    parser.add_argument("--out", help="default: benchmarks/perf/results/<gpu-name>/")
    args = parser.parse_args()
    if not args.tiny and not torch.cuda.is_available():
        sys.exit("benchmarks/gpu/measure.py: error: no CUDA device (use --tiny for the CPU check)")
    ctx = Context(size="tiny" if args.tiny else "full", device=torch.device("cpu" if args.tiny else "cuda"))
    facts = machine_facts(ctx.device)
    folder = Path(args.out) if args.out else RESULTS_ROOT / machine_name(facts)
    measurements, seconds = [], {}
    parts = (("wrn_epochs", lambda: wrn_epochs(ctx, args.tiny)),
             ("suite", lambda: step.run(ctx) + update.run(ctx) + data_path.run(ctx)),
             ("packing", lambda: packing(ctx, args.tiny)), ("lam_max", lambda: lam_max(ctx, args.tiny)))
    for name, part in parts:
        start = time.perf_counter()
        measurements += part()
        seconds[name] = time.perf_counter() - start
        print(f"{name}: {seconds[name]:.1f} s", flush=True)
    facts |= {"size": "gpu-tiny" if args.tiny else "gpu", "suite_seconds": sum(seconds.values())}
    write_results(folder, measurements, facts, seconds)
    print((folder / "summary.md").read_text(), end="")
    print(f"results: {folder}")


if __name__ == "__main__":
    main()
