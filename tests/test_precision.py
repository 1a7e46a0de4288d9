"""The precision, layout and compile keys: bf16 trains as well as fp32 (within the seed
spread), the fp16 loss scale is exact when nothing overflows and skips a step that
overflows in either SAM pass, channels_last and torch.compile match eager, and a trial
with these keys checkpoints and resumes bit-identically."""

from __future__ import annotations

import io
import statistics

import pytest
import torch
import torch.nn.functional as F

from harness.config import ConfigError, TrialConfig
from harness.optim import build_optimizer
from harness.precision import Precision
from harness.trial import build_trial, run_trial

SAM = dict(optimizer="sam", rho=0.05, lr=0.1, momentum=0.9, weight_decay=5e-4, device="cpu")
CPU = torch.device("cpu")


def _final_acc(**keys) -> float:
    return list(run_trial(TrialConfig.from_dict({**SAM, **keys})))[-1]["test_acc"]


@pytest.mark.parametrize("workload", [
    dict(dataset="digits", model="mlp", width=32, epochs=2, batch_size=64),
    dict(dataset="mnist1d", model="mlp", width=64, epochs=2, batch_size=64, train_subset=1000, test_subset=500),
], ids=["digits", "mnist1d"])
def test_bf16_trains_within_the_seed_spread_of_fp32(workload):
    seeds = (0, 1, 2)
    fp32 = [_final_acc(**workload, seed=s) for s in seeds]
    bf16 = [_final_acc(**workload, seed=s, precision="bf16") for s in seeds]
    spread = max(max(fp32) - min(fp32), max(bf16) - min(bf16))
    assert min(bf16) > 1.5 / 10  # it learned: well above chance on 10 classes
    assert abs(statistics.mean(bf16) - statistics.mean(fp32)) <= spread


def _tiny(seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    return model, torch.randn(16, 6), torch.randint(0, 3, (16,))


def _sam_steps(precision: Precision | None, steps: int, poison_pass: int | None = None):
    """``steps`` SAM steps on a tiny model; ``poison_pass`` (1 or 2) puts an inf into the
    gradient of that pass of the last step. Returns the model and the optimizer."""
    model, x, y = _tiny()
    opt = build_optimizer("sam", model.parameters(), lr=0.1, momentum=0.9, rho=0.05, model=model)
    for step in range(steps):
        calls = []

        def closure() -> torch.Tensor:
            calls.append(1)
            loss = F.cross_entropy(model(x), y)
            if poison_pass == len(calls) and step == steps - 1:
                loss = loss + model[0].weight.sum() * float("inf")
            precision.backward(loss) if precision is not None else loss.backward()
            return loss

        precision.step(opt, closure) if precision is not None else opt.step(closure)
    return model, opt


def test_fp16_loss_scale_is_exact_when_nothing_overflows():
    # A power-of-two scale multiplies and divides the fp32 gradients exactly, so the scaled
    # two-pass step equals the optimizer's own unscaled step bit for bit.
    scaled, _ = _sam_steps(Precision("fp16", CPU), steps=3)
    plain, _ = _sam_steps(None, steps=3)
    for a, b in zip(scaled.parameters(), plain.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("poison_pass", [1, 2])
def test_fp16_overflow_in_either_pass_skips_the_step(poison_pass):
    precision = Precision("fp16", CPU)
    before, opt_before = _sam_steps(Precision("fp16", CPU), steps=2)
    after, opt_after = _sam_steps(precision, steps=3, poison_pass=poison_pass)
    for a, b in zip(before.parameters(), after.parameters()):
        assert torch.equal(a, b)  # x is where two good steps left it, exactly
    for a, b in zip(opt_before.state.values(), opt_after.state.values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert precision.skipped_steps == 1 and precision.scaler.scale == 2.0 ** 15
    assert opt_after.t == 3  # the step counts for the lam schedules, as for the lr schedule


def test_gradients_and_ascent_stay_fp32_under_bf16():
    model, x, y = _tiny()
    precision = Precision("bf16", CPU)
    with precision.autocast():
        logits = model(x)
        loss = F.cross_entropy(logits, y)
    precision.backward(loss)
    assert logits.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())


CNN = dict(dataset="digits", model="cnn", width=8, optimizer="unified", lam="1/t", rho=0.05, lr=0.05,
           momentum=0.9, batch_size=64, epochs=2, lr_schedule="cosine", device="cpu", seed=0,
           train_subset=320, test_subset=128)  # 5 steps an epoch


def test_channels_last_matches_eager():
    eager = list(run_trial(TrialConfig.from_dict(CNN)))
    nhwc = list(run_trial(TrialConfig.from_dict({**CNN, "channels_last": True})))
    for a, b in zip(eager, nhwc):  # after 5 and 10 steps; the convolutions sum in another order
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-4)


@pytest.mark.parametrize("keys", [
    dict(precision="bf16", channels_last=True),
    dict(precision="fp16", sampler="importance"),
], ids=["bf16-channels_last", "fp16"])
def test_checkpoint_resume_is_bit_identical_with_precision_keys(keys):
    cfg = TrialConfig.from_dict({**CNN, **keys, "epochs": 3})
    full = list(run_trial(cfg))
    trial = build_trial(cfg)
    stream = trial.records()
    first = [next(stream)]
    buffer = io.BytesIO()
    torch.save(trial.state_dict(), buffer)
    buffer.seek(0)
    resumed = list(run_trial(cfg, checkpoint=torch.load(buffer, weights_only=False)))
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith("time")} for r in rs]  # noqa: E731
    assert strip(first + resumed) == strip(full)
    assert full[-1]["skipped_steps"] == 0


def test_checkpoint_without_precision_state_still_loads():
    cfg = TrialConfig.from_dict(CNN)
    trial = build_trial(cfg)
    next(trial.records())
    state = trial.state_dict()
    del state["precision"]  # as written before the precision keys existed
    assert len(list(run_trial(cfg, checkpoint=state))) == 1


@pytest.mark.parametrize("changes,field,allowed", [
    (dict(precision="fp8"), "precision", "fp32, bf16, fp16"),
    (dict(compile="yes"), "compile", "true or false"),
    (dict(dataset="ridge", model="linear", width=None, step_rule="v2", lr=None, rho=None, lam=0.5,
          sampler="uniform", lr_schedule="constant", batch_size=1, iterations=10, epochs=None,
          train_subset=None, test_subset=None, precision="bf16"), "precision", "synthetic"),
])
def test_bad_precision_keys_name_field_and_allowed_values(changes, field, allowed):
    with pytest.raises(ConfigError) as caught:
        TrialConfig.from_dict({**CNN, **changes})
    assert str(caught.value).startswith(f"{field}: ") and allowed in str(caught.value)


def test_channels_last_on_a_model_without_2d_convolutions_is_a_config_error():
    cfg = TrialConfig.from_dict({**CNN, "model": "mlp", "channels_last": True})
    with pytest.raises(ConfigError, match="channels_last: True is not valid; allowed: false for model mlp"):
        build_trial(cfg)


@pytest.mark.compile
@pytest.mark.timeout(1200)  # the first compile: ~40 s on 2 idle cores, minutes on a busy machine
def test_compile_matches_eager_and_both_sam_passes_reuse_the_graphs():
    """BatchNorm's frozen statistics in the perturbed pass give a second graph once; after
    the first step neither pass compiles again, and nothing breaks the graph."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    cfg = CNN  # 2 epochs of 5 steps
    eager = list(run_trial(TrialConfig.from_dict(cfg)))
    trial = build_trial(TrialConfig.from_dict({**cfg, "compile": True}))
    stream = trial.records()
    compiled = [next(stream)]
    graphs = counters["stats"]["unique_graphs"]
    compiled.append(next(stream))  # 5 more steps of both passes
    assert counters["stats"]["unique_graphs"] == graphs <= 2
    for a, b in zip(eager, compiled):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-4)
    assert not counters["graph_break"]
    assert set(trial.model.state_dict()) == set(build_trial(TrialConfig.from_dict(cfg)).model.state_dict())
