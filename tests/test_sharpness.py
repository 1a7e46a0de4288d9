"""Sharpness against exact answers: a tiny MLP's full Hessian, ridge regression's analytic
Hessian, a designed indefinite quadratic; plus the promise that measuring leaves training
untouched (modes, .grad, random streams)."""

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from harness.config import ConfigError
from harness.sharpness import (
    HessianOperator,
    hutchinson_trace,
    lanczos_top_eigenvalue,
    measure_sharpness,
    power_iteration,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_mlp_problem():
    """183 parameters, float64; its two top eigenvalues are 3% apart (0.8429, 0.8674)."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(5, 20), nn.Tanh(), nn.Linear(20, 3)).double()
    g = gen(2)
    x = torch.randn(64, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=g)
    return model, nn.functional.cross_entropy, x, y


def exact_hessian(model, loss_fn, x, y) -> torch.Tensor:
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(w):
        pieces = [c.view(s) for c, s in zip(w.split([s.numel() for s in shapes]), shapes)]
        return loss_fn(functional_call(model, dict(zip(names, pieces)), (x,)), y)

    return torch.autograd.functional.hessian(loss_of, flat)


class Quadratic(nn.Module):
    """f(w) = 0.5 w^T H w for every input: the loss Hessian is exactly H."""

    def __init__(self, hessian: torch.Tensor):
        super().__init__()
        self.register_buffer("hessian", hessian)
        self.w = nn.Parameter(torch.ones(len(hessian), dtype=hessian.dtype))

    def forward(self, x):
        return (0.5 * self.w @ self.hessian @ self.w).expand(len(x))


def quadratic_op(eigenvalues: torch.Tensor, rotate: bool) -> HessianOperator:
    hessian = torch.diag(eigenvalues)
    if rotate:
        q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=gen(7), dtype=torch.float64))
        hessian = q @ hessian @ q.T
    x = torch.zeros(4, 1, dtype=torch.float64)
    return HessianOperator(Quadratic(hessian), lambda out, _: out.mean(), x, torch.zeros(4))


def test_matvec_matches_full_hessian_with_uneven_chunks():
    model, loss_fn, x, y = tiny_mlp_problem()
    hessian = exact_hessian(model, loss_fn, x, y)
    op = HessianOperator(model, loss_fn, x, y, batch_size=24)  # chunks 24, 24, 16
    v = torch.randn(op.dim, generator=gen(0), dtype=torch.float64)
    assert op.dim == 183
    torch.testing.assert_close(op.matvec(v), hessian @ v, rtol=1e-10, atol=1e-12)
    assert op.hvps == 1


def test_lanczos_matches_exact_top_eigenvalue_of_tiny_mlp():
    model, loss_fn, x, y = tiny_mlp_problem()
    exact = torch.linalg.eigvalsh(exact_hessian(model, loss_fn, x, y))[-1].item()
    op = HessianOperator(model, loss_fn, x, y, batch_size=24)
    for seed in range(3):
        result = lanczos_top_eigenvalue(op, generator=gen(seed), tol=1e-6)
        assert result.converged
        assert result.hvps <= 15  # it stops on the eigenvalue's error, not the vector's
        assert abs(result.value - exact) <= result.error <= 1e-6 * abs(result.value)
        assert result.error < result.residual  # the gap bound, sharper than the residual
        assert result.seconds > 0


def test_lanczos_reports_non_convergence_when_the_budget_is_too_small():
    model, loss_fn, x, y = tiny_mlp_problem()
    op = HessianOperator(model, loss_fn, x, y)
    result = lanczos_top_eigenvalue(op, generator=gen(0), max_iter=3, tol=1e-6)
    assert not result.converged
    assert result.hvps == 3
    assert result.error > 1e-6 * abs(result.value)


def test_power_iteration_tol_bounds_the_change_not_the_error():
    model, loss_fn, x, y = tiny_mlp_problem()
    exact = torch.linalg.eigvalsh(exact_hessian(model, loss_fn, x, y))[-1].item()
    op = HessianOperator(model, loss_fn, x, y)
    errors = [abs(power_iteration(op, generator=gen(seed), tol=1e-3).value - exact) / exact for seed in range(3)]
    # close top eigenvalues: PyHessian's rule stops with errors well above its tol
    assert max(errors) > 1e-2
    assert all(e < 5e-2 for e in errors)


def ridge_problem(reg: float):
    g = gen(3)
    a = torch.randn(50, 8, generator=g, dtype=torch.float64) * torch.linspace(0.5, 3.0, 8, dtype=torch.float64)
    b = torch.randn(50, generator=g, dtype=torch.float64)
    model = nn.Linear(8, 1, bias=False).double()

    def loss_fn(out, target):
        return 0.5 * ((out.squeeze(-1) - target) ** 2).mean() + 0.5 * reg * model.weight.pow(2).sum()

    hessian = a.T @ a / len(a) + reg * torch.eye(8, dtype=torch.float64)
    return model, loss_fn, a, b, hessian


def test_ridge_top_eigenvalue_and_trace_match_analytic_hessian():
    model, loss_fn, a, b, hessian = ridge_problem(reg=0.3)
    op = HessianOperator(model, loss_fn, a, b, batch_size=16)  # chunks 16, 16, 16, 2
    top = torch.linalg.eigvalsh(hessian)[-1].item()
    eig = lanczos_top_eigenvalue(op, generator=gen(0))
    assert eig.converged and eig.hvps <= 8
    assert abs(eig.value - top) <= eig.error <= 1e-6 * top

    tr = hutchinson_trace(op, generator=gen(0), samples=400)
    assert tr.hvps == 400
    assert abs(tr.value - torch.trace(hessian).item()) < 4 * tr.stderr
    # Rademacher variance per probe is 2 * sum_{i != j} H_ij^2
    off = hessian - torch.diag(torch.diag(hessian))
    expected_stderr = math.sqrt(2 * off.pow(2).sum().item() / 400)
    assert tr.stderr == pytest.approx(expected_stderr, rel=0.2)


def test_indefinite_hessian_lanczos_is_algebraic_power_is_magnitude():
    others = torch.linspace(-1.0, 3.5, 48, dtype=torch.float64)
    eigenvalues = torch.cat([torch.tensor([-5.0, 4.0], dtype=torch.float64), others])
    op = quadratic_op(eigenvalues, rotate=True)
    lanczos = lanczos_top_eigenvalue(op, generator=gen(0))
    assert lanczos.converged
    assert abs(lanczos.value - 4.0) <= lanczos.error <= 4e-6
    power = power_iteration(op, generator=gen(0), max_iter=500)
    assert power.value == pytest.approx(-5.0, rel=1e-2)


def test_hutchinson_is_exact_on_a_diagonal_hessian():
    eigenvalues = torch.tensor([-5.0, 1.0, 2.0, 3.5, 0.25], dtype=torch.float64)
    result = hutchinson_trace(quadratic_op(eigenvalues, rotate=False), generator=gen(0), samples=5)
    assert result.value == pytest.approx(1.75, abs=1e-12)
    assert result.stderr == pytest.approx(0.0, abs=1e-12)


class NetWithState(nn.Module):
    """Dropout and BatchNorm: results differ between train and eval mode."""

    def __init__(self, dropout: float = 0.5):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 12), nn.BatchNorm1d(12), nn.Tanh(), nn.Dropout(dropout))
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        return self.head(self.body(x))


def test_measurement_uses_eval_mode_and_restores_modes_grads_and_buffers():
    torch.manual_seed(0)
    model = NetWithState().double()
    x, y = torch.randn(40, 4, dtype=torch.float64), torch.randint(0, 3, (40,))
    model(x)  # move BatchNorm's running stats away from their initial values
    model.train()
    model.head.eval()  # a mixed state must survive as it is
    grad = torch.full_like(model.head.weight, 0.5)
    model.head.weight.grad = grad
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    modes = {name: m.training for name, m in model.named_modules()}

    out = measure_sharpness(model, nn.functional.cross_entropy, x, y, trace=True, batch_size=16)

    assert set(out) == {"lam_max", "lam_max_hvps", "lam_max_residual", "lam_max_error", "trace", "trace_hvps",
                        "seconds"}
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert model.head.weight.grad is grad and torch.equal(grad, torch.full_like(grad, 0.5))
    assert all(p.grad is None for name, p in model.named_parameters() if name != "head.weight")
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())
    # eval mode inside: dropout off, so the dropout rate cannot change the measurement
    twin = NetWithState(dropout=0.0).double()
    twin.load_state_dict(model.state_dict())
    again = measure_sharpness(twin, nn.functional.cross_entropy, x, y, trace=True, batch_size=16)
    assert again["lam_max"] == pytest.approx(out["lam_max"], rel=1e-12)
    assert again["trace"] == pytest.approx(out["trace"], rel=1e-12)
    assert out["trace_hvps"] == 20 and out["lam_max_error"] <= 1e-6 * abs(out["lam_max"])


def train(measure: bool) -> list[torch.Tensor]:
    torch.manual_seed(11)
    model = NetWithState()
    data, labels = torch.randn(100, 4), torch.randint(0, 3, (100,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(6):
        if measure and step == 3:
            measure_sharpness(model, nn.functional.cross_entropy, data[:32], labels[:32], trace=True, seed=5)
        idx = torch.randint(0, 100, (16,))  # batches and dropout masks from the global RNG
        opt.zero_grad()
        nn.functional.cross_entropy(model(data[idx]), labels[idx]).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def test_training_is_bit_identical_with_a_measurement_in_the_middle():
    for with_, without in zip(train(measure=True), train(measure=False)):
        assert torch.equal(with_, without)


def test_measure_sharpness_power_method_and_bad_method():
    model, loss_fn, x, y = tiny_mlp_problem()
    out = measure_sharpness(model, loss_fn, x, y, method="power")
    assert out["trace"] is None and out["trace_hvps"] is None
    assert 0.8 < out["lam_max"] < 0.8674 + 1e-9  # a Rayleigh quotient never exceeds lam_max
    with pytest.raises(ConfigError, match="sharpness_method"):
        measure_sharpness(model, loss_fn, x, y, method="arnoldi")


def test_loss_linear_in_the_parameters_has_a_zero_hessian():
    model = nn.Linear(3, 2).double()
    x = torch.randn(10, 3, generator=gen(1), dtype=torch.float64)
    op = HessianOperator(model, lambda out, _: out.mean(), x, torch.zeros(10))
    assert torch.equal(op.matvec(torch.ones(op.dim, dtype=torch.float64)), torch.zeros(op.dim, dtype=torch.float64))
    result = lanczos_top_eigenvalue(op, generator=gen(0))
    assert result.converged and result.value == 0.0 and result.hvps == 1


def test_lanczos_basis_grows_past_its_first_allocation():
    # Eigenvalues packed just below the top need many Lanczos steps: more than the 16
    # basis vectors allocated at first, so the doubling path must keep the basis intact.
    eigenvalues = torch.cat([torch.tensor([10.0]), torch.linspace(9.0, 9.9, 299)]).double()
    op = quadratic_op(eigenvalues, rotate=True)
    result = lanczos_top_eigenvalue(op, generator=gen(0), max_iter=200, tol=1e-10)
    assert result.converged and result.hvps > 16
    assert abs(result.value - 10.0) < 1e-8
