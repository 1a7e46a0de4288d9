"""Item 4: the data path. sambench's on-device batches (the sampler's indices gather a
batch from tensors already on the device, then scale and normalise there) against a
torch DataLoader over the same tensors (shuffled batches collated on the CPU, then moved
and normalised), one epoch of CIFAR-shaped uint8 images each, no training.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from harness.bench.common import Context, Headline, Measurement, alternate
from harness.data.tensors import BatchTransform, TensorTrainSet
from harness.samplers import build_sampler

ITEM, NAME = 4, "data_path"
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def run(ctx: Context) -> list[Measurement]:
    n, batch = ctx.pick(512, 10_000, 50_000), 128
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (n,), generator=generator)
    transform = BatchTransform(ctx.device, mean=MEAN, std=STD, scale=1 / 255)
    train = TensorTrainSet(images, labels, transform)
    sampler = build_sampler("reshuffle", n, batch, seed=0)
    loader = DataLoader(TensorDataset(images, labels), batch_size=batch, shuffle=True,
                        pin_memory=ctx.device.type == "cuda")

    def on_device() -> None:
        for _ in range(sampler.batches_per_epoch):
            indices, _ = sampler.next_batch()
            train.get(indices.to(ctx.device))

    def dataloader() -> None:
        for x, y in loader:
            transform.normalise(x.to(ctx.device, non_blocking=True)), y.to(ctx.device, non_blocking=True)

    values = alternate(ctx, {"on-device batches": on_device, "DataLoader": dataloader},
                       repeats=ctx.pick(2, 5, 10), warmup=1)
    return [Measurement(ITEM, NAME, f"{n:,} CIFAR-shaped uint8 images, batch {batch}, one epoch", values,
                        [Headline("on-device batches", "DataLoader", speedup=True)], warmup=1,
                        note="ratio: DataLoader time / on-device time = samples/s of on-device over DataLoader")]
