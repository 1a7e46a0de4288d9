"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 through torchvision, from a data_root.

Nothing is downloaded unless ``download: true``. Images stay uint8 (on the device when a
split fits in memory) and are normalised per batch with the usual per-channel constants;
CIFAR training batches get random crop (pad 4) + horizontal flip by default.
``fake_data: true`` swaps in torchvision's FakeData with the real shape and classes and
1/100 of the real size, for CPU smoke runs of the GPU specs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import math
import os
from dataclasses import dataclass

import torch

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.config import TrialConfig
from harness.data.tensors import (
    IN_MEMORY_LIMIT_BYTES,
    BatchTransform,
    ClassificationData,
    LoaderTrainSet,
    TensorTrainSet,
    TrainSet,
    holdout,
)

FAKE_DATA_SCALE = 100  # FakeData has 1/100 of the real number of examples


@dataclass(frozen=True)
class VisionSpec:
    """What we know about a torchvision dataset before reading any file."""

    torchvision_class: str
    shape: tuple[int, int, int]
    num_classes: int
    n_train: int
    n_test: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment_by_default: bool
    folder: str               # below data_root
    files: tuple[str, ...]    # inside folder: what torchvision reads

    def expected(self) -> str:
        return f"{self.folder}/{{{', '.join(self.files)}}}"


_MNIST_FILES = tuple(
    f"{split}-{kind}-idx{dims}-ubyte" for split in ("train", "t10k") for kind, dims in (("images", 3), ("labels", 1))
)

VISION: dict[str, VisionSpec] = {
    "mnist": VisionSpec(
        "MNIST", (1, 28, 28), 10, 60_000, 10_000, (0.1307,), (0.3081,), False, "MNIST/raw", _MNIST_FILES
    ),
    "fashion_mnist": VisionSpec(
        "FashionMNIST", (1, 28, 28), 10, 60_000, 10_000, (0.2860,), (0.3530,), False, "FashionMNIST/raw", _MNIST_FILES
    ),
    "cifar10": VisionSpec(
        "CIFAR10", (3, 32, 32), 10, 50_000, 10_000, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True,
        "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
    ),
    "cifar100": VisionSpec(
        "CIFAR100", (3, 32, 32), 100, 50_000, 10_000, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True,
        "cifar-100-python", ("train", "test", "meta"),
    ),
}


def load_vision(
    cfg: TrialConfig,
    device: torch.device,
    *,
    in_memory_limit: int = IN_MEMORY_LIMIT_BYTES,
    loader_workers: int = min(8, os.cpu_count() or 1),
) -> ClassificationData:
    """The torchvision dataset ``cfg.dataset``. A split of more than ``in_memory_limit``
    bytes (as uint8) is read through its Dataset (LoaderTrainSet, whose in-order passes use
    ``loader_workers`` processes), else held on the device."""
    spec = VISION[cfg.dataset]
    augment = spec.augment_by_default if cfg.augment is None else cfg.augment
    train_ds, test_ds = _fake_datasets(spec) if cfg.fake_data else _real_datasets(spec, cfg)
    max_in_memory = in_memory_limit // math.prod(spec.shape)  # examples, at one byte per value

    def split(dataset, keep: int | None, augment_split: bool) -> TrainSet:
        transform = BatchTransform(device, mean=spec.mean, std=spec.std, scale=1.0 / 255.0, augment=augment_split)
        return _split(dataset, keep, transform, max_in_memory, loader_workers)

    fit, val = holdout(len(train_ds), cfg.val_fraction)
    if val is not None:  # both parts are Subsets, read through their indices (_stored_arrays)
        train_ds, val_ds = (torch.utils.data.Subset(train_ds, idx.tolist()) for idx in (fit, val))
    return ClassificationData(
        name=cfg.dataset,
        input_shape=spec.shape,
        num_classes=spec.num_classes,
        train=split(train_ds, cfg.train_subset, augment),
        test=split(test_ds, cfg.test_subset, False),
        val=None if val is None else split(val_ds, None, False),
    )


def _real_datasets(spec: VisionSpec, cfg: TrialConfig):
    """torchvision's train and test datasets, after checking the files are there (unless
    downloading), so missing data fails in one line naming the folder and the files."""
    import torchvision
    from torchvision.transforms import PILToTensor

    root = cfg.data_root
    expected = f"a folder holding {spec.expected()} (or download: true)"
    if root is None:
        raise ConfigError("data_root", root, expected)
    if not cfg.download:
        missing = [f for f in spec.files if not os.path.isfile(os.path.join(root, spec.folder, f))]
        if missing:
            raise ConfigError("data_root", root, f"{expected}; missing {spec.folder}/{missing[0]}")
    cls = getattr(torchvision.datasets, spec.torchvision_class)
    try:
        return tuple(cls(root, train=train, download=cfg.download, transform=PILToTensor()) for train in (True, False))
    except (RuntimeError, OSError) as err:  # corrupt files, or a failed download
        reason = " ".join(str(err).split())
        raise ConfigError("data_root", root, f"{expected}; torchvision said: {reason}") from err


def _fake_datasets(spec: VisionSpec):
    import torchvision
    from torchvision.transforms import PILToTensor

    sizes = (math.ceil(spec.n_train / FAKE_DATA_SCALE), math.ceil(spec.n_test / FAKE_DATA_SCALE))
    return tuple(
        torchvision.datasets.FakeData(
            size=size, image_size=spec.shape, num_classes=spec.num_classes,
            transform=PILToTensor(), random_offset=offset,
        )
        for size, offset in zip(sizes, (0, sizes[0]))  # test images differ from train images
    )


def _split(dataset, keep: int | None, transform: BatchTransform, max_in_memory: int, workers: int) -> TrainSet:
    """The first ``keep`` examples (all when None), on the device if at most ``max_in_memory``."""
    n = len(dataset) if keep is None else min(keep, len(dataset))
    if n > max_in_memory:
        subset = dataset if n == len(dataset) else torch.utils.data.Subset(dataset, range(n))
        return LoaderTrainSet(subset, transform, num_workers=workers)
    x, y = _stored_arrays(dataset, n)
    return TensorTrainSet(x, y, transform)


def _stored_arrays(dataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n images as one uint8 (N, C, H, W) tensor and their labels, straight from
    the arrays torchvision keeps (``.data``: NHWC numpy for CIFAR, NHW tensor for MNIST;
    through a ``Subset``'s indices for a validation split), or one by one for datasets
    without them (FakeData, which is small)."""
    index = slice(None, n)
    if isinstance(dataset, torch.utils.data.Subset):
        dataset, index = dataset.dataset, torch.as_tensor(dataset.indices[:n])
    data = getattr(dataset, "data", None)
    if data is None:
        from torch.utils.data import default_collate

        positions = range(len(dataset))[index] if isinstance(index, slice) else index.tolist()
        return default_collate([dataset[i] for i in positions])
    x = torch.as_tensor(data[index] if isinstance(index, slice) else data[index.numpy()])
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    y = torch.as_tensor(dataset.targets, dtype=torch.int64)[index]
    return x.contiguous(), y
