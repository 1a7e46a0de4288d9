"""Per-epoch overhead of the trial runner next to a bare, hand-written PyTorch loop.

Both do the same work: the same model, the same in-memory data, reshuffled minibatches
of the same size, the same optimizer, one test evaluation at the end. Variants are
interleaved and repeated, and the median ratio runner / bare is printed, so machine
noise hits both sides alike.

    .venv/bin/python benchmarks/runner_overhead.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from harness.config import TrialConfig
from harness.data import load_classification
from harness.models import build_model
from harness.optim import build_optimizer
from harness.trial import build_trial

WORKLOADS = {
    "digits/mlp": dict(dataset="digits", model="mlp", batch_size=64, epochs=5),
    "mnist1d/cnn": dict(dataset="mnist1d", model="cnn", width=16, batch_size=128, epochs=2),
}


def runner_seconds(cfg: TrialConfig) -> float:
    trial = build_trial(cfg)
    start = time.perf_counter()
    for _ in trial.records():
        pass
    return time.perf_counter() - start


def bare_seconds(cfg: TrialConfig) -> float:
    """The loop a user would write by hand: randperm, index, forward, backward, step."""
    torch.manual_seed(cfg.seed)
    data = load_classification(cfg, torch.device("cpu"))
    inputs, targets = data.train.clean(torch.arange(data.n_train))
    model = build_model(cfg.model, data.input_shape, data.num_classes, width=cfg.width)
    opt = build_optimizer(cfg.optimizer, model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          rho=cfg.rho, lam=cfg.lam, model=model)
    generator = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    for _ in range(cfg.epochs):
        model.train()
        for batch in torch.randperm(data.n_train, generator=generator).split(cfg.batch_size):
            x, y = inputs[batch], targets[batch]

            def closure() -> torch.Tensor:
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                return loss

            opt.step(closure)
    model.eval()
    with torch.no_grad():
        for x, y in data.test_batches(1024):
            F.cross_entropy(model(x), y)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'workload':<14} {'optimizer':<9} {'bare s':>8} {'runner s':>9} {'ratio':>6}")
    for name, workload in WORKLOADS.items():
        for optimizer in ("sgd", "sam"):
            extra = {"rho": 0.05} if optimizer == "sam" else {}
            cfg = TrialConfig.from_dict(dict(workload, optimizer=optimizer, lr=0.05, momentum=0.9,
                                             sampler="reshuffle", eval_every=workload["epochs"],
                                             augment=False, **extra))
            runner_seconds(cfg), bare_seconds(cfg)  # warm-up: imports, data caches, allocator
            bare, runner = [], []
            for _ in range(args.repeats):
                bare.append(bare_seconds(cfg))
                runner.append(runner_seconds(cfg))
            ratios = [r / b for r, b in zip(runner, bare)]
            print(f"{name:<14} {optimizer:<9} {statistics.median(bare):8.3f} "
                  f"{statistics.median(runner):9.3f} {statistics.median(ratios):6.3f}")


if __name__ == "__main__":
    main()
