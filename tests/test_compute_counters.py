"""Compute is counted the same way in both engines: ``epoch`` is passes over the data,
``grad_samples`` per-sample gradients (batch size x passes), ``refresh_samples`` the
forward passes of importance-proxy refreshes."""

from __future__ import annotations

import pytest

from harness.config import TrialConfig
from harness.trial import run_trial

N = 200  # training examples in both engines below
NET = dict(dataset="digits", model="mlp", width=16, train_subset=N, test_subset=100, lr=0.05,
           optimizer="sam", rho=0.05, batch_size=64, epochs=2, seed=0)
SYNTHETIC = dict(dataset="ridge", model="linear", n_samples=N, dim=10, reg=0.03, lr=0.01,
                 optimizer="sam", rho=0.05, batch_size=64, epochs=2, seed=0)


def _last(raw: dict) -> dict:
    return list(run_trial(TrialConfig.from_dict(raw)))[-1]


@pytest.mark.parametrize("base", [NET, SYNTHETIC], ids=["network", "synthetic"])
def test_both_engines_count_an_epoch_as_a_pass_and_samples_per_gradient(base):
    # reshuffle, 200 examples in batches of 64: 4 steps a pass (64, 64, 64, 8), 2 passes
    sam = _last({**base, "sampler": "reshuffle"})
    assert (sam["epoch"], sam["iteration"], sam["grad_evals"]) == (2.0, 8, 16)
    assert sam["grad_samples"] == 2 * 2 * N and sam["refresh_samples"] == 0
    sgd = _last({**base, "sampler": "reshuffle", "optimizer": "sgd", "rho": None})
    assert (sgd["grad_evals"], sgd["grad_samples"]) == (8, 2 * N)
    # with replacement every one of the 4 draws a pass holds 64 samples
    uniform = _last({**base, "sampler": "uniform"})
    assert (uniform["epoch"], uniform["grad_samples"]) == (2.0, 2 * 8 * 64)


def test_full_batch_and_batch_one_differ_in_samples_not_in_epochs():
    """The same ``epochs`` is the same number of passes whatever the batch size: full batch
    takes 1 step a pass, batch 1 takes n; both compute 2n per-sample gradients a pass."""
    full = _last({**SYNTHETIC, "sampler": "full", "batch_size": N})
    single = _last({**SYNTHETIC, "sampler": "uniform", "batch_size": 1})
    assert (full["epoch"], full["iteration"], full["grad_evals"]) == (2.0, 2, 4)
    assert (single["epoch"], single["iteration"], single["grad_evals"]) == (2.0, 2 * N, 4 * N)
    assert full["grad_samples"] == single["grad_samples"] == 4 * N


def test_importance_refresh_is_counted_separately():
    """A refresh is a forward pass over all n examples, every ``importance_refresh`` epochs."""
    last = _last({**NET, "sampler": "importance", "epochs": 3, "importance_refresh": 2})
    assert last["refresh_samples"] == 2 * N  # refreshed before epochs 0 and 2
    assert last["grad_samples"] == 2 * 3 * 4 * 64
    assert _last({**SYNTHETIC, "sampler": "importance"})["refresh_samples"] == 0  # exact L_i, no refresh


def test_a_partial_last_epoch_is_a_fraction_of_a_pass():
    last = _last({**NET, "sampler": "reshuffle", "epochs": None, "iterations": 6})
    assert (last["epoch"], last["iteration"]) == (1.5, 6)
    assert last["grad_samples"] == 2 * (N + 2 * 64)
