"""The trial runner without Ray: records, determinism, checkpoint-resume, divergence,
and the config errors a user sees before any work starts."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from harness.config import ConfigError, TrialConfig
from harness.records import RECORD_FIELDS
from harness.trial import build_trial, lr_factor, run_trial

DIGITS = dict(dataset="digits", model="mlp", width=32, optimizer="unified", lam=0.5, rho=0.05,
              lr=0.1, momentum=0.9, weight_decay=5e-4, epochs=3, batch_size=64,
              sampler="importance", seed=0)


def _cfg(**changes) -> TrialConfig:
    return TrialConfig.from_dict({**DIGITS, **changes})


def test_digits_trial_learns_and_fills_every_record_field():
    records = list(run_trial(_cfg(sharpness={"every": 3, "samples": 128, "trace": True})))
    assert [r["epoch"] for r in records] == [1.0, 2.0, 3.0]
    assert all(set(r) == set(RECORD_FIELDS) for r in records)
    last = records[-1]
    assert last["test_acc"] > 0.6 and last["train_loss"] < records[0]["train_loss"]
    assert last["grad_evals"] == 2 * last["iteration"]  # SAM family: two gradients a step
    assert last["lam_max"] > 0 and last["lam_max_hvps"] > 0 and last["trace"] is not None
    assert records[0]["lam_max"] is None  # measured every 3rd evaluation only
    assert last["lam"] == 0.5 and last["rho"] == 0.05
    times = [(r["time_train"], r["time_eval"], r["time_sharpness"], r["time_total"]) for r in records]
    assert all(t[0] > 0 and t[3] >= t[0] + t[1] + t[2] - 1e-6 for t in times)
    assert last["time_sharpness"] > 0


def test_lam_schedule_unit_epoch_holds_lam_for_an_epoch():
    """1-1/t per step is 0.97 after one digits epoch of 27 steps (batch 64); per epoch it is
    1 - 1/e during epoch e, so the record at the end of epoch 2 shows 1 - 1/2."""
    base = dict(optimizer="unified", lam="1-1/t", epochs=2, sampler="reshuffle", augment=None)
    per_step = list(run_trial(_cfg(**base)))
    per_epoch = list(run_trial(_cfg(**base, lam_schedule_unit="epoch")))
    steps = per_step[-1]["iteration"]
    assert per_step[-1]["lam"] == pytest.approx(1 - 1 / steps)
    assert [r["lam"] for r in per_epoch] == pytest.approx([0.0, 0.5])
    assert per_epoch[-1]["train_loss"] != per_step[-1]["train_loss"]


def test_same_config_gives_bit_identical_records():
    cfg = _cfg(epochs=2, augment=None)
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith("time")} for r in rs]  # noqa: E731
    assert strip(run_trial(cfg)) == strip(run_trial(cfg))


@pytest.mark.parametrize("model,sampler", [("mlp", "importance"), ("cnn", "reshuffle")])
def test_checkpoint_resume_is_bit_identical(model, sampler):
    cfg = _cfg(model=model, sampler=sampler, epochs=4, lam="1/t", lr_schedule="cosine")
    full = [r for r in run_trial(cfg)]
    trial = build_trial(cfg)
    stream = trial.records()
    first = [next(stream), next(stream)]
    buffer = io.BytesIO()
    torch.save(trial.state_dict(), buffer)
    buffer.seek(0)
    resumed = list(run_trial(cfg, checkpoint=torch.load(buffer, weights_only=True)))
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith("time")} for r in rs]  # noqa: E731
    assert strip(first + resumed) == strip(full)


def test_divergence_stops_with_status_and_finite_records():
    trial = build_trial(_cfg(optimizer="sgd", lam=None, rho=None, lr=1e6, epochs=5))
    records = list(trial.records())
    assert trial.status == "diverged"
    assert 1 <= len(records) < 5
    for record in records:
        assert all(not (isinstance(v, float) and not math.isfinite(v)) for v in record.values())


def test_sgd_is_one_gradient_per_step_and_reports_no_lam():
    records = list(run_trial(_cfg(optimizer="sgd", lam=None, rho=None, epochs=1)))
    assert records[-1]["grad_evals"] == records[-1]["iteration"]
    assert records[-1]["lam"] is None and records[-1]["rho"] == 0.0


def test_synthetic_problem_runs_through_the_same_entry_point():
    cfg = TrialConfig.from_dict(dict(dataset="ridge", model="linear", reg=0.03, optimizer="sam",
                                     step_rule="v1", sampler="uniform", batch_size=1,
                                     iterations=2000, seed=0))
    records = list(run_trial(cfg))
    assert records[0]["iteration"] == 0 and records[-1]["iteration"] == 2000
    assert records[-1]["rel_subopt"] < records[0]["rel_subopt"]


def test_lr_schedules():
    assert lr_factor("constant", 50, 100) == 1.0
    assert lr_factor("cosine", 0, 100) == 1.0 and lr_factor("cosine", 100, 100) == pytest.approx(0.0)
    assert lr_factor("cosine", 50, 100) == pytest.approx(0.5)
    assert [lr_factor("step", s, 100) for s in (49, 50, 75)] == pytest.approx([1.0, 0.1, 0.01])


@pytest.mark.parametrize("changes,field,allowed", [
    ({"dataset": "imagenet"}, "dataset", "digits"),
    ({"model": "vit"}, "model", "resnet18"),
    ({"optimizer": "adam"}, "optimizer", "unified"),
    ({"sampler": "stratified"}, "sampler", "importance"),
    ({"lam": 1.5}, "lam", "[0, 1]"),
    ({"lam": "1/t^2"}, "lam", "1-1/t"),
    ({"lam_schedule_unit": "batch"}, "lam_schedule_unit", "step, epoch"),
    ({"rho": -0.1}, "rho", ">= 0"),
    ({"lr": -1.0}, "lr", "positive"),
    ({"lr": 0}, "lr", "positive"),
    ({"epochs": 0}, "epochs", ">= 1"),
    ({"iterations": 10}, "epochs", "exactly one"),
    ({"batch_size": 0}, "batch_size", ">= 1"),
    ({"dataset": "cifar10"}, "data_root", "cifar10"),
    ({"dataset": "cifar10", "data_root": "/no/such/folder"}, "data_root", "existing folder"),
    ({"optimizer": "sam", "lam": 0.5}, "lam", "sam"),
    ({"optimizer": "sgd", "rho": 0.1, "lam": None}, "rho", "sgd"),
    ({"step_rule": "v1"}, "step_rule", "synthetic"),
    ({"colour": "red"}, "colour", "a trial config key"),
    ({"sharpness": {"every": 1, "often": True}}, "sharpness.often", "every"),
    ({"device": "tpu"}, "device", "cuda"),
])
def test_bad_config_names_field_and_allowed_values(changes, field, allowed):
    with pytest.raises(ConfigError) as info:
        _cfg(**changes)
    message = str(info.value)
    assert info.value.field == field and message.startswith(f"{field}: ") and allowed in message
    assert "\n" not in message


def test_missing_cuda_is_a_config_error_when_absent():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="device"):
        build_trial(_cfg(device="cuda"))


def test_config_dict_round_trip_is_stable():
    cfg = _cfg()
    assert TrialConfig.from_dict(copy.deepcopy(cfg.to_dict())) == cfg
