"""UnifiedSAM against straightforward references: SAM, USAM, the lam schedules, plain SGD
bit for bit at rho = 0, checkpoints, runtime changes of rho, BatchNorm policy, names."""

from __future__ import annotations

import io
from typing import Callable

import pytest
import torch
import torch.nn.functional as F

from harness.config import ConfigError
from harness.optim import OPTIMIZERS, UnifiedSAM, build_optimizer, lam_at
from harness.optim.base import scaled_into

SGD_KWARGS = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
EPS = 1e-12
APIS = ("closure", "two_pass")


def mlp(bn: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    layers = [torch.nn.Linear(5, 16)] + ([torch.nn.BatchNorm1d(16)] if bn else []) + [torch.nn.Tanh(), torch.nn.Linear(16, 3)]
    return torch.nn.Sequential(*layers).double()


def batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(12, 5, generator=generator, dtype=torch.float64), torch.randint(0, 3, (12,), generator=generator))
        for _ in range(steps)
    ]


def loss_of(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    inputs, targets = batch
    return F.cross_entropy(model(inputs), targets)


def train(opt: UnifiedSAM, model: torch.nn.Module, data: list, api: str) -> list[float]:
    """Drive ``opt`` over ``data`` with one of its two APIs; returns the clean-pass losses."""
    losses = []
    for batch in data:
        if api == "closure":
            def closure() -> torch.Tensor:
                loss = loss_of(model, batch)
                loss.backward()
                return loss

            losses.append(opt.step(closure).item())
        else:
            loss = loss_of(model, batch)
            loss.backward()
            losses.append(loss.item())
            opt.first_step()
            if opt.needs_second_pass:
                with opt.perturbed_pass():
                    loss_of(model, batch).backward()
            opt.second_step()
    return losses


Perturbation = Callable[[list[torch.Tensor], int], list[torch.Tensor]]


def reference(model: torch.nn.Module, data: list, perturbation: Perturbation) -> list[float]:
    """SAM-style training written out per parameter: grad at x, e from the grads, grad at
    x + e, put x back, SGD step. ``perturbation(grads, t)`` gives e."""
    base = torch.optim.SGD(model.parameters(), **SGD_KWARGS)
    params = list(model.parameters())
    losses = []
    for t, batch in enumerate(data, start=1):
        base.zero_grad()
        loss = loss_of(model, batch)
        loss.backward()
        losses.append(loss.item())
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, e in zip(params, perturbation([p.grad for p in params], t)):
                p.add_(e)
        base.zero_grad()
        loss_of(model, batch).backward()
        with torch.no_grad():
            for p, x in zip(params, saved):
                p.copy_(x)
        base.step()
    return losses


def grad_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((g * g).sum() for g in grads))


def sam(rho: float) -> Perturbation:
    return lambda grads, t: [rho * g / (grad_norm(grads) + EPS) for g in grads]


def usam(rho: float) -> Perturbation:
    return lambda grads, t: [rho * g for g in grads]


def unified(rho: float, lam: Callable[[int], float]) -> Perturbation:
    return lambda grads, t: [rho * (1 - lam(t) + lam(t) / (grad_norm(grads) + EPS)) * g for g in grads]


def assert_same_params(a: torch.nn.Module, b: torch.nn.Module, atol: float = 1e-12) -> None:
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=atol)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "lam, perturbation",
    [(1.0, sam(0.2)), (0.0, usam(0.2)), (0.3, unified(0.2, lambda t: 0.3))],
    ids=["sam", "usam", "lam0.3"],
)
def test_fixed_lam_matches_reference(api: str, lam: float, perturbation: Perturbation) -> None:
    data = batches(5)
    ours, ref = mlp(), mlp()
    opt = UnifiedSAM(ours.parameters(), rho=0.2, lam=lam, **SGD_KWARGS)
    losses = train(opt, ours, data, api)
    ref_losses = reference(ref, data, perturbation)
    assert_same_params(ours, ref)
    assert losses == pytest.approx(ref_losses, rel=1e-12)  # step(closure) returns the clean loss
    assert opt.t == 5
    # the SAM and USAM directions really differ, so each comparison can fail
    other = mlp()
    reference(other, data, usam(0.2) if lam == 1.0 else sam(0.2))
    assert max((p - q).abs().max().item() for p, q in zip(ours.parameters(), other.parameters())) > 1e-6


def test_lam_schedule_values() -> None:
    assert [lam_at("1/t", t) for t in (1, 2, 3, 4)] == pytest.approx([1.0, 0.5, 1 / 3, 0.25])
    assert [lam_at("1-1/t", t) for t in (1, 2, 3, 4)] == pytest.approx([0.0, 0.5, 2 / 3, 0.75])
    assert lam_at(0.4, 7) == 0.4
    for bad in ("1/t^2", 1.5, -0.1, True, float("nan")):
        with pytest.raises(ConfigError):
            lam_at(bad, 1)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "schedule, lam", [("1/t", lambda t: 1 / t), ("1-1/t", lambda t: 1 - 1 / t)], ids=["1/t", "1-1/t"]
)
def test_schedule_uses_lam_t_once_per_step(api: str, schedule: str, lam: Callable[[int], float]) -> None:
    data = batches(4)
    ours, ref = mlp(), mlp()
    opt = UnifiedSAM(ours.parameters(), rho=0.3, lam=schedule, **SGD_KWARGS)
    assert opt.current_lam() == lam(1)
    train(opt, ours, data, api)
    reference(ref, data, unified(0.3, lam))
    assert_same_params(ours, ref)
    assert opt.t == 4
    assert opt.current_lam(opt.param_groups[0]) == pytest.approx(lam(4))


def test_an_epoch_wise_schedule_ticks_once_every_lam_every_steps() -> None:
    """lam_every=2 (two steps an epoch): steps 1-2 use lam_1, steps 3-4 lam_2, step 5 lam_3."""
    data = batches(5)
    ours, ref = mlp(), mlp()
    opt = UnifiedSAM(ours.parameters(), rho=0.3, lam="1-1/t", lam_every=2, **SGD_KWARGS)
    train(opt, ours, data, "closure")
    tick = {1: 1, 2: 1, 3: 2, 4: 2, 5: 3}
    reference(ref, data, unified(0.3, lambda t: 1 - 1 / tick[t]))
    assert_same_params(ours, ref)
    assert opt.current_lam() == pytest.approx(1 - 1 / 3)
    with pytest.raises(ConfigError, match="lam_every"):
        UnifiedSAM(mlp().parameters(), lam="1/t", lam_every=0, **SGD_KWARGS)


@pytest.mark.parametrize("api", APIS)
def test_rho_zero_is_sgd_bit_for_bit(api: str) -> None:
    data = batches(4)
    ours, ref = mlp(bn=True), mlp(bn=True)
    opt = build_optimizer("sgd", ours.parameters(), model=ours, **SGD_KWARGS)
    assert not opt.needs_second_pass
    calls = 0

    def counted_loss(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        nonlocal calls
        calls += 1
        loss = loss_of(ours, batch)
        loss.backward()
        return loss

    for batch in data:
        if api == "closure":
            opt.step(lambda: counted_loss(batch))
        else:
            counted_loss(batch)
            opt.first_step()
            opt.second_step()
    sgd = torch.optim.SGD(ref.parameters(), **SGD_KWARGS)
    for batch in data:
        sgd.zero_grad()
        loss_of(ref, batch).backward()
        sgd.step()
    assert calls == len(data)
    for p, q in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(p, q)
        assert torch.equal(opt.state[p]["momentum_buffer"], sgd.state[q]["momentum_buffer"])
    for a, b in zip(ours.buffers(), ref.buffers()):
        assert torch.equal(a, b)


def test_state_dict_round_trip_resumes_schedule_and_momentum() -> None:
    data = batches(6)
    model = mlp()
    opt = UnifiedSAM(model.parameters(), rho=0.3, lam="1-1/t", **SGD_KWARGS)
    train(opt, model, data[:3], "closure")
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    assert saved["opt"]["t"] == 3

    resumed = mlp()
    resumed.load_state_dict(saved["model"])
    opt2 = UnifiedSAM(resumed.parameters(), rho=0.05, lam=0.0, **SGD_KWARGS)
    opt2.load_state_dict(saved["opt"])
    assert opt2.t == 3 and opt2.param_groups[0]["lam"] == "1-1/t" and opt2.param_groups[0]["rho"] == 0.3
    assert opt2.base_optimizer.param_groups is opt2.param_groups and opt2.base_optimizer.state is opt2.state
    train(opt, model, data[3:], "closure")
    train(opt2, resumed, data[3:], "two_pass")
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    assert opt2.t == 6
    with pytest.raises(ValueError, match="'t'"):
        opt2.load_state_dict(torch.optim.SGD(resumed.parameters(), lr=0.1).state_dict())


def test_param_group_changes_take_effect() -> None:
    data = batches(2)
    ours, ref = mlp(), mlp()
    opt = UnifiedSAM(ours.parameters(), rho=0.05, lam=1.0, **SGD_KWARGS)
    opt.param_groups[0]["rho"] = 0.4
    train(opt, ours, data, "closure")
    reference(ref, data, sam(0.4))
    assert_same_params(ours, ref)

    opt.param_groups[0]["rho"] = 0.0
    assert not opt.needs_second_pass
    opt.param_groups[0]["rho"] = -1.0
    with pytest.raises(ConfigError, match="rho"):
        opt.first_step()

    # one set of groups: an LR scheduler on the wrapper drives the base optimizer's lr
    assert opt.base_optimizer.param_groups[0] is opt.param_groups[0]
    opt.param_groups[0]["rho"] = 0.1
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    train(opt, ours, data[:1], "closure")
    scheduler.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def bn_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()


@pytest.mark.parametrize("api", APIS)
def test_bn_running_stats_come_from_clean_pass_only(api: str) -> None:
    batch = batches(1)[0]
    clean = bn_model()
    clean(batch[0])  # one training-mode forward at x: the expected statistics
    expected = clean[1]

    model = bn_model()
    opt = UnifiedSAM(model.parameters(), rho=0.5, lam=1.0, model=model, **SGD_KWARGS)
    train(opt, model, [batch], api)
    bn = model[1]
    assert torch.equal(bn.running_mean, expected.running_mean)
    assert torch.equal(bn.running_var, expected.running_var)
    assert bn.num_batches_tracked.item() == 1 and bn.track_running_stats

    both = bn_model()
    opt = UnifiedSAM(both.parameters(), rho=0.5, lam=1.0, model=both, bn_policy="both", **SGD_KWARGS)
    train(opt, both, [batch], api)
    assert both[1].num_batches_tracked.item() == 2
    assert (both[1].running_mean - expected.running_mean).abs().max() > 1e-6


def test_names_map_to_settings() -> None:
    assert list(OPTIMIZERS)[:4] == ["sgd", "sam", "usam", "unified"]
    assert (OPTIMIZERS["sgd"].lam, OPTIMIZERS["sam"].lam, OPTIMIZERS["usam"].lam) == ("none", 1.0, 0.0)
    params = list(mlp().parameters())
    sgd = build_optimizer("sgd", params, lr=0.1)
    assert (sgd.param_groups[0]["rho"], sgd.param_groups[0]["lam"]) == (0.0, None)
    assert not sgd.needs_second_pass and sgd.current_lam() is None
    assert isinstance(sgd.base_optimizer, torch.optim.SGD)
    for name, lam in (("sam", 1.0), ("usam", 0.0)):
        opt = build_optimizer(name, params, lr=0.1, rho=0.1, momentum=0.9, weight_decay=5e-4)
        group = opt.param_groups[0]
        assert (group["rho"], group["lam"], group["momentum"], group["weight_decay"]) == (0.1, lam, 0.9, 5e-4)
        assert opt.needs_second_pass
    opt = build_optimizer("unified", params, lr=0.1, rho=0.2, lam="1/t", bn_policy="both")
    assert (opt.param_groups[0]["lam"], opt.bn_policy) == ("1/t", "both")
    # rho left out: each method's documented default (SAM's 0.05, ASAM's larger 0.5)
    assert build_optimizer("sam", params, lr=0.1).param_groups[0]["rho"] == 0.05
    assert build_optimizer("asam", params, lr=0.1).param_groups[0]["rho"] == 0.5
    assert build_optimizer("vasso", params, lr=0.1).param_groups[0]["lam"] == 1.0

    for name, kwargs, field in (
        ("adam", {"rho": 0.1}, "optimizer"),
        ("sgd", {"rho": 0.1}, "rho"),
        ("sgd", {"lam": 0.5}, "lam"),
        ("sam", {"rho": 0.1, "lam": 0.5}, "lam"),
        ("usam", {"rho": -1.0}, "rho"),
        ("unified", {"rho": 0.1}, "lam"),
        ("unified", {"rho": 0.1, "lam": "1/t2"}, "lam"),
        ("vasso", {"lam": 1.5}, "lam"),
        ("sam", {"rho": 0.1, "bn_policy": "perturbed"}, "bn_policy"),
        ("vasso", {"optimizer_args": {"theta": 2.0}}, "optimizer_args.theta"),
        ("vasso", {"optimizer_args": {"eta": 0.1}}, "optimizer_args.eta"),
        ("looksam", {"optimizer_args": {"k": 0}}, "optimizer_args.k"),
        ("friendly_sam", {"optimizer_args": "{convention: code}"}, "optimizer_args.convention"),
        ("sam", {"base_optimizer": "adamw", "momentum": 0.9}, "momentum"),
        ("sam", {"base_optimizer": "torch.optim:Nope"}, "base_optimizer"),
        ("sam", {"base_optimizer_args": "{betas: [0.9, 0.99]}"}, "base_optimizer_args.betas"),
        ("torch.optim:Adam", {"lam": 0.5}, "lam"),
        ("torch.optim:Adam", {"rho": 0.5}, "rho"),
        ("collections:OrderedDict", {}, "optimizer"),
    ):
        with pytest.raises(ConfigError) as info:
            build_optimizer(name, params, lr=0.1, **kwargs)
        assert info.value.field == field, (name, kwargs)
        assert "\n" not in str(info.value)


def test_eps_placement_and_zero_gradient() -> None:
    weight = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    unused = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = UnifiedSAM([weight, unused], rho=0.1, lam=0.5, lr=0.1)
    weight.grad = torch.tensor([6e-13, 8e-13, 0.0, 0.0], dtype=torch.float64)  # ||g|| = 1e-12 = eps
    opt.first_step(zero_grad=False)
    # e = rho * (1 - lam + lam / (||g|| + eps)) * g = 0.1 * (0.5 + 0.5 / 2e-12) * g
    torch.testing.assert_close(weight.detach(), 0.1 * (0.5 + 0.25e12) * weight.grad, rtol=1e-12, atol=0)
    assert torch.equal(unused, torch.ones(3, dtype=torch.float64))
    opt.second_step()
    assert weight.grad is None and torch.all(weight == -0.1 * torch.tensor([6e-13, 8e-13, 0, 0], dtype=torch.float64))

    weight.grad = torch.zeros(4, dtype=torch.float64)
    opt.first_step(zero_grad=False)
    assert torch.all(torch.isfinite(weight)) and torch.all(weight.grad == 0)
    opt.second_step()


def test_restore_is_exact_and_misuse_is_caught() -> None:
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    opt = UnifiedSAM(model.parameters(), rho=0.7, lam=0.0, lr=0.0)
    train(opt, model, batches(5), "two_pass")  # lr 0: the weights must come back bit for bit
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))

    with pytest.raises(RuntimeError, match="without first_step"):
        opt.second_step()
    loss_of(model, batches(1)[0]).backward()
    opt.first_step()
    with pytest.raises(RuntimeError, match="twice"):
        opt.first_step()
    with pytest.raises(TypeError, match="closure"):
        opt.step()


def test_multiple_groups_share_one_global_norm() -> None:
    data = batches(3)
    ours, ref = mlp(), mlp()
    first, second = ours[0], ours[2]
    opt = UnifiedSAM(
        [{"params": first.parameters(), "rho": 0.3, "lam": 1.0}, {"params": second.parameters(), "rho": 0.0}],
        lam=None, **SGD_KWARGS,
    )
    assert opt.needs_second_pass and opt.current_lam(1) is None
    train(opt, ours, data, "closure")

    def first_layer_only(grads: list[torch.Tensor], t: int) -> list[torch.Tensor]:
        scale = 0.3 / (grad_norm(grads) + EPS)  # the norm runs over every gradient
        return [scale * g if i < 2 else torch.zeros_like(g) for i, g in enumerate(grads)]

    reference(ref, data, first_layer_only)
    assert_same_params(ours, ref)


def test_ascent_point_is_the_formula_bit_for_bit_in_float32() -> None:
    """x + e is computed without a temporary (``scaled_into``); it must still be exactly
    x + fl(g * scale), the products and sum the formula gives, on float32 weights."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape)) for shape in ((64, 3, 3, 3), (64,), (10, 512), (10,))]
    for p in params:
        p.grad = torch.randn_like(p)
    grads = [p.grad.clone() for p in params]
    x = [p.detach().clone() for p in params]
    opt = UnifiedSAM(params, rho=0.05, lam=0.7, lr=0.1)
    opt.first_step(zero_grad=False)
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    scale = 0.05 * (1.0 - 0.7 + 0.7 / (norm + EPS))
    for p, x0, g in zip(params, x, grads):
        assert torch.equal(p.detach(), x0 + g * scale)
    opt.second_step()
    params[0].grad = torch.randn_like(params[0])  # a second step reuses the spare buffers
    before = params[0].detach().clone()
    opt.first_step(zero_grad=False)
    scale = 0.05 * (1.0 - 0.7 + 0.7 / (params[0].grad.norm() + EPS))
    assert torch.equal(params[0].detach(), before + params[0].grad * scale)
    opt.second_step()


def test_scaled_into_matches_foreach_mul() -> None:
    torch.manual_seed(0)
    tensors = [torch.randn(7, 5), torch.randn(3), torch.randn(2, 2, 2, dtype=torch.float64)]
    scale = torch.tensor(0.37)
    out = [torch.empty_like(t) for t in tensors]
    scaled_into(out, tensors, scale)
    assert all(torch.equal(o, r) and o.dtype == r.dtype for o, r in zip(out, torch._foreach_mul(tensors, scale)))
