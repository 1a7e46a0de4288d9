"""``sambench bench``: the maintained performance suite, one module per measurement, each
against its outside reference measured in the same run (docs/performance.md).

| item | module | what, against what |
|---|---|---|
| 1 | step | SAM step vs the two-pass floor, pytorch_optimizer's SAM and SGD |
| 2 | update | SAM update logic vs SGD's update, pytorch_optimizer, a pointer-swap restore |
| 3 | runner | trial runner vs a bare loop |
| 4 | data_path | on-device batches vs a DataLoader |
| 5 | sweep | Ray sweep overhead, growth, parallel efficiency vs sequential |
| 6 | synthetic | numba engine vs the reference code's numpy loop |
| 7 | store_io | store and analysis.load at scale vs pyarrow; report time |
| 8 | hessian | HVP and lam_max vs PyHessian |
| 9 | matrix | precision/layout/compile settings vs fp32 eager |
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from harness.bench.common import SIZES, Context, Measurement
from harness.errors import ConfigError

SUITE = ("step", "update", "runner", "data_path", "sweep", "synthetic", "store_io", "hessian", "matrix")
RESULTS_ROOT = Path(__file__).resolve().parents[2] / "benchmarks" / "perf" / "results"


def run_suite(size: str = "quick", device: str = "cpu", out: str | Path | None = None,
              only: Sequence[str] = SUITE, threads: int | None = None, log=print) -> Path:
    """Run the measurements in ``only``, write Parquet and figures into ``out`` (default
    ``benchmarks/perf/results/<machine>/``) and return that folder. ``threads`` sets torch's
    intra-op threads (default: torch's own choice); on a shared machine 1 avoids threads
    spinning on cores another process holds."""
    from harness.bench.machine import machine_facts, machine_name
    from harness.bench.results import write_results

    if size not in SIZES:
        raise ConfigError("size", size, ", ".join(SIZES))
    if device not in ("cpu", "cuda"):
        raise ConfigError("--device", device, "cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device", device, "cpu (this machine has no CUDA device)")
    for name in only:
        if name not in SUITE:
            raise ConfigError("--only", name, ", ".join(SUITE))
    if threads is not None:
        if threads < 1:
            raise ConfigError("--threads", threads, "an integer >= 1")
        torch.set_num_threads(threads)
    ctx = Context(size=size, device=torch.device(device))
    facts = machine_facts(ctx.device)
    folder = Path(out) if out is not None else RESULTS_ROOT / machine_name(facts)
    measurements: list[Measurement] = []
    seconds: dict[str, float] = {}
    failed: list[str] = []
    for name in only:
        module = importlib.import_module(f"harness.bench.{name}")
        log(f"[{module.ITEM}] {name} ...")
        start = time.perf_counter()
        try:
            measurements += module.run(ctx)
        except Exception as error:  # one broken measurement must not lose the others' results
            failed.append(f"{name}: {type(error).__name__}: {error}")
            log(f"[{module.ITEM}] {name}: FAILED: {failed[-1]}")
        seconds[name] = time.perf_counter() - start
        log(f"[{module.ITEM}] {name}: {seconds[name]:.1f} s")
    facts |= {"size": size, "suite_seconds": sum(seconds.values()), "failed": "; ".join(failed) or None}
    write_results(folder, measurements, facts, seconds)
    return folder


if __name__ == "__main__":  # python -m harness.bench [size] [device]
    print(run_suite(*sys.argv[1:3]))
