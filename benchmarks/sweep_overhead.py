"""Ray Tune scheduling overhead and parallel efficiency of sambench sweeps.

1. Fit time of 16 trivial trials (10 full-batch steps of a tiny least-squares problem)
   with actor reuse: the per-trial cost of scheduling, reporting and writing Parquet.
2. Parallel efficiency: 8 equal CPU-bound trials (digits MLP, ~10 s each) through
   ``run_sweep`` with one CPU each, next to the same 8 trials run one after another in one
   fresh Python process with ``run_trial``. Both sides pay their imports (torch, its
   dynamo, sklearn: ~8 s here) once per process: the sweep in each of its two workers,
   the baseline once. The ratio sweep / sequential is 0.5 at best on 2 cores; the
   steady-state ratio leaves out the time before the first trial starts.

Ray is started once, before any clock, as a user's sweep would find it.

    .venv/bin/python benchmarks/sweep_overhead.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import ray

from harness import store
from harness.spec import parse_spec
from harness.sweep import SweepOptions, run_sweep

TRIVIAL = """
name: trivial
dataset: leastsq
model: linear
n_samples: 20
dim: 20
optimizer: sam
step_rule: v2
sampler: full
batch_size: 20
iterations: 10
eval_every: 10
grid:
  seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
"""

CPU_BOUND = """
name: parallel
dataset: digits
model: mlp
width: 256
epochs: 60
batch_size: 32
lr: 0.05
optimizer: sam
rho: 0.05
grid:
  seed: [0, 1, 2, 3, 4, 5, 6, 7]
resources: {cpu: 1}
"""


def timed_sweep(text: str, root: str) -> float:
    start = time.perf_counter()
    run_sweep(parse_spec(text), root, SweepOptions(quiet=True))
    return time.perf_counter() - start


SEQUENTIAL = """
import time
import torch
start = time.perf_counter()
from harness.spec import parse_spec
from harness.trial import run_trial
torch.set_num_threads(1)
for cfg in parse_spec({text!r}).trials:
    for _ in run_trial(cfg):
        pass
print(time.perf_counter() - start)
"""


def main() -> None:
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as root:
        timed_sweep(TRIVIAL.replace("name: trivial", "name: warm-up"), root)  # numba cache, imports
        trivial = timed_sweep(TRIVIAL, root)
        print(f"16 trivial trials: {trivial:.1f} s fit, {trivial / 16 * 1000:.0f} ms per trial")

        started = datetime.now(timezone.utc)
        swept = timed_sweep(CPU_BOUND, root)
        trials = store.read_trials(Path(root) / "parallel")
        ends = (trials["finished_at"] - started).dt.total_seconds()
        first_start = (ends - trials["time_total"]).min()
    sequential = float(subprocess.run([sys.executable, "-c", SEQUENTIAL.format(text=CPU_BOUND)],
                                      capture_output=True, text=True, check=True).stdout)
    work = trials["time_total"].sum()
    print(f"8 CPU-bound trials on {os.cpu_count()} cores: sweep {swept:.1f} s "
          f"(first trial started after {first_start:.1f} s), one after another {sequential:.1f} s")
    print(f"ratio sweep / sequential {swept / sequential:.2f}; steady state "
          f"{(swept - first_start) / work:.2f} (floor 0.5)")


if __name__ == "__main__":
    main()
