"""Item 6: the synthetic engine's iterations per second against a faithful plain-numpy
reimplementation of the reference code's loop (dimitris-oik/unifiedsam,
``numpy_exps/methods.py::unifiedSAM``).

Ridge regression (reg = 3/n, cond 10), batch 1, n = d = 100, uniform sampling, Unified SAM
lam = 0.5 with v2 step sizes, a full-data evaluation every n iterations. Each side runs in
its own single-threaded subprocess, timing its loop only (imports and numba's compilation
are left out by a warm-up trial). The reference computes the gradient at x twice (once
for its norm, once for the ascent), draws with ``np.random.choice`` over ``range(n)`` each
step, keeps every iterate in a list and tests k + 1 for membership in the evaluation
points each step, as the original does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from harness.bench.common import Context, Headline, Measurement

ITEM, NAME = 6, "synthetic"
N = D = 100
LAM = 0.5


def _config(iterations: int):
    from harness.config import TrialConfig

    return TrialConfig.from_dict(dict(
        dataset="ridge", model="linear", n_samples=N, dim=D, cond=10.0, reg=3.0 / N,
        optimizer="unified", lam=LAM, step_rule="v2", sampler="uniform", batch_size=1,
        iterations=iterations, eval_every=N, seed=0,
    ))


def engine_seconds(iterations: int) -> float:
    from harness.synthetic import SyntheticTrial

    list(SyntheticTrial(_config(2 * N)).records())  # compile or load the kernels
    start = time.perf_counter()
    for _ in SyntheticTrial(_config(iterations)).records():
        pass
    return time.perf_counter() - start


def reference_seconds(iterations: int) -> float:
    from harness.synthetic import SyntheticTrial

    cfg = _config(iterations)
    trial = SyntheticTrial(cfg)  # only for the same problem and step sizes
    p, info = trial.problem, trial.info()
    A, b, reg, n = p.A, p.b, p.reg, p.n
    rho, gamma = info["theory_rho"], info["theory_lr"]
    np.random.seed(cfg.seed)

    def loss(x, batch):
        return np.linalg.norm(A[batch] @ x - b[batch]) ** 2 / (2 * batch.shape[0]) + reg / 2 * np.linalg.norm(x) ** 2

    def grad(x, batch):
        return A[batch].T @ (A[batch] @ x - b[batch]) / batch.shape[0] + reg * x

    start = time.perf_counter()
    everything = np.arange(n)
    evaluations = np.arange(0, iterations + 1, n)
    values = np.zeros(len(evaluations))
    values[0] = loss(p.x0, everything)
    iterates = [p.x0] * (iterations + 1)
    written = 1
    for k in range(iterations):
        i = np.random.choice(range(n), size=1)
        x = iterates[k]
        norm = np.linalg.norm(grad(x, i))
        ascent = x + rho * (1 - LAM + LAM / (norm + 1e-7)) * grad(x, i)
        iterates[k + 1] = x - gamma * grad(ascent, i)
        if k + 1 in evaluations:
            values[written] = loss(iterates[k + 1], everything)
            written += 1
    return time.perf_counter() - start


def _worker(kind: str, iterations: int) -> float:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "harness.bench.synthetic", kind, str(iterations)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def run(ctx: Context) -> list[Measurement]:
    engine_its, reference_its = ctx.pick(2_000, 50_000, 200_000), ctx.pick(1_000, 10_000, 100_000)
    values: dict[str, list[float]] = {"engine": [], "numpy reference": []}
    repeats = ctx.pick(1, 2, 3)
    for _ in range(repeats):  # alternating, one subprocess a side per repeat
        values["engine"].append(_worker("engine", engine_its) / engine_its)
        values["numpy reference"].append(_worker("reference", reference_its) / reference_its)
    return [Measurement(ITEM, NAME, f"ridge n = d = {N}, batch 1, lam {LAM}; {engine_its:,} engine and "
                        f"{reference_its:,} reference iterations", values,
                        [Headline("engine", "numpy reference", goal=10.0, speedup=True)], warmup=0,
                        unit="s/iteration", note="ratio: reference / engine time per iteration (speed-up)")]


if __name__ == "__main__":
    kind, iterations = sys.argv[1], int(sys.argv[2])
    seconds = (engine_seconds if kind == "engine" else reference_seconds)(iterations)
    print(json.dumps({"seconds": seconds}))
