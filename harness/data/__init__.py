"""The dataset registry: a name -> loader for every dataset a config can name.

Classification loaders take ``(cfg, device)`` and return a ``ClassificationData`` whose
splits serve device batches by index (tensors.py); synthetic problems take ``(cfg)`` and
return a numpy ``Problem`` with its constants (synthetic.py). Adding a dataset is one
loader and one line here. torchvision, sklearn and mnist1d are imported inside the
loaders, so importing this package (config validation does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.config import TrialConfig
from harness.data.synthetic import Problem
from harness.data.synthetic import load_problem as _generate_problem
from harness.data.tabular import load_digits, load_mnist1d
from harness.data.tensors import ClassificationData, LoaderTrainSet, TensorTrainSet, TrainSet
from harness.data.vision import load_vision

SYNTHETIC = ("leastsq", "ridge", "logreg")
TORCHVISION = ("mnist", "fashion_mnist", "cifar10", "cifar100")

DATASETS: dict[str, Callable] = {
    "digits": load_digits,      # embedded default: offline, real
    "mnist1d": load_mnist1d,    # generated, never downloaded
    **{name: _generate_problem for name in SYNTHETIC},
    **{name: load_vision for name in TORCHVISION},
}


def load_classification(cfg: TrialConfig, device: torch.device) -> ClassificationData:
    """The classification dataset ``cfg.dataset`` with its splits on ``device``."""
    if cfg.dataset not in DATASETS or cfg.dataset in SYNTHETIC:
        names = ", ".join(name for name in DATASETS if name not in SYNTHETIC)
        raise ConfigError("dataset", cfg.dataset, f"a classification dataset: {names}")
    return DATASETS[cfg.dataset](cfg, device)


def load_problem(cfg: TrialConfig) -> Problem:
    """The synthetic problem ``cfg.dataset``, generated from ``cfg.problem_seed``."""
    if cfg.dataset not in SYNTHETIC:
        raise ConfigError("dataset", cfg.dataset, f"a synthetic problem: {', '.join(SYNTHETIC)}")
    return DATASETS[cfg.dataset](cfg)


__all__ = [
    "DATASETS", "SYNTHETIC", "TORCHVISION", "ClassificationData", "LoaderTrainSet", "Problem",
    "TensorTrainSet", "TrainSet", "load_classification", "load_problem",
]
