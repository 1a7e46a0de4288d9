"""Small offline classification datasets: sklearn's digits and generated MNIST-1D.

Both fit in memory many times over, so they are held as device tensors (tensors.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import hashlib
import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.config import TrialConfig
from harness.data.tensors import BatchTransform, ClassificationData, TensorTrainSet, holdout

# The digits split is fixed by this seed, NOT by the trial seed, so every trial of a
# sweep trains and tests on the same examples and only the training randomness varies.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2
MNIST1D_SHAPE = (1, 40)


def load_digits(cfg: TrialConfig, device: torch.device) -> ClassificationData:
    """sklearn's bundled 8x8 digits (1797 images, 10 classes), a fixed seeded 80/20 split.

    Pixels are stored as x/16 in [0, 1] and standardised per batch with the training
    split's mean and std (of the whole split, so ``train_subset`` and ``val_fraction`` keep
    the same scale).
    """
    from sklearn.datasets import load_digits as sklearn_digits

    x, y = sklearn_digits(return_X_y=True)
    x = (x / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(y))
    n_test = int(round(DIGITS_TEST_FRACTION * len(y)))
    test, train = order[:n_test], order[n_test:]
    mean, std = float(x[train].mean()), float(x[train].std())
    augment = bool(cfg.augment)  # off unless asked for
    fit, val = holdout(len(train), cfg.val_fraction)
    fit, val = train[fit], (None if val is None else train[val])
    return ClassificationData(
        name="digits",
        input_shape=(1, 8, 8),
        num_classes=10,
        train=_tensor_split(x[fit], y[fit], cfg.train_subset, device, mean=mean, std=std, augment=augment),
        test=_tensor_split(x[test], y[test], cfg.test_subset, device, mean=mean, std=std),
        val=None if val is None else _tensor_split(x[val], y[val], None, device, mean=mean, std=std),
    )


def load_mnist1d(cfg: TrialConfig, device: torch.device, *, num_samples: int | None = None) -> ClassificationData:
    """MNIST-1D (Greydanus 2020): 1-D signals of length 40, 10 classes, generated locally
    with the package's default arguments (5000 samples, 4000/1000 split; ``num_samples``
    changes the total, for tests). Never downloaded; the arrays are cached (see
    ``mnist1d_arrays``). The generator already standardises the signals."""
    if cfg.augment:
        raise ConfigError("augment", cfg.augment, "null or false for mnist1d (crop and flip are for images)")
    arrays = mnist1d_arrays(cache_dir(cfg.data_root), num_samples=num_samples)
    signals = {name: arrays[name].reshape((-1,) + MNIST1D_SHAPE) for name in ("x", "x_test")}
    fit, val = holdout(len(arrays["y"]), cfg.val_fraction)
    return ClassificationData(
        name="mnist1d",
        input_shape=MNIST1D_SHAPE,
        num_classes=10,
        train=_tensor_split(signals["x"][fit], arrays["y"][fit], cfg.train_subset, device),
        test=_tensor_split(signals["x_test"], arrays["y_test"], cfg.test_subset, device),
        val=None if val is None else _tensor_split(signals["x"][val], arrays["y"][val], None, device),
    )


def cache_dir(data_root: str | None) -> Path:
    """Where generated data is cached: ``data_root`` if given, else $SAMBENCH_CACHE, else
    ~/.cache/sambench."""
    if data_root is not None:
        return Path(data_root)
    return Path(os.environ.get("SAMBENCH_CACHE") or Path.home() / ".cache" / "sambench")


def mnist1d_arrays(folder: Path, *, num_samples: int | None = None) -> dict[str, np.ndarray]:
    """x (N, 40) float32, y (N,) int64, x_test, y_test: from the cache, else generated with
    ``mnist1d.data.make_dataset`` (about 5 s) and cached as ``mnist1d-<key>.npz``, where the
    key hashes the generation arguments and the package version. The file is written to a
    temporary name and renamed, so concurrent trials never read a partial file."""
    from importlib.metadata import version

    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url")  # the download address; generation never uses it
    if num_samples is not None:
        args["num_samples"] = num_samples
    key_text = json.dumps({"args": args, "mnist1d": version("mnist1d")}, sort_keys=True)
    path = folder / f"mnist1d-{hashlib.sha256(key_text.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return {name: cached[name] for name in cached.files}
    arrays = _generate_mnist1d(args)
    folder.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=folder, prefix=path.name, suffix=".tmp", delete=False)
    try:
        with handle:
            np.savez(handle, **arrays)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return arrays


def _generate_mnist1d(args: dict) -> dict[str, np.ndarray]:
    """Run the package's generator, restoring the global random states it reseeds."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {
        "x": data["x"].astype(np.float32), "y": data["y"].astype(np.int64),
        "x_test": data["x_test"].astype(np.float32), "y_test": data["y_test"].astype(np.int64),
    }


def _tensor_split(
    x: np.ndarray, y: np.ndarray, keep: int | None, device: torch.device, *,
    mean: float | None = None, std: float | None = None, augment: bool = False,
) -> TensorTrainSet:
    """A device-resident split of the first ``keep`` examples (all when None), standardised
    per batch with one ``mean`` and ``std`` when given."""
    x, y = x[:keep], y[:keep]
    stats = {} if mean is None else {"mean": (mean,), "std": (std,)}
    transform = BatchTransform(device, augment=augment, **stats)
    return TensorTrainSet(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)), transform)
