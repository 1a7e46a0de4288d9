"""Item 5: what a sweep costs on top of its trials, through ``harness.sweep.run_sweep``.

- Per-trial overhead: fit time of N trivial trials (10 full-batch steps of a tiny least
  squares problem) with actor reuse, divided by N; N = 4 and N = 16 (quick) or 64 (full),
  whose ratio against N's ratio (linear growth) is the growth headline.
- Parallel efficiency: N equal CPU-bound trials (digits MLP) through the sweep with one
  CPU each, against the same trials run one after another in this process with
  ``run_trial`` (timed after the sweep: one repeat, not alternated). The steady-state
  headline divides the sweep's time after its first trial started (Ray worker start-up
  and imports left out, the driver's writing and Tune's shutdown kept in) by the work:
  the sum of the trials' own ``time_total`` when run one after another, at this
  process's niceness (the sweep's workers run at it too); 1/cores is the floor. The
  same sum measured inside the sweep is reported beside it: when it is larger, the
  trials slowed each other down (shared caches, other processes, Ray's daemons), which
  the sequential denominator charges to the sweep and the in-sweep one hides. Each trial
  runs a few seconds, so the fixed tail of a sweep does not pass for steady state.

Ray is started by a warm-up sweep before any clock, as a user's sweep would find it.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from harness.bench.common import Context, Headline, Measurement

ITEM, NAME = 5, "sweep"

TRIVIAL = """
name: {name}
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
  seed: {seeds}
"""

CPU_BOUND = """
name: {name}
dataset: digits
model: mlp
width: {width}
epochs: {epochs}
batch_size: 32
lr: 0.05
optimizer: sam
rho: 0.05
device: cpu
grid:
  seed: {seeds}
resources: {{cpu: 1}}
"""


def _sweep(text: str, root: str) -> float:
    from harness.spec import parse_spec
    from harness.sweep import SweepOptions, run_sweep

    start = time.perf_counter()
    run_sweep(parse_spec(text), root, SweepOptions(quiet=True))
    return time.perf_counter() - start


def _sequential(text: str) -> tuple[float, float]:
    """(wall seconds, the sum of the trials' time_total) of the spec's trials run one
    after another in this process."""
    import torch

    from harness.spec import parse_spec
    from harness.trial import run_trial

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each sweep worker runs
    try:
        start, work = time.perf_counter(), 0.0
        for cfg in parse_spec(text).trials:
            for record in run_trial(cfg):
                pass
            work += record["time_total"]
        return time.perf_counter() - start, work
    finally:
        torch.set_num_threads(threads)


def run(ctx: Context) -> list[Measurement]:
    from harness import store

    small, large = 4, ctx.pick(8, 16, 64)
    n_parallel = ctx.pick(2, 2, 8)
    epochs, width = ctx.pick(2, 30, 60), ctx.pick(32, 128, 256)
    with tempfile.TemporaryDirectory() as root:
        _sweep(TRIVIAL.format(name="warm-up", seeds=list(range(2))), root)  # Ray, imports, numba cache
        fit = {n: _sweep(TRIVIAL.format(name=f"trivial-{n}", seeds=list(range(n))), root)
               for n in (small, large)}
        text = CPU_BOUND.format(name="parallel", width=width, epochs=epochs, seeds=list(range(n_parallel)))
        started = datetime.now(timezone.utc)
        swept = _sweep(text, root)
        trials = store.read_trials(Path(root) / "parallel")
        ends = (trials["finished_at"] - started).dt.total_seconds()
        first_start = float((ends - trials["time_total"]).min())
        work = float(trials["time_total"].sum())
    sequential, sequential_work = _sequential(text)
    cores = os.cpu_count() or 1
    growth = Measurement(
        ITEM, NAME, f"{small} vs {large} trivial trials, actor reuse",
        {f"{small} trials": [fit[small]], f"{large} trials": [fit[large]],
         f"{small} trials x {large // small}": [fit[small] * large / small]},
        [Headline(f"{large} trials", f"{small} trials x {large // small}", goal=1.0)], warmup=1,
        note="goal: linear growth or better",
        extra={"per_trial_s_small": fit[small] / small, "per_trial_s_large": fit[large] / large})
    parallel = Measurement(
        ITEM, NAME, f"{n_parallel} CPU-bound digits trials on {cores} cores",
        {"sweep": [swept], "sequential": [sequential], "sweep steady state": [swept - first_start],
         "work run sequentially (sum of trial time_total)": [sequential_work],
         "work in the sweep (sum of trial time_total)": [work]},
        [Headline("sweep", "sequential"),
         Headline("sweep steady state", "work run sequentially (sum of trial time_total)", goal=0.55),
         Headline("sweep steady state", "work in the sweep (sum of trial time_total)")],
        warmup=0, note=f"first trial started {first_start:.1f} s into the sweep; floor 1/{cores}",
        extra={"first_start_s": first_start})
    return [growth, parallel]
