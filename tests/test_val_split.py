"""The validation split: held out of the training data with a fixed seed, disjoint from
what the trial trains on, the same for every trial seed, recorded as val_loss/val_acc."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.config import ConfigError, TrialConfig
from harness.data import load_classification
from harness.data.tensors import holdout
from harness.records import RECORD_FIELDS
from harness.trial import run_trial

CPU = torch.device("cpu")


def test_holdout_is_a_fixed_disjoint_partition():
    fit, val = holdout(1000, 0.2)
    assert len(val) == 200 and len(fit) == 800
    assert np.intersect1d(fit, val).size == 0 and np.union1d(fit, val).tolist() == list(range(1000))
    assert np.all(np.diff(fit) > 0) and np.all(np.diff(val) > 0)  # stored order kept
    again_fit, again_val = holdout(1000, 0.2)
    assert np.array_equal(val, again_val) and np.array_equal(fit, again_fit)
    no_split = holdout(10, 0.0)
    assert no_split[1] is None and no_split[0].tolist() == list(range(10))
    assert len(holdout(10, 0.01)[1]) == 1 and len(holdout(10, 0.99)[1]) == 9  # never empty on either side


@pytest.mark.parametrize("dataset", ["digits", "mnist1d"])
def test_sizes_disjointness_and_independence_of_the_trial_seed(dataset, tmp_path):
    extra = {"data_root": str(tmp_path)} if dataset == "mnist1d" else {}
    if dataset == "mnist1d":
        from harness.data import tabular

        def load(cfg):
            return tabular.load_mnist1d(cfg, CPU, num_samples=500)
    else:
        def load(cfg):
            return load_classification(cfg, CPU)
    base = dict(dataset=dataset, model="mlp", epochs=1, lr=0.1, **extra)
    plain = load(TrialConfig.from_dict(base))
    split = load(TrialConfig.from_dict({**base, "val_fraction": 0.25}))
    other_seed = load(TrialConfig.from_dict({**base, "val_fraction": 0.25, "seed": 7}))
    n = plain.n_train
    assert plain.val is None
    assert split.val.n == round(0.25 * n) and split.n_train == n - split.val.n
    # The two parts are exactly the original training split, split in two.
    joined = torch.cat([split.train.x, split.val.x])
    assert sorted(map(bytes, joined.numpy().reshape(n, -1))) == sorted(map(bytes, plain.train.x.numpy().reshape(n, -1)))
    assert torch.equal(split.test.x, plain.test.x)  # the test split is untouched
    assert torch.equal(other_seed.val.x, split.val.x) and torch.equal(other_seed.train.x, split.train.x)
    # train_subset takes the first N of the remaining training examples: validation is unchanged
    subset = load(TrialConfig.from_dict({**base, "val_fraction": 0.25, "train_subset": 50}))
    assert torch.equal(subset.val.x, split.val.x) and torch.equal(subset.train.x, split.train.x[:50])


def test_vision_split_reads_the_held_out_images_by_index():
    cfg = TrialConfig.from_dict(dict(dataset="mnist", model="mlp", fake_data=True, epochs=1, lr=0.1,
                                     val_fraction=0.1))
    data = load_classification(cfg, CPU)
    plain = load_classification(cfg.replace(val_fraction=0.0), CPU)
    assert data.val.n == 60 and data.n_train == 540
    fit, val = holdout(600, 0.1)
    assert torch.equal(data.val.x, plain.train.x[torch.as_tensor(val)])
    assert torch.equal(data.train.x, plain.train.x[torch.as_tensor(fit)])


def test_records_carry_val_columns_only_with_a_split():
    assert list(RECORD_FIELDS)[list(RECORD_FIELDS).index("test_acc") + 1:][:2] == ["val_loss", "val_acc"]
    base = dict(dataset="digits", model="mlp", width=16, epochs=2, lr=0.1, train_subset=200)
    with_split = list(run_trial(TrialConfig.from_dict({**base, "val_fraction": 0.2})))
    without = list(run_trial(TrialConfig.from_dict(base)))
    assert len(with_split) == 2
    for record in with_split:
        assert 0.0 <= record["val_acc"] <= 1.0 and record["val_loss"] > 0
        assert record["val_acc"] != record["test_acc"] or record["val_loss"] != record["test_loss"]
    assert all(r["val_loss"] is None and r["val_acc"] is None for r in without)


@pytest.mark.parametrize("raw, allowed", [
    (dict(dataset="digits", val_fraction=1.0), "[0, 1)"),
    (dict(dataset="digits", val_fraction="half"), "[0, 1)"),
    (dict(dataset="ridge", model="linear", val_fraction=0.1), "synthetic problem"),
])
def test_bad_val_fraction_is_one_line(raw, allowed):
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_dict({"epochs": 1, "lr": 0.1, **raw} if raw["dataset"] == "digits"
                              else {"iterations": 10, "rho": 0.1, "optimizer": "sam", "lr": 0.1, **raw})
    assert "val_fraction" in str(err.value) and allowed in str(err.value) and "\n" not in str(err.value)
