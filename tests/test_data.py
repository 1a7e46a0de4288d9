"""Classification data: every dataset's offline path, the two TrainSet paths giving the
same batches, and the vectorised crop/flip against a per-sample reference."""

from __future__ import annotations

import os
import pickle
import random
import struct

import numpy as np
import pytest
import torch

from harness.config import ConfigError, TrialConfig
from harness.data import (
    DATASETS,
    SYNTHETIC,
    TORCHVISION,
    LoaderTrainSet,
    TensorTrainSet,
    load_classification,
    load_problem,
)
from harness.data import tabular
from harness.data.tensors import BatchTransform
from harness.data.vision import VISION, load_vision

CPU = torch.device("cpu")


def cfg(**changes) -> TrialConfig:
    return TrialConfig(epochs=1, lr=0.1).replace(**changes)


def test_registry_names():
    assert set(DATASETS) == {"digits", "mnist1d", "leastsq", "ridge", "logreg", "mnist", "fashion_mnist", "cifar10", "cifar100"}
    assert SYNTHETIC == ("leastsq", "ridge", "logreg")
    assert TORCHVISION == ("mnist", "fashion_mnist", "cifar10", "cifar100")
    with pytest.raises(ConfigError, match="classification dataset"):
        load_classification(cfg(dataset="ridge"), CPU)
    with pytest.raises(ConfigError, match="synthetic problem"):
        load_problem(cfg(dataset="digits"))


# -- digits ---------------------------------------------------------------------------------
def test_digits_split_is_fixed_and_independent_of_the_trial_seed():
    a = load_classification(cfg(dataset="digits", seed=0), CPU)
    b = load_classification(cfg(dataset="digits", seed=7), CPU)
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert (a.n_train, a.n_test) == (1438, 359)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not a.augment
    x, y = next(a.train_eval_batches(10_000))
    assert x.shape == (1438, 1, 8, 8) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 1e-5 and abs(x.std().item() - 1.0) < 1e-3  # standardised on train
    assert set(y.tolist()) == set(range(10))
    # the test split holds different images than the training split
    train_rows = {tuple(r) for r in a.train.x.flatten(1).tolist()}
    overlap = sum(tuple(r) in train_rows for r in a.test.x.flatten(1).tolist())
    assert overlap < 5  # sklearn's digits has a handful of exact duplicates, no more


def test_subsets_keep_the_first_examples():
    full = load_classification(cfg(dataset="digits"), CPU)
    part = load_classification(cfg(dataset="digits", train_subset=100, test_subset=30), CPU)
    assert (part.n_train, part.n_test) == (100, 30)
    assert torch.equal(part.train.x, full.train.x[:100]) and torch.equal(part.test.y, full.test.y[:30])


def test_sharpness_subset_is_fixed_by_its_seed_and_clean():
    data = load_classification(cfg(dataset="digits"), CPU)
    x1, y1 = data.sharpness_subset(64, seed=0)
    x2, _ = data.sharpness_subset(64, seed=0)
    x3, _ = data.sharpness_subset(64, seed=1)
    assert x1.shape == (64, 1, 8, 8) and torch.equal(x1, x2) and not torch.equal(x1, x3)
    indices = torch.randperm(data.n_train, generator=torch.Generator().manual_seed(0))[:64].sort().values
    assert torch.equal(x1, data.train.clean(indices)[0]) and torch.equal(y1, data.train.y[indices])
    assert data.sharpness_subset(10_000, seed=0)[0].shape[0] == data.n_train


# -- mnist1d --------------------------------------------------------------------------------
def test_mnist1d_generates_once_then_hits_the_cache(tmp_path, monkeypatch):
    np_state, py_state = np.random.get_state()[1].copy(), random.getstate()
    first = tabular.load_mnist1d(cfg(dataset="mnist1d", data_root=str(tmp_path)), CPU, num_samples=100)
    assert np.array_equal(np.random.get_state()[1], np_state) and random.getstate() == py_state
    assert first.input_shape == (1, 40) and first.num_classes == 10
    assert (first.n_train, first.n_test) == (80, 20)
    assert first.train.x.shape == (80, 1, 40)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].startswith("mnist1d-") and files[0].endswith(".npz")

    def no_generation(args):
        raise AssertionError("generated again despite the cache")

    monkeypatch.setattr(tabular, "_generate_mnist1d", no_generation)
    second = tabular.load_mnist1d(cfg(dataset="mnist1d", data_root=str(tmp_path), seed=3), CPU, num_samples=100)
    assert torch.equal(first.train.x, second.train.x) and torch.equal(first.test.y, second.test.y)
    with pytest.raises(AssertionError, match="generated again"):  # other arguments, other key
        tabular.load_mnist1d(cfg(dataset="mnist1d", data_root=str(tmp_path)), CPU, num_samples=120)


def test_mnist1d_cache_folder_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMBENCH_CACHE", str(tmp_path / "env"))
    assert tabular.cache_dir(None) == tmp_path / "env"
    assert tabular.cache_dir(str(tmp_path / "root")) == tmp_path / "root"
    with pytest.raises(ConfigError, match="augment"):
        tabular.load_mnist1d(cfg(dataset="mnist1d", augment=True), CPU, num_samples=100)


# -- torchvision: synthetic files in the standard formats, and FakeData ------------------------
def _write_cifar10(root, n_per_batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows, labels = {}, {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows[name] = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels[name] = rng.integers(0, 10, size=n_per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows[name], "labels": labels[name]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    train = np.concatenate([rows[f"data_batch_{i}"] for i in range(1, 6)])
    train_labels = sum((labels[f"data_batch_{i}"] for i in range(1, 6)), [])
    return {"x": train, "y": np.array(train_labels), "x_test": rows["test_batch"], "y_test": np.array(labels["test_batch"])}


def _write_idx(path, array: np.ndarray) -> None:
    """The MNIST idx format: magic (0, 0, ubyte=0x08, ndim), big-endian int32 sizes, data."""
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}i", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def _write_mnist(root, folder: str, n_train: int, n_test: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "x": rng.integers(0, 256, size=(n_train, 28, 28)), "y": rng.integers(0, 10, size=n_train),
        "x_test": rng.integers(0, 256, size=(n_test, 28, 28)), "y_test": rng.integers(0, 10, size=n_test),
    }
    for prefix, x, y in (("train", arrays["x"], arrays["y"]), ("t10k", arrays["x_test"], arrays["y_test"])):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
    return arrays


@pytest.fixture
def no_md5(monkeypatch):
    """Our tiny CIFAR files cannot match the real md5 sums; check presence only."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))


def test_cifar10_from_standard_files(tmp_path, no_md5):
    arrays = _write_cifar10(tmp_path, 4, np.random.default_rng(0))
    data = load_classification(cfg(dataset="cifar10", data_root=str(tmp_path)), CPU)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    assert (data.n_train, data.n_test) == (20, 4)
    assert data.augment  # CIFAR trains with crop + flip by default
    assert isinstance(data.train, TensorTrainSet) and data.train.x.dtype == torch.uint8
    # a CIFAR row is R, G, B planes of 32x32 each, row-major
    assert np.array_equal(data.train.x.numpy(), arrays["x"].reshape(20, 3, 32, 32))
    assert np.array_equal(data.test.y.numpy(), arrays["y_test"])
    x, y = next(data.test_batches(3))
    mean = torch.tensor(VISION["cifar10"].mean).view(1, 3, 1, 1)
    std = torch.tensor(VISION["cifar10"].std).view(1, 3, 1, 1)
    expected = (torch.from_numpy(arrays["x_test"][:3].reshape(3, 3, 32, 32)).float() / 255 - mean) / std
    torch.testing.assert_close(x, expected)
    assert torch.equal(y, torch.from_numpy(arrays["y_test"][:3]))


def test_cifar100_from_standard_files(tmp_path, no_md5):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 6), ("test", 2)):
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": [99] * n}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f)
    data = load_classification(cfg(dataset="cifar100", data_root=str(tmp_path)), CPU)
    assert data.num_classes == 100 and (data.n_train, data.n_test) == (6, 2)
    assert data.train.y.tolist() == [99] * 6


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_from_idx_files(tmp_path, name, folder):
    arrays = _write_mnist(tmp_path, folder, 12, 5, np.random.default_rng(2))
    data = load_classification(cfg(dataset=name, data_root=str(tmp_path), train_subset=10), CPU)
    assert data.input_shape == (1, 28, 28) and (data.n_train, data.n_test) == (10, 5)
    assert not data.augment
    assert np.array_equal(data.train.x[:, 0].numpy(), arrays["x"][:10])
    assert np.array_equal(data.test.y.numpy(), arrays["y_test"])
    x, _ = data.train.get(torch.tensor([3]))
    spec = VISION[name]
    expected = (torch.from_numpy(arrays["x"][3]).float() / 255 - spec.mean[0]) / spec.std[0]
    torch.testing.assert_close(x[0, 0], expected)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cifar10", "cifar-10-batches-py/{data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch"),
        ("cifar100", "cifar-100-python/{train, test, meta}"),
        ("mnist", "MNIST/raw/{train-images-idx3-ubyte, train-labels-idx1-ubyte"),
    ],
)
def test_missing_data_is_one_line_naming_folder_and_files(tmp_path, name, expected):
    with pytest.raises(ConfigError) as info:
        load_classification(cfg(dataset=name, data_root=str(tmp_path)), CPU)
    message = str(info.value)
    assert "\n" not in message and info.value.field == "data_root"
    assert str(tmp_path) in message and expected in message and "download: true" in message


def test_corrupt_files_are_a_config_error(tmp_path):
    _write_cifar10(tmp_path, 2, np.random.default_rng(0))  # real md5 check: these do not match
    with pytest.raises(ConfigError, match="torchvision said: Dataset not found or corrupted"):
        load_classification(cfg(dataset="cifar10", data_root=str(tmp_path)), CPU)


@pytest.mark.parametrize("name, shape, classes, sizes", [
    ("cifar10", (3, 32, 32), 10, (500, 100)), ("cifar100", (3, 32, 32), 100, (500, 100)),
    ("fashion_mnist", (1, 28, 28), 10, (600, 100)),
])
def test_fake_data_has_the_real_shape_and_a_hundredth_of_the_size(name, shape, classes, sizes):
    # through the Dataset path, so the sizes are checked without generating every image
    lazy = load_vision(cfg(dataset=name, fake_data=True), CPU, in_memory_limit=0, loader_workers=0)
    assert lazy.input_shape == shape and lazy.num_classes == classes
    assert (lazy.n_train, lazy.n_test) == sizes
    x, y = lazy.train.get(torch.arange(8), torch.Generator().manual_seed(0))
    assert x.shape == (8, *shape) and x.dtype == torch.float32 and y.max() < classes
    small = load_classification(cfg(dataset=name, fake_data=True, train_subset=16, test_subset=16), CPU)
    assert small.train.x.dtype == torch.uint8 and small.train.x.shape == (16, *shape)
    assert not torch.equal(small.train.x, small.test.x)  # train and test images differ


# -- the two TrainSet paths and the batch augmentation ---------------------------------------
def test_loader_path_gives_the_same_batches_as_the_tensor_path():
    config = cfg(dataset="cifar10", fake_data=True, train_subset=64, test_subset=20)
    memory = load_vision(config, CPU)
    loader = load_vision(config, CPU, in_memory_limit=0, loader_workers=0)
    assert isinstance(memory.train, TensorTrainSet) and isinstance(loader.train, LoaderTrainSet)
    assert loader.augment and loader.n_train == 64
    indices = torch.tensor([5, 0, 63, 17, 17, 42])
    xm, ym = memory.train.get(indices, torch.Generator().manual_seed(11))
    xl, yl = loader.train.get(indices, torch.Generator().manual_seed(11))
    assert torch.equal(xm, xl) and torch.equal(ym, yl)
    for (a, ya), (b, yb) in zip(memory.train_eval_batches(24), loader.train_eval_batches(24), strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)
    test_m, test_l = list(memory.test_batches(8)), list(loader.test_batches(8))
    assert [len(b[1]) for b in test_m] == [8, 8, 4]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(test_m, test_l, strict=True))
    assert torch.equal(memory.sharpness_subset(16, 3)[0], loader.sharpness_subset(16, 3)[0])


def _reference_crop_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Per-sample crop of the zero-padded image, then a horizontal flip: what
    torchvision's RandomCrop(padding=4) + RandomHorizontalFlip do to one image."""
    height, width = x.shape[-2:]
    out = []
    for image, (top, left), flip in zip(x, offsets.T.tolist(), flips.tolist()):
        padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
        crop = padded[:, top : top + height, left : left + width]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


def test_crop_and_flip_match_a_per_sample_reference():
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    transform = BatchTransform(CPU, augment=True)
    out = transform.crop_and_flip(x, torch.Generator().manual_seed(5))
    draws = torch.Generator().manual_seed(5)  # the same draws, in the documented order
    offsets = torch.randint(0, 9, (2, 64), generator=draws)
    flips = torch.rand(64, generator=draws) < 0.5
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(out, _reference_crop_flip(x, offsets, flips, 4))
    assert 16 < flips.sum() < 48 and (offsets != 4).any(dim=0).sum() > 40
    changed = (out != x).flatten(1).any(1)
    assert changed.sum() >= 60  # almost every image moved (offset (4, 4) and no flip keeps it)
    again = transform.crop_and_flip(x, torch.Generator().manual_seed(5))
    other = transform.crop_and_flip(x, torch.Generator().manual_seed(6))
    assert torch.equal(out, again) and not torch.equal(out, other)


def test_get_augments_only_when_asked_and_needs_a_generator():
    x = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(10)
    plain = TensorTrainSet(x, y, BatchTransform(CPU, mean=(0.5,) * 3, std=(0.25,) * 3, scale=1 / 255))
    augmented = TensorTrainSet(x, y, BatchTransform(CPU, mean=(0.5,) * 3, std=(0.25,) * 3, scale=1 / 255, augment=True))
    idx = torch.arange(10)
    torch.testing.assert_close(plain.get(idx)[0], (x.float() / 255 - 0.5) / 0.25)
    assert torch.equal(plain.get(idx, torch.Generator())[0], plain.clean(idx)[0])
    assert not torch.equal(augmented.get(idx, torch.Generator().manual_seed(0))[0], augmented.clean(idx)[0])
    with pytest.raises(ValueError, match="Generator"):
        augmented.get(idx)


@pytest.mark.parametrize("augment", [False, True])
def test_split_normalised_once_gives_the_per_batch_values_bit_for_bit(augment):
    """Without augmentation a batch comes from a copy normalised once; it must equal the
    per-batch transform of the stored values exactly. With augmentation no copy is kept."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=generator)
    transform = BatchTransform(CPU, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3], scale=1 / 255, augment=augment)
    split = TensorTrainSet(x, torch.arange(50) % 10, transform)
    indices = torch.randperm(50, generator=generator)[:17]
    expected = transform.normalise(x[indices])
    assert torch.equal(split.clean(indices)[0], expected)
    assert torch.equal(torch.cat([b for b, _ in split.batches(16)]), transform.normalise(x))
    if augment:
        assert split.normalised() is None
    else:
        assert torch.equal(split.get(indices)[0], expected) and split.normalised() is not None
        assert torch.equal(split.get(indices)[1], split.y[indices])
