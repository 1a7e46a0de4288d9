"""The dataset registry: a name -> loader for every dataset a config can name.

Classification loaders take ``(cfg, device)`` and return a ``ClassificationData`` whose
splits serve device batches by index (tensors.py); synthetic problems take ``(cfg)`` and
return a numpy ``Problem`` with its constants (synthetic.py). Adding a dataset is one
loader and one line here, or, from outside the package, an import path in the spec
(``dataset: mypkg.data:load``) naming a classification loader (docs/extending.md).
torchvision, sklearn and mnist1d are imported inside the loaders, so importing this
package (config validation does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from harness.errors import ConfigError
from harness.plugins import is_import_path, resolve

if TYPE_CHECKING:
    from harness.config import TrialConfig
from harness.data.synthetic import Problem
from harness.data.synthetic import load_problem as _generate_problem
from harness.data.tabular import load_digits, load_mnist1d
from harness.data.tensors import ClassificationData, LoaderTrainSet, TensorTrainSet, TrainSet
from harness.data.tabular import MNIST1D_SHAPE
from harness.data.vision import VISION, load_vision

SYNTHETIC = ("leastsq", "ridge", "logreg")
TORCHVISION = ("mnist", "fashion_mnist", "cifar10", "cifar100")

DATASETS: dict[str, Callable] = {
    "digits": load_digits,      # embedded default: offline, real
    "mnist1d": load_mnist1d,    # generated, never downloaded
    **{name: _generate_problem for name in SYNTHETIC},
    **{name: load_vision for name in TORCHVISION},
}


# One example's shape and the class count of each registered classification dataset,
# known without reading any file: `sambench validate` checks models against them.
INPUTS: dict[str, tuple[tuple[int, ...], int]] = {
    "digits": ((1, 8, 8), 10),
    "mnist1d": (MNIST1D_SHAPE, 10),
    **{name: (spec.shape, spec.num_classes) for name, spec in VISION.items()},
}


def resolve_dataset(name: str) -> Callable:
    """The loader of a registered dataset, or of a plug-in named by import path."""
    return resolve("dataset", name, DATASETS, "loader", "(cfg, device)")


def load_classification(cfg: TrialConfig, device: torch.device) -> ClassificationData:
    """The classification dataset ``cfg.dataset`` with its splits on ``device``."""
    if cfg.dataset in SYNTHETIC or (cfg.dataset not in DATASETS and not is_import_path(cfg.dataset)):
        names = ", ".join(name for name in DATASETS if name not in SYNTHETIC)
        raise ConfigError("dataset", cfg.dataset, f"a classification dataset: {names}, or an import path")
    data = resolve_dataset(cfg.dataset)(cfg, device)
    if not isinstance(data, ClassificationData):
        raise ConfigError("dataset", cfg.dataset, "a loader that returns harness.data.ClassificationData "
                          f"(it returned {type(data).__name__})")
    return data


def load_problem(cfg: TrialConfig) -> Problem:
    """The synthetic problem ``cfg.dataset``, generated from ``cfg.problem_seed``."""
    if cfg.dataset not in SYNTHETIC:
        raise ConfigError("dataset", cfg.dataset, f"a synthetic problem: {', '.join(SYNTHETIC)}")
    return DATASETS[cfg.dataset](cfg)


def from_tensors(name: str, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                 y_test: torch.Tensor, device: torch.device, *, normalise: bool = True) -> ClassificationData:
    """A plug-in dataset from in-memory tensors: x is (N, *input_shape), y holds class ids
    0..C-1. With ``normalise``, inputs are standardised by the training split's mean and
    std (one value), as the built-in digits are."""
    from harness.data.tensors import BatchTransform

    x_train, x_test = x_train.float(), x_test.float()
    stats = {"mean": (x_train.mean().item(),), "std": (x_train.std().item(),)} if normalise else {}
    transform = BatchTransform(device, **stats)
    return ClassificationData(
        name=name, input_shape=tuple(x_train.shape[1:]), num_classes=int(max(y_train.max(), y_test.max())) + 1,
        train=TensorTrainSet(x_train, y_train.long(), transform),
        test=TensorTrainSet(x_test, y_test.long(), transform),
    )


__all__ = [
    "DATASETS", "INPUTS", "SYNTHETIC", "TORCHVISION", "ClassificationData", "LoaderTrainSet", "Problem",
    "TensorTrainSet", "TrainSet", "from_tensors", "load_classification", "load_problem", "resolve_dataset",
]
