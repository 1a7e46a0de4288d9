"""Classification data served as device batches by index, augmentation done on the batch.

Small datasets must not pay for per-sample Python loaders: when a split fits in memory
(all of ours do: CIFAR-10 train is 150 MB as uint8) it lives on the trial's device as one
tensor in its stored dtype, and a batch is a gather plus a vectorised crop/flip and a
per-batch normalisation. Data that does not fit is read through its ``Dataset`` instead,
with exactly the same batch transform, so both paths give identical batches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

IN_MEMORY_LIMIT_BYTES = 4 * 2**30  # a split larger than this is read through its Dataset
NORMALISED_LIMIT_BYTES = 2**30  # a split kept normalised as well (float32) up to this size
CROP_PADDING = 4
# The validation split is drawn with this seed, NOT the trial seed: every trial of a sweep
# (every seed, every tuning trial) selects on the same held-out examples.
VAL_SPLIT_SEED = 12345


def holdout(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(train indices, validation indices) of a training split of ``n`` examples: a fixed
    random ``round(fraction * n)`` of them (at least one) are held out. Both are sorted, so
    the remaining training examples keep their stored order; no split when ``fraction`` is 0."""
    if not fraction:
        return np.arange(n), None
    n_val = min(max(1, round(fraction * n)), n - 1)
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(VAL_SPLIT_SEED).permutation(n)[:n_val]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


class BatchTransform:
    """Stored examples -> model inputs: optional random crop (zero padding) + horizontal
    flip on the stored values, then scaling and per-channel normalisation.

    Augmenting before normalising pads with stored zeros (black pixels), as torchvision's
    ``RandomCrop(padding=4)`` does on the PIL image.
    """

    def __init__(
        self,
        device: torch.device,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        scale: float = 1.0,
        augment: bool = False,
        padding: int = CROP_PADDING,
    ):
        self.device, self.scale, self.augment, self.padding = device, scale, augment, padding
        self._mean = None if mean is None else torch.tensor(mean, dtype=torch.float32, device=device)
        self._std = None if std is None else torch.tensor(std, dtype=torch.float32, device=device)

    def crop_and_flip(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Random crop with padding and a random horizontal flip of a (B, C, H, W) batch.

        All randomness comes from ``generator`` (drawn on its own device, so a CPU or a
        CUDA generator both work): B crop offsets per axis, then B flip coins. The flip is
        folded into the column indices of one gather, so there is no per-sample loop.
        """
        if x.dim() != 4:
            raise ValueError(f"crop and flip need (B, C, H, W) images, got shape {tuple(x.shape)}")
        batch, channels, height, width = x.shape
        p = self.padding
        offsets = torch.randint(0, 2 * p + 1, (2, batch), generator=generator, device=generator.device)
        flips = torch.rand(batch, generator=generator, device=generator.device) < 0.5
        offsets, flips = offsets.to(x.device), flips.to(x.device)
        rows = offsets[0, :, None] + torch.arange(height, device=x.device)
        cols = offsets[1, :, None] + torch.arange(width, device=x.device)
        cols = torch.where(flips[:, None], cols.flip(1), cols)
        # one gather over the flattened padded image (4x faster than 4-way advanced indexing)
        flat = (rows[:, :, None] * (width + 2 * p) + cols[:, None, :]).view(batch, 1, height * width)
        padded = F.pad(x, (p, p, p, p)).flatten(2)
        return padded.gather(2, flat.expand(batch, channels, height * width)).view(batch, channels, height, width)

    def normalise(self, x: Tensor) -> Tensor:
        """float32 model input: x * scale, then (x - mean) / std per channel (dim 1)."""
        x = x.to(torch.float32)
        if self.scale != 1.0:
            x = x * self.scale
        if self._mean is not None:
            view = (1, -1) + (1,) * (x.dim() - 2)
            x = (x - self._mean.view(view)) / self._std.view(view)
        return x


class TrainSet(ABC):
    """One split of a classification dataset, served by index as batches on ``device``.

    Subclasses implement ``fetch`` (stored examples and labels for some indices); the
    training batch (``get``) and the clean batches for evaluation are built from it. The
    test split is a TrainSet too, with augmentation off.
    """

    def __init__(self, n: int, transform: BatchTransform):
        self.n, self.transform, self.device = n, transform, transform.device

    @abstractmethod
    def fetch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Stored (not yet normalised) examples and int64 labels, on ``device``."""

    def get(self, indices: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The training batch for ``indices``: augmented (randomness from ``generator``
        only) when augmentation is on, then normalised."""
        x, y = self.fetch(indices)
        if self.transform.augment:
            if generator is None:
                raise ValueError("an augmented TrainSet needs a torch.Generator for get()")
            x = self.transform.crop_and_flip(x, generator)
        return self.transform.normalise(x), y

    def clean(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """The batch for ``indices`` without augmentation (evaluation, sharpness)."""
        x, y = self.fetch(indices)
        return self.transform.normalise(x), y

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The whole split in order, without augmentation."""
        for start in range(0, self.n, batch_size):
            yield self.clean(torch.arange(start, min(start + batch_size, self.n), device=self.device))


class TensorTrainSet(TrainSet):
    """A split held as device tensors in its stored dtype (uint8 images stay uint8).

    Without augmentation a batch is the same function of the stored examples every time,
    so a split whose float32 form fits in ``NORMALISED_LIMIT_BYTES`` is normalised once,
    on first use, and batches are gathered from that copy: on small models the two or
    three elementwise ops per batch are a measurable part of a step. The values are the
    same, bit for bit (elementwise ops do not depend on the batch)."""

    def __init__(self, x: Tensor, y: Tensor, transform: BatchTransform):
        if len(x) != len(y):
            raise ValueError(f"{len(x)} examples but {len(y)} labels")
        super().__init__(len(y), transform)
        self.x = x.to(transform.device)
        self.y = y.to(device=transform.device, dtype=torch.int64)
        self._normalised: Tensor | None = None

    def fetch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        indices = indices.to(self.device)
        return self.x[indices], self.y[indices]

    def normalised(self) -> Tensor | None:
        """The whole split as model inputs; None with augmentation (batches are built from
        the stored values then) or when the float32 copy would be too large."""
        if self.transform.augment or self.x.numel() * 4 > NORMALISED_LIMIT_BYTES:
            return None
        if self._normalised is None:
            self._normalised = self.transform.normalise(self.x)
        return self._normalised

    def get(self, indices: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        if self.transform.augment:
            return super().get(indices, generator)
        return self.clean(indices)

    def clean(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        inputs = self.normalised()
        if inputs is None:
            return super().clean(indices)
        indices = indices.to(self.device)
        return inputs[indices], self.y[indices]

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        inputs = self.normalised()
        for start in range(0, self.n, batch_size):  # slices: no gather needed in order
            stop = min(start + batch_size, self.n)
            x = self.x[start:stop]
            yield (self.transform.normalise(x) if inputs is None else inputs[start:stop]), self.y[start:stop]


class LoaderTrainSet(TrainSet):
    """A split too large for memory, read through a ``Dataset`` of (stored tensor, label).

    Random batches are read in the calling process (their indices are only known one
    step ahead); in-order passes go through a ``DataLoader`` with ``num_workers``.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, transform: BatchTransform, num_workers: int = 0):
        super().__init__(len(dataset), transform)
        self.dataset, self.num_workers = dataset, num_workers

    def fetch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        from torch.utils.data import default_collate

        x, y = default_collate([self.dataset[i] for i in indices.tolist()])
        return x.to(self.device), y.to(device=self.device, dtype=torch.int64)

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        from torch.utils.data import DataLoader

        loader = DataLoader(
            self.dataset, batch_size=batch_size, shuffle=False, num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        for x, y in loader:
            x = x.to(self.device, non_blocking=True)
            yield self.transform.normalise(x), y.to(device=self.device, dtype=torch.int64)


@dataclass
class ClassificationData:
    """A classification dataset ready for a trial: both splits plus what a model needs."""

    name: str
    input_shape: tuple[int, ...]  # (C, H, W) for images, (C, L) for 1-D signals
    num_classes: int
    train: TrainSet
    test: TrainSet
    val: TrainSet | None = None  # held out of the training data (val_fraction > 0)

    @property
    def n_train(self) -> int:
        return self.train.n

    @property
    def n_test(self) -> int:
        return self.test.n

    @property
    def augment(self) -> bool:
        return self.train.transform.augment

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self.test.batches(batch_size)

    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        if self.val is None:
            raise ValueError(f"{self.name} has no validation split (val_fraction is 0)")
        return self.val.batches(batch_size)

    def train_eval_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The training split in order and without augmentation, for the train loss."""
        return self.train.batches(batch_size)

    def sharpness_subset(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        """min(n, n_train) training examples at indices fixed by ``seed`` (sorted), clean."""
        generator = torch.Generator().manual_seed(seed)
        indices = torch.randperm(self.n_train, generator=generator)[: min(n, self.n_train)]
        return self.train.clean(indices.sort().values.to(self.device))

    @property
    def device(self) -> torch.device:
        return self.train.device
