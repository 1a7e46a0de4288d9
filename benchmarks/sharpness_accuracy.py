"""Sharpness accuracy and cost against float64 references, side by side in one run:
Lanczos (harness.sharpness, at 1e-3, 1e-4 and 1e-6 targets), power iteration (the same
operator, PyHessian's stop rule) and PyHessian 0.1 itself (``cuda=False``); then the cost
of one Hessian-vector product (HVP) by each product mode against one gradient.

Problems:
- tiny MLP: 64-32-10 ReLU, float32, on the first 256 sklearn digits (x / 16, standardised);
  reference: the eigenvalues of its full float64 Hessian.
- CNN: the PyTorch MNIST example net without dropout (conv 1-32, conv 32-64, maxpool,
  fc 9216-128, fc 128-10; 1,199,882 parameters), ``torch.manual_seed(0)``; 512 inputs
  ``randn(512, 1, 28, 28)`` and labels ``randint(0, 10)`` from ``Generator().manual_seed(123)``;
  reference: ``CNN_REFERENCE``, float64 Lanczos on a float64 copy (``--reference``).

Run (CPU, one thread; tens of minutes, most of it the CNN):
  PYTHONPATH=. .venv/bin/python benchmarks/sharpness_accuracy.py [--cnn-seeds 1] [--skip-cost]
  PYTHONPATH=. .venv/bin/python benchmarks/sharpness_accuracy.py --reference   # recompute CNN_REFERENCE
Needs the ``bench`` extra (pyhessian==0.1).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

from harness.sharpness import HessianOperator, lanczos_top_eigenvalue, power_iteration

CNN_REFERENCE = 15.4774651  # float64 top eigenvalue of the CNN problem; --reference prints it
TARGETS = (1e-3, 1e-4, 1e-6)


def tiny_mlp():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x[:256] / 16.0, dtype=torch.float32)
    x = (x - x.mean()) / x.std()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    return model, x, torch.tensor(y[:256])


def cnn(samples: int = 512):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10))
    g = torch.Generator().manual_seed(123)
    x, y = torch.randn(512, 1, 28, 28, generator=g), torch.randint(0, 10, (512,), generator=g)
    return model, x[:samples], y[:samples]


def full_hessian_top(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The top eigenvalue of the full float64 Hessian (small models only)."""
    model = copy.deepcopy(model).double()
    names, shapes = [n for n, _ in model.named_parameters()], [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(w):
        pieces = [c.view(s) for c, s in zip(w.split([s.numel() for s in shapes]), shapes)]
        return nn.functional.cross_entropy(functional_call(model, dict(zip(names, pieces)), (x.double(),)), y)

    return torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, flat))[-1].item()


def pyhessian_top(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[float, int, float]:
    """PyHessian 0.1's power iteration (its defaults: maxIter 100, tol 1e-3), its HVPs
    counted; on a copy, since it writes graph-carrying .grad into the model."""
    ph = importlib.import_module("pyhessian.hessian")  # the module; the package exports a class of that name

    calls = [0]
    original = ph.hessian_vector_product

    def counted(*args):
        calls[0] += 1
        return original(*args)

    ph.hessian_vector_product = counted
    try:
        start = time.perf_counter()
        torch.manual_seed(seed)  # PyHessian draws its start vector from the global RNG
        top = ph.hessian(copy.deepcopy(model), nn.functional.cross_entropy, data=(x, y), cuda=False).eigenvalues()[0][0]
        return top, calls[0], time.perf_counter() - start
    finally:
        ph.hessian_vector_product = original


def accuracy(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, reference: float, seeds: range) -> None:
    """One table: median HVPs and seconds over probe seeds, worst relative error and the
    largest relative error estimate, and whether the estimate covered the error every time."""
    runs: dict[str, list[tuple[int, float, float, float]]] = {}
    op = HessianOperator(model, nn.functional.cross_entropy, x, y)
    for seed in seeds:
        for tol in TARGETS:
            r = lanczos_top_eigenvalue(op, generator=torch.Generator().manual_seed(seed), tol=tol)
            runs.setdefault(f"lanczos, target {tol:g}", []).append((r.hvps, r.seconds, r.value, r.error))
        r = power_iteration(op, generator=torch.Generator().manual_seed(seed), tol=1e-3)
        runs.setdefault("power iteration, tol 1e-3", []).append((r.hvps, r.seconds, r.value, r.error))
        value, hvps, seconds = pyhessian_top(model, x, y, seed)
        runs.setdefault("PyHessian 0.1, tol 1e-3", []).append((hvps, seconds, value, float("nan")))
    print(f"\n{name}: {op.dim:,} parameters, {len(x)} samples, float64 reference {reference:.10g}, "
          f"probe seeds {list(seeds)}, HVP mode {op.mode}")
    print("| method | HVPs (median) | seconds (median) | worst rel. error | worst rel. error estimate | estimate >= error |")
    print("|---|---|---|---|---|---|")
    for method, rows in runs.items():
        errors = [abs(v - reference) / abs(reference) for _, _, v, _ in rows]
        estimates = [e / abs(v) for _, _, v, e in rows]
        covered = "n/a" if "PyHessian" in method else ("yes" if all(
            abs(v - reference) <= e for _, _, v, e in rows) else "NO")
        print(f"| {method} | {statistics.median(h for h, _, _, _ in rows):g} | "
              f"{statistics.median(s for _, s, _, _ in rows):.2f} | {max(errors):.1e} | "
              f"{'n/a' if 'PyHessian' in method else f'{max(estimates):.1e}'} | {covered} |")


def reference(samples: int) -> None:
    """The CNN's float64 reference: Lanczos on a float64 copy, to 1e-12 relative."""
    model, x, y = cnn(samples)
    op = HessianOperator(model.double(), nn.functional.cross_entropy, x.double(), y)
    r = lanczos_top_eigenvalue(op, generator=torch.Generator().manual_seed(0), tol=1e-12)
    print(json.dumps({"samples": samples, "lam_max": r.value, "error": r.error, "hvps": r.hvps, "converged": r.converged}))


def _current_rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def one_cost(option: str, samples: int) -> None:
    """Run in a fresh process: median CPU/wall seconds of one HVP (or gradient) after a
    warm-up, and the peak resident memory above what the set-up holds (its current RSS, not
    its peak: importing torch peaks higher than one product of a small model needs)."""
    model, x, y = cnn(samples)
    base = _current_rss_kib()
    work: Callable[[], object]
    if option == "gradient":
        params = [p for p in model.parameters()]

        def work():
            return torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params)
    else:
        op = HessianOperator(model, nn.functional.cross_entropy, x, y, hvp=option)
        v = torch.randn(op.dim, generator=torch.Generator().manual_seed(0))

        def work():
            return op.matvec(v)
    work()
    wall, cpu = [], []
    for _ in range(3):
        w, c = time.perf_counter(), time.process_time()
        work()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024  # KiB -> MiB on Linux
    print(json.dumps({"wall": statistics.median(wall), "cpu": statistics.median(cpu), "peak_mib": peak}))


def costs(samples: int) -> None:
    print(f"\none HVP of the CNN on {samples} samples, against one gradient (forward + backward); "
          f"median of 3 after a warm-up, each option in a fresh process, 1 thread")
    print("| option | CPU s | wall s | CPU / gradient | peak memory above set-up (MiB) |")
    print("|---|---|---|---|---|")
    results = {}
    for option in ("gradient", "graph", "recompute", "jvp"):
        out = subprocess.run([sys.executable, __file__, "--cost", option, "--cnn-samples", str(samples)],
                             capture_output=True, text=True, check=True)
        results[option] = json.loads(out.stdout.strip().splitlines()[-1])
    for option, r in results.items():
        label = {"gradient": "gradient (forward + backward)", "graph": "HVP, kept first-order graph",
                 "recompute": "HVP, recomputed forward + double backward", "jvp": "HVP, torch.func forward-over-reverse"}
        print(f"| {label[option]} | {r['cpu']:.3f} | {r['wall']:.3f} | {r['cpu'] / results['gradient']['cpu']:.2f} "
              f"| {r['peak_mib']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cnn-samples", type=int, default=512)
    parser.add_argument("--cnn-seeds", type=int, default=1, help="probe seeds for the CNN (the MLP uses 5)")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--skip-cnn", action="store_true")
    parser.add_argument("--reference", action="store_true", help="print the CNN's float64 reference and exit")
    parser.add_argument("--cost", choices=("gradient", "graph", "recompute", "jvp"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # tables appear as they are done, also in a log file
    torch.set_num_threads(1)
    if args.cost:
        return one_cost(args.cost, args.cnn_samples)
    if args.reference:
        return reference(args.cnn_samples)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread")
    model, x, y = tiny_mlp()
    accuracy("tiny MLP (digits)", model, x, y, full_hessian_top(model, x, y), range(5))
    if not args.skip_cnn:
        if args.cnn_samples == 512:
            ref = CNN_REFERENCE
        else:
            model64, x64, y64 = cnn(args.cnn_samples)
            op = HessianOperator(model64.double(), nn.functional.cross_entropy, x64.double(), y64)
            ref = lanczos_top_eigenvalue(op, generator=torch.Generator().manual_seed(0), tol=1e-12).value
        model, x, y = cnn(args.cnn_samples)
        accuracy("CNN", model, x, y, ref, range(args.cnn_seeds))
    if not args.skip_cost:
        costs(args.cnn_samples)


if __name__ == "__main__":
    main()
