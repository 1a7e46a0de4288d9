"""Lanczos vs PyHessian-style power iteration on a tiny MLP with a known Hessian, and the
cost of one Hessian-vector product of a small CNN on 512 samples (CPU, one thread).

Run: .venv/bin/python benchmarks/sharpness_accuracy.py   (under a minute)
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.func import functional_call, grad, jvp

from harness.models import build_model
from harness.sharpness import HessianOperator, lanczos_top_eigenvalue, power_iteration

PROBLEM_SEEDS = range(4)
PROBE_SEEDS = range(5)


def tiny_mlp(seed: int):
    """5-20-3 tanh MLP (183 parameters, float64) on 64 random points, cross-entropy."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 20), nn.Tanh(), nn.Linear(20, 3)).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=g)
    return model, nn.functional.cross_entropy, x, y


def exact_spectrum(model: nn.Module, loss_fn, x, y) -> torch.Tensor:
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(w):
        pieces = [c.view(s) for c, s in zip(w.split([s.numel() for s in shapes]), shapes)]
        return loss_fn(functional_call(model, dict(zip(names, pieces)), (x,)), y)

    return torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, flat))


def accuracy_table() -> None:
    print("tiny MLP, float64; mean over probe seeds", list(PROBE_SEEDS))
    print(f"{'problem':>7} {'top gap':>8} | {'lanczos hvps':>12} {'rel err':>9} | {'power hvps':>10} {'rel err':>9}")
    totals: dict[str, list[float]] = {"lh": [], "le": [], "ph": [], "pe": []}
    for seed in PROBLEM_SEEDS:
        model, loss_fn, x, y = tiny_mlp(seed)
        spectrum = exact_spectrum(model, loss_fn, x, y)
        exact, gap = spectrum[-1].item(), ((spectrum[-1] - spectrum[-2]) / spectrum[-1]).item()
        op = HessianOperator(model, loss_fn, x, y)
        row: dict[str, list[float]] = {"lh": [], "le": [], "ph": [], "pe": []}
        for probe in PROBE_SEEDS:
            lz = lanczos_top_eigenvalue(op, generator=torch.Generator().manual_seed(probe), tol=1e-6)
            pw = power_iteration(op, generator=torch.Generator().manual_seed(probe), tol=1e-3)
            for key, value in (("lh", lz.hvps), ("le", abs(lz.value - exact) / exact),
                               ("ph", pw.hvps), ("pe", abs(pw.value - exact) / exact)):
                row[key].append(value)
                totals[key].append(value)
        m = {k: statistics.mean(v) for k, v in row.items()}
        print(f"{seed:>7} {gap:>8.3f} | {m['lh']:>12.1f} {m['le']:>9.1e} | {m['ph']:>10.1f} {m['pe']:>9.1e}")
    m = {k: statistics.mean(v) for k, v in totals.items()}
    print(f"{'mean':>7} {'':>8} | {m['lh']:>12.1f} {m['le']:>9.1e} | {m['ph']:>10.1f} {m['pe']:>9.1e}")
    print(f"worst: lanczos rel err {max(totals['le']):.1e}, power rel err {max(totals['pe']):.1e}")


def median_seconds(fn, repeats: int = 3) -> tuple[float, float]:
    """Median (wall, CPU) seconds after a warm-up; CPU time (this process, user + system)
    is the fairer figure on a shared machine, wall time the one a run would see."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def cnn_hvp_timing() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", input_shape=(3, 32, 32), num_classes=10).eval()
    x, y = torch.randn(512, 3, 32, 32), torch.randint(0, 10, (512,))
    loss_fn = nn.functional.cross_entropy
    op = HessianOperator(model, loss_fn, x, y, batch_size=512)
    v = torch.randn(op.dim)
    double_backward = median_seconds(lambda: op.matvec(v))

    # torch.func forward-over-reverse (jvp of grad), timed for the choice of HVP method
    names = [name for name, _ in model.named_parameters()]
    params = tuple(p.detach() for p in model.parameters())
    tangents = tuple(t.view_as(p) for t, p in zip(v.split([p.numel() for p in params]), params))
    buffers = dict(model.named_buffers())

    def loss_of(ps):
        return loss_fn(functional_call(model, ({**dict(zip(names, ps)), **buffers},), (x,)), y)

    forward_over_reverse = median_seconds(lambda: jvp(grad(loss_of), (params,), (tangents,)))
    print(f"\nsmall CNN ({op.dim} parameters), 512 samples, {torch.get_num_threads()} thread(s), median of 3:")
    for name, (wall, cpu) in (("double backward (used)", double_backward),
                              ("torch.func fwd-over-rev", forward_over_reverse)):
        print(f"  one HVP, {name:<24} wall {wall:.3f} s, CPU {cpu:.3f} s")


if __name__ == "__main__":
    torch.set_num_threads(1)
    accuracy_table()
    cnn_hvp_timing()
