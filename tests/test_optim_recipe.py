"""The SAM family through the config and the trial runner: gradient counts in the records,
the recipe keys, default rho, and one-line refusals."""

from __future__ import annotations

import math

import pytest

from harness.config import ConfigError, TrialConfig
from harness.trial import lr_factor, run_trial

TINY = dict(dataset="digits", model="mlp", width=16, epochs=1, batch_size=64, train_subset=256, test_subset=64, lr=0.05)


def test_records_count_looksams_skipped_ascents() -> None:
    cfg = TrialConfig.from_dict({**TINY, "optimizer": "looksam", "optimizer_args": {"k": 2}})
    assert cfg.optimizer_args == '{"k": 2}' and cfg.rho == 0.05 and cfg.lam == 1.0
    record = list(run_trial(cfg))[-1]
    assert record["iteration"] == 4 and record["grad_evals"] == 2 + 1 + 2 + 1  # SAM would take 8


def test_recipe_keys_run_and_default_to_todays_behaviour() -> None:
    plain = TrialConfig.from_dict({**TINY, "optimizer": "sam"})
    assert (plain.warmup_epochs, plain.nesterov, plain.label_smoothing, plain.grad_clip,
            plain.wd_skip_norm_bias, plain.base_optimizer) == (0.0, False, 0.0, None, False, "sgd")
    cfg = TrialConfig.from_dict({**TINY, "optimizer": "vasso", "lam": 0.5, "momentum": 0.9, "nesterov": True,
                                 "warmup_epochs": 0.5, "label_smoothing": 0.1, "grad_clip": 1.0,
                                 "weight_decay": 5e-4, "wd_skip_norm_bias": True, "lr_schedule": "cosine"})
    records = list(run_trial(cfg))
    assert records[-1]["grad_evals"] == 8 and records[-1]["lam"] == 0.5
    assert [lr_factor("constant", s, 10, warmup=4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor("cosine", 4, 10, warmup=4) == 1.0 and lr_factor("cosine", 10, 10, warmup=4) == pytest.approx(0.0)
    assert lr_factor("cosine", 3, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.3)))  # no warm-up: as before


@pytest.mark.parametrize("raw, field", [
    ({"optimizer": "vasso", "dataset": "ridge", "model": "linear", "epochs": None, "iterations": 10}, "optimizer"),
    ({"optimizer": "sam", "dataset": "ridge", "model": "linear", "epochs": None, "iterations": 10, "grad_clip": 1.0},
     "grad_clip"),
    ({"optimizer": "sam", "nesterov": True}, "nesterov"),
    ({"optimizer": "sam", "label_smoothing": 1.5}, "label_smoothing"),
    ({"optimizer": "sam", "warmup_epochs": -1}, "warmup_epochs"),
    ({"optimizer": "sam", "base_optimizer": "adam"}, "base_optimizer"),
    ({"optimizer": "sam", "base_optimizer": "adamw", "base_optimizer_args": {"betas": [0.9, 2.0]}},
     "base_optimizer_args"),
    ({"optimizer": "nope.module:Opt"}, "optimizer"),
    ({"optimizer": "vasso", "optimizer_args": "{theta: [1, 2"}, "optimizer_args"),
])
def test_bad_settings_fail_in_one_line(raw: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrialConfig.from_dict({**TINY, **raw})
    assert info.value.field == field and "\n" not in str(info.value)
