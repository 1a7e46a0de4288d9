"""Item 3: the trial runner against a bare, hand-written loop doing the same work: the
same model, data in memory, reshuffled minibatches, optimizer, and one test evaluation
at the end (the runner's timing, records and checkpoints are its overhead).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.bench.common import Context, Headline, Measurement, alternate
from harness.config import TrialConfig
from harness.data import load_classification
from harness.models import build_model
from harness.optim import build_optimizer
from harness.trial import build_trial

ITEM, NAME = 3, "runner"


def runner(cfg: TrialConfig) -> None:
    for _ in build_trial(cfg).records():
        pass


def bare(cfg: TrialConfig) -> None:
    """The loop a user would write by hand: randperm, index, forward, backward, step."""
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    data = load_classification(cfg, device)
    inputs, targets = data.train.clean(torch.arange(data.n_train, device=device))
    model = build_model(cfg.model, data.input_shape, data.num_classes, width=cfg.width).to(device)
    opt = build_optimizer(cfg.optimizer, model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          rho=cfg.rho, lam=cfg.lam, model=model)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        model.train()
        for batch in torch.randperm(data.n_train, generator=generator, device=device).split(cfg.batch_size):
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


def run(ctx: Context) -> list[Measurement]:
    epochs = ctx.pick(1, 2, 5)
    out = []
    for optimizer in ("sgd", "sam"):
        cfg = TrialConfig.from_dict(dict(
            dataset="digits", model="mlp", batch_size=64, epochs=epochs, eval_every=epochs,
            optimizer=optimizer, lr=0.05, momentum=0.9, sampler="reshuffle", augment=False,
            device=ctx.device.type, train_subset=ctx.pick(256, None, None),
            **({"rho": 0.05} if optimizer == "sam" else {})))
        values = alternate(ctx, {"trial runner": lambda cfg=cfg: runner(cfg), "bare loop": lambda cfg=cfg: bare(cfg)},
                           repeats=ctx.pick(2, 5, 10), warmup=1)
        out.append(Measurement(ITEM, NAME, f"digits/mlp {optimizer}, {epochs} epochs", values,
                               [Headline("trial runner", "bare loop", goal=1.05)], warmup=1))
    return out
