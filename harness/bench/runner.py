"""Item 3: the trial runner against a bare, hand-written loop doing the same work: the
same model, data in memory, reshuffled minibatches, optimizer, and the same results: the
training loss and accuracy of every epoch (the runner records both) and one test
evaluation, loss and accuracy, at the end. The runner's timing, records and checkpoints
are its overhead.
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


def bare(cfg: TrialConfig) -> dict[str, float]:
    """The loop a user would write by hand: randperm, index, forward, backward, step,
    summing the loss and the correct predictions as it goes."""
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    data = load_classification(cfg, device)
    inputs, targets = data.train.clean(torch.arange(data.n_train, device=device))
    model = build_model(cfg.model, data.input_shape, data.num_classes, width=cfg.width).to(device)
    opt = build_optimizer(cfg.optimizer, model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          rho=cfg.rho, lam=cfg.lam, model=model)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    result: dict[str, float] = {}
    for _ in range(cfg.epochs):
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for batch in torch.randperm(data.n_train, generator=generator, device=device).split(cfg.batch_size):
            x, y = inputs[batch], targets[batch]
            first: list[torch.Tensor] = []

            def closure() -> torch.Tensor:
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                loss.backward()
                first.append(logits.detach())
                return loss

            loss = opt.step(closure)
            loss_sum += loss.detach() * len(y)
            correct += (first[0].argmax(1) == y).sum()
        result.update(train_loss=loss_sum.item() / data.n_train, train_acc=correct.item() / data.n_train)
    model.eval()
    loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long)
    with torch.no_grad():
        for x, y in data.test_batches(1024):
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
    return result | dict(test_loss=loss_sum.item() / data.n_test, test_acc=correct.item() / data.n_test)


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
