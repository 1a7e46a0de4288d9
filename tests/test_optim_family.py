"""The SAM family against independent references: pytorch_optimizer 4.1.0 (SAM, adaptive SAM,
GSAM, FriendlySAM, LookSAM) where it has the method, the paper's formula written out here
where it does not (VaSSO, Unified variants) or where it disagrees with its paper (F-SAM's
and LookSAM's ``convention: paper``). pytorch_optimizer computes the gradient norm in float32,
so comparisons with it use float32 tolerances on float64 models."""

from __future__ import annotations

import io
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F

pytorch_optimizer = pytest.importorskip("pytorch_optimizer")

from harness.optim import build_optimizer, param_groups, take_step  # noqa: E402
from harness.optim.base import TwoPassSAM  # noqa: E402

SGD_KWARGS = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
LOOSE = dict(rtol=1e-6, atol=1e-8)   # against pytorch_optimizer (float32 norms)
TIGHT = dict(rtol=1e-11, atol=1e-13)  # against formulas written out in float64


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()


def batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(12, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (12,), generator=gen))
            for _ in range(steps)]


def loss_of(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(model(batch[0]), batch[1])


def ours(name: str, data: list, **kwargs: Any) -> tuple[torch.nn.Module, int]:
    """Train with sambench's optimizer through ``take_step``; (model, gradient passes)."""
    model = mlp()
    opt = build_optimizer(name, model.parameters(), model=model, **{**SGD_KWARGS, **kwargs})
    passes = 0
    for batch in data:
        def closure() -> torch.Tensor:
            loss = loss_of(model, batch)
            loss.backward()
            return loss

        passes += take_step(opt, closure, model)[1]
    return model, passes


def two_pass_reference(opt: torch.optim.Optimizer, model: torch.nn.Module, data: list) -> torch.nn.Module:
    """Drive a davda54-style optimizer (first_step / second_step)."""
    for batch in data:
        opt.zero_grad()
        loss_of(model, batch).backward()
        opt.first_step(zero_grad=True)
        loss_of(model, batch).backward()
        opt.second_step(zero_grad=True)
    return model


def formula(data: list, ascent: Callable[[list, list, dict, int], list],
            descent: Callable[[list, list, list, dict, int], list] | None = None) -> torch.nn.Module:
    """SAM-style training written out: ``ascent(params, grads, state, t)`` gives e (None: no
    second pass), ``descent(params, g, g_p, state, t)`` the gradient for the SGD step."""
    model = mlp()
    params = list(model.parameters())
    sgd = torch.optim.SGD(params, **SGD_KWARGS)
    state: dict = {}
    for t, batch in enumerate(data, start=1):
        sgd.zero_grad()
        loss_of(model, batch).backward()
        g = [p.grad.clone() for p in params]
        e = ascent(params, g, state, t)
        g_p = g
        if e is not None:
            saved = [p.detach().clone() for p in params]
            with torch.no_grad():
                for p, ei in zip(params, e):
                    p.add_(ei)
            sgd.zero_grad()
            loss_of(model, batch).backward()
            g_p = [p.grad.clone() for p in params]
            with torch.no_grad():
                for p, x in zip(params, saved):
                    p.copy_(x)
        final = descent(params, g, g_p, state, t) if descent else g_p
        for p, gi in zip(params, final):
            p.grad = gi.clone()
        sgd.step()
    return model


def norm(ts: list) -> torch.Tensor:
    return torch.sqrt(sum((t * t).sum() for t in ts))


def mix(rho: float, lam: float, d: list, eps: float) -> list:
    scale = rho * (1 - lam + lam / (norm(d) + eps))
    return [scale * di for di in d]


def assert_close(a: torch.nn.Module, b: torch.nn.Module, tol: dict) -> None:
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, **tol)


def assert_differs(a: torch.nn.Module, b: torch.nn.Module) -> None:
    assert max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters())) > 1e-6


# -- against pytorch_optimizer -----------------------------------------------------------------
def test_sam_and_asam_match_pytorch_optimizer() -> None:
    data = batches(5)
    for adaptive, name, kwargs in ((False, "sam", {}), (True, "asam", {"optimizer_args": {"eta": 0.0}})):
        ref_model = mlp()
        ref = pytorch_optimizer.SAM(ref_model.parameters(), torch.optim.SGD, rho=0.3, adaptive=adaptive, **SGD_KWARGS)
        model, passes = ours(name, data, rho=0.3, **kwargs)
        assert_close(model, two_pass_reference(ref, ref_model, data), LOOSE)
        assert passes == 10
    # ASAM's eta (the paper's 0.01) really changes the result: the comparison can fail
    assert_differs(ours("asam", data, rho=0.3)[0], ours("asam", data, rho=0.3, optimizer_args={"eta": 0.0})[0])


def test_asam_eta_and_lam_follow_the_formula() -> None:
    data = batches(4)

    def ascent(params, g, state, t):
        T = [p.detach().abs() + 0.05 for p in params]
        d = [ti * gi for ti, gi in zip(T, g)]
        return [ti * ei for ti, ei in zip(T, mix(0.5, 0.3, d, 1e-12))]

    model, _ = ours("asam", data, rho=0.5, lam=0.3, optimizer_args={"eta": 0.05})
    assert_close(model, formula(data, ascent), TIGHT)


class _ConstantRho:
    def __init__(self, rho: float):
        self.rho = rho

    def step(self) -> float:
        return self.rho


def test_gsam_matches_pytorch_optimizer() -> None:
    data = batches(5)
    ref_model = mlp()
    base = torch.optim.SGD(ref_model.parameters(), **SGD_KWARGS)
    ref = pytorch_optimizer.GSAM(ref_model.parameters(), base, ref_model, _ConstantRho(0.3), alpha=0.4)
    for batch in data:
        ref.set_closure(F.cross_entropy, batch[0], batch[1])
        ref.step()
    model, passes = ours("gsam", data, rho=0.3, optimizer_args={"alpha": 0.4})
    assert_close(model, ref_model, LOOSE)
    assert passes == 10
    assert_differs(model, ours("sam", data, rho=0.3)[0])


def test_gsam_rho_follows_the_lr() -> None:
    model = mlp()
    opt = build_optimizer("gsam", model.parameters(), lr=0.1, rho=0.4, optimizer_args={"rho_min": 0.1})
    opt.param_groups[0]["lr"] = 0.05
    assert opt.rho_at(opt.param_groups[0]) == pytest.approx(0.1 + 0.3 * 0.5)


@pytest.mark.parametrize("sigma, lam", [(1.0, 1.0), (0.5, 1.0)])
def test_friendly_sam_reference_convention_matches_pytorch_optimizer(sigma: float, lam: float) -> None:
    data = batches(5)
    ref_model = mlp()
    ref = pytorch_optimizer.FriendlySAM(ref_model.parameters(), torch.optim.SGD, rho=0.3, sigma=sigma, lmbda=0.6,
                                        **SGD_KWARGS)
    args = {"sigma": sigma, "lmbda": 0.6, "convention": "reference"}
    model, _ = ours("friendly_sam", data, rho=0.3, lam=lam, optimizer_args=args)
    assert_close(model, two_pass_reference(ref, ref_model, data), LOOSE)


def test_friendly_sam_paper_convention_follows_the_formula() -> None:
    data = batches(5)

    def ascent(params, g, state, t):  # m_t = lmbda m_{t-1} + (1 - lmbda) g_t, m_0 = 0; d = g - sigma m_t
        m = state.setdefault("m", [torch.zeros_like(gi) for gi in g])
        state["m"] = [0.6 * mi + 0.4 * gi for mi, gi in zip(m, g)]
        return mix(0.3, 0.5, [gi - 0.5 * mi for gi, mi in zip(g, state["m"])], 1e-12)

    paper, _ = ours("friendly_sam", data, rho=0.3, lam=0.5, optimizer_args={"sigma": 0.5, "lmbda": 0.6})
    assert_close(paper, formula(data, ascent), TIGHT)
    reference, _ = ours("friendly_sam", data, rho=0.3, lam=0.5,
                        optimizer_args={"sigma": 0.5, "lmbda": 0.6, "convention": "reference"})
    assert_differs(paper, reference)


def test_looksam_reference_convention_matches_pytorch_optimizer_at_fewer_gradients() -> None:
    data = batches(7)
    ref_model = mlp()
    ref = pytorch_optimizer.LookSAM(ref_model.parameters(), torch.optim.SGD, rho=0.3, k=3, alpha=0.7, **SGD_KWARGS)
    for batch in data:
        ref.zero_grad()
        loss_of(ref_model, batch).backward()

        def closure() -> torch.Tensor:
            ref.zero_grad()
            loss = loss_of(ref_model, batch)
            loss.backward()
            return loss

        ref.step(closure)  # pytorch_optimizer takes two gradients on every step
    model, passes = ours("looksam", data, rho=0.3, optimizer_args={"k": 3, "alpha": 0.7, "convention": "reference"})
    assert_close(model, ref_model, LOOSE)
    assert passes == 7 + 3  # full SAM steps at t = 1, 4, 7; one gradient on the others


def test_looksam_paper_convention_follows_the_formula() -> None:
    data = batches(6)

    def ascent(params, g, state, t):
        return mix(0.3, 1.0, g, 1e-12) if (t - 1) % 2 == 0 else None

    def descent(params, g, g_s, state, t):
        if (t - 1) % 2 == 0:  # g_v: the part of g_s orthogonal to g (global projection)
            coef = sum((a * b).sum() for a, b in zip(g, g_s)) / (norm(g) ** 2 + 1e-12)
            state["gv"] = [b - coef * a for a, b in zip(g, g_s)]
            return g_s
        scale = 0.7 * norm(g) / (norm(state["gv"]) + 1e-12)
        return [a + scale * v for a, v in zip(g, state["gv"])]

    paper, passes = ours("looksam", data, rho=0.3, optimizer_args={"k": 2})
    assert_close(paper, formula(data, ascent, descent), TIGHT)
    assert passes == 9
    assert_differs(paper, ours("looksam", data, rho=0.3, optimizer_args={"k": 2, "convention": "reference"})[0])


# -- VaSSO and Unified VaSSO: the paper's formula ----------------------------------------------
@pytest.mark.parametrize("lam", [1.0, 0.5, "1/t"])
def test_vasso_follows_the_paper(lam: Any) -> None:
    data = batches(5)
    theta = 0.4

    def ascent(params, g, state, t):  # d_1 = g_1; d_t = (1 - theta) d_{t-1} + theta g_t
        state["d"] = [gi.clone() for gi in g] if t == 1 else [(1 - theta) * d + theta * gi
                                                              for d, gi in zip(state["d"], g)]
        lam_t = 1 / t if lam == "1/t" else lam
        return mix(0.2, lam_t, state["d"], 1e-7)

    model, _ = ours("vasso", data, rho=0.2, lam=lam, optimizer_args={"theta": theta})
    assert_close(model, formula(data, ascent), TIGHT)
    assert_differs(model, ours("unified", data, rho=0.2, lam=lam)[0])  # the EMA matters


# -- checkpoints, base optimizers, plug-ins ----------------------------------------------------
@pytest.mark.parametrize("name, args", [("vasso", {}), ("friendly_sam", {}), ("looksam", {"k": 2}), ("gsam", {})])
def test_state_dict_resumes_ema_and_counter(name: str, args: dict) -> None:
    data = batches(6)
    straight, _ = ours(name, data, rho=0.2, optimizer_args=args)
    model = mlp()
    opt = build_optimizer(name, model.parameters(), rho=0.2, optimizer_args=args, **SGD_KWARGS)
    steps = [lambda b=b: (loss_of(model, b).backward(), loss_of(model, b))[1] for b in data]
    for closure in steps[:3]:
        opt.step(closure)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = mlp()
    resumed.load_state_dict(saved["model"])
    opt2 = build_optimizer(name, resumed.parameters(), rho=0.2, optimizer_args=args, **SGD_KWARGS)
    opt2.load_state_dict(saved["opt"])
    assert opt2.t == 3
    for batch in data[3:]:
        def closure(batch=batch) -> torch.Tensor:
            loss = loss_of(resumed, batch)
            loss.backward()
            return loss

        opt2.step(closure)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_adamw_base_matches_pytorch_optimizer_sam_over_adamw() -> None:
    data = batches(4)
    kwargs = dict(lr=1e-2, weight_decay=1e-2)
    ref_model = mlp()
    ref = pytorch_optimizer.SAM(ref_model.parameters(), torch.optim.AdamW, rho=0.1, betas=(0.8, 0.99), **kwargs)
    model = mlp()
    opt = build_optimizer("sam", model.parameters(), rho=0.1, base_optimizer="adamw",
                          base_optimizer_args="{betas: [0.8, 0.99]}", **kwargs)
    assert isinstance(opt.base_optimizer, torch.optim.AdamW)
    for batch in data:
        take_step(opt, lambda batch=batch: (loss_of(model, batch).backward(), loss_of(model, batch))[1])
    assert_close(model, two_pass_reference(ref, ref_model, data), LOOSE)


def test_plugins_run_as_baselines_with_their_gradient_count() -> None:
    data = batches(4)
    plugin_sam, passes = ours("pytorch_optimizer:SAM", data, rho=0.3)  # a two-pass plug-in
    assert passes == 8
    assert_close(plugin_sam, ours("sam", data, rho=0.3)[0], LOOSE)
    adam, passes = ours("torch.optim:Adam", data, lr=1e-2, momentum=0.0, weight_decay=0.0)
    assert passes == 4
    ref = mlp()
    torch_adam = torch.optim.Adam(ref.parameters(), lr=1e-2, weight_decay=0.0)
    for batch in data:
        torch_adam.zero_grad()
        loss_of(ref, batch).backward()
        torch_adam.step()
    for p, q in zip(adam.parameters(), ref.parameters()):
        assert torch.equal(p, q)


def test_weight_decay_skips_norm_and_bias() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2, bias=False))
    groups = param_groups(model, skip_norm_bias=True)
    decayed = {id(p) for p in groups[0]["params"]}
    assert decayed == {id(model[0].weight), id(model[2].weight)}
    assert groups[1]["weight_decay"] == 0.0 and len(groups[1]["params"]) == 3
    opt = build_optimizer("sam", groups, lr=0.1, weight_decay=5e-4)
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0]
    assert isinstance(opt, TwoPassSAM)
    assert param_groups(model, skip_norm_bias=False) == list(model.parameters())


def test_nesterov_reaches_the_base_optimizer() -> None:
    opt = build_optimizer("sam", mlp().parameters(), lr=0.1, momentum=0.9, nesterov=True)
    assert opt.base_optimizer.param_groups[0]["nesterov"] is True
