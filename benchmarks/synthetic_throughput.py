"""Throughput of the synthetic engine against the reference code's numpy loop.

Ridge regression (reg = 3/n, cond 10), batch 1, n = d = 100, uniform sampling, Unified SAM
lam = 0.5 with v2 step sizes, full-data evaluation every n iterations. Both variants run
in their own subprocess, single-threaded, on the same problem and step sizes:

- engine: ``SyntheticTrial`` end to end (problem generation, sampler, chunks, kernel,
  evaluations, records), after a warm-up trial so numba's compilation is excluded;
- reference: a re-implementation of the loop of dimitris-oik/unifiedsam
  ``numpy_exps/methods.py::unifiedSAM``: one numpy call per gradient (the gradient at x
  is computed twice there: once for its norm, once for the ascent), ``np.random.choice``
  over ``range(n)`` per step, every iterate kept in a list, a membership test of k + 1
  in the evaluation points each step.

Memory is the growth of the peak resident set (ru_maxrss) over the run. Usage:

    .venv/bin/python benchmarks/synthetic_throughput.py [--iterations 100000]
        [--reference-iterations 100000] [--repeats 3]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core each, as a packed sweep worker has

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N = D = 100
LAM = 0.5


def _config(iterations: int):
    from harness.config import TrialConfig

    return TrialConfig.from_dict(dict(
        dataset="ridge", model="linear", n_samples=N, dim=D, cond=10.0, reg=3.0 / N,
        optimizer="unified", lam=LAM, step_rule="v2", sampler="uniform", batch_size=1,
        iterations=iterations, eval_every=N, seed=0,
    ))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_engine(iterations: int) -> dict:
    from harness.synthetic import SyntheticTrial

    list(SyntheticTrial(_config(2 * N)).records())  # warm-up: compile or load the kernels
    rss0 = _peak_rss_mib()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    trial = SyntheticTrial(_config(iterations))
    last = None
    for last in trial.records():
        pass
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return dict(wall=wall, cpu=cpu, rss_growth_mib=_peak_rss_mib() - rss0, final=last["rel_subopt"],
                time_train=last["time_train"], time_eval=last["time_eval"])


def run_reference(iterations: int) -> dict:
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

    rss0 = _peak_rss_mib()
    wall0, cpu0 = time.perf_counter(), time.process_time()
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
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return dict(wall=wall, cpu=cpu, rss_growth_mib=_peak_rss_mib() - rss0,
                final=(values[-1] - p.f_star) / (values[0] - p.f_star))


def _worker(kind: str, iterations: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--iterations", str(iterations)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=100_000, help="engine iterations")
    parser.add_argument("--reference-iterations", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="engine runs (best one reported)")
    parser.add_argument("--worker", choices=("engine", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run = run_engine if args.worker == "engine" else run_reference
        print(json.dumps(run(args.iterations)))
        return

    engine = min((_worker("engine", args.iterations) for _ in range(args.repeats)), key=lambda r: r["wall"])
    reference = _worker("reference", args.reference_iterations)
    per_it = {
        "engine": (engine["wall"] / args.iterations, engine["cpu"] / args.iterations),
        "reference": (reference["wall"] / args.reference_iterations, reference["cpu"] / args.reference_iterations),
    }
    print(f"ridge n = d = {N}, batch 1, uniform, lam = {LAM}, v2 steps, eval every {N} iterations")
    print(f"{'variant':<10} {'iterations':>10} {'us/it wall':>11} {'us/it cpu':>10} {'peak RSS growth':>16} {'final rel_subopt':>17}")
    for name, res, its in (("engine", engine, args.iterations), ("reference", reference, args.reference_iterations)):
        wall, cpu = per_it[name]
        print(f"{name:<10} {its:>10} {wall * 1e6:>11.3f} {cpu * 1e6:>10.3f} {res['rss_growth_mib']:>13.1f} MiB {res['final']:>17.3e}")
    print(f"speed-up: {per_it['reference'][0] / per_it['engine'][0]:.1f}x wall, "
          f"{per_it['reference'][1] / per_it['engine'][1]:.1f}x cpu "
          f"(engine time_train {engine['time_train']:.3f} s, time_eval {engine['time_eval']:.3f} s)")


if __name__ == "__main__":
    main()
