"""Sharpness in finite precision: the error estimate against float64 references on a
model of a million parameters, the three ways to compute a product, and mixed precision
(bf16 autocast training, bf16 parameters) leaving training bit-identical."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from harness.sharpness import HessianOperator, lanczos_top_eigenvalue, measure_sharpness
from test_sharpness import exact_hessian, gen, tiny_mlp_problem


def million_parameter_problem():
    """Softmax regression, 250,000 inputs x 4 classes (1,000,004 float32 parameters), on 3
    examples: a rank-9 Hessian whose spectrum has a closed form."""
    torch.manual_seed(0)
    model = nn.Linear(250_000, 4)
    g = gen(1)
    return model, nn.functional.cross_entropy, torch.randn(3, 250_000, generator=g), torch.tensor([0, 2, 3])


def float64_top_eigenvalue(model: nn.Linear, x: torch.Tensor) -> float:
    """The formula, in float64: H = (1/n) sum_i M_i (x) z_i z_i^T, with M_i = diag(p_i) -
    p_i p_i^T and z_i = (x_i, 1), so H = J^T B J (B = blockdiag(M_i) / n, J's rows
    e_c (x) z_i^T) shares its non-zero spectrum with B^(1/2) J J^T B^(1/2), where
    J J^T = (Z Z^T) (x) I."""
    w, b, x = model.weight.detach().double(), model.bias.detach().double(), x.double()
    p = torch.softmax(x @ w.T + b, dim=1)
    n, c = p.shape
    blocks = torch.block_diag(*[torch.diag(pi) - torch.outer(pi, pi) for pi in p]) / n
    z = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    gram = torch.kron(z @ z.T, torch.eye(c, dtype=torch.float64))
    evals, evecs = torch.linalg.eigh(blocks)
    root = evecs @ torch.diag(evals.clamp_min(0).sqrt()) @ evecs.T
    return torch.linalg.eigvalsh(root @ gram @ root)[-1].item()


def test_error_estimate_bounds_the_float32_error_on_a_million_parameters():
    model, loss_fn, x, y = million_parameter_problem()
    reference = float64_top_eigenvalue(model, x)
    op = HessianOperator(model, loss_fn, x, y)
    assert op.dim > 1_000_000 and op.dtype == torch.float32
    result = lanczos_top_eigenvalue(op, generator=gen(0))
    assert result.converged
    assert 0 < abs(result.value - reference) <= result.error <= 1e-6 * abs(result.value)
    # A target below the float32 products' rounding: it stops at that floor, unconverged,
    # long before max_iter, and the estimate still covers the actual error.
    floor = lanczos_top_eigenvalue(op, generator=gen(0), tol=1e-13)
    assert not floor.converged and floor.hvps < 30
    assert 0 < abs(floor.value - reference) <= floor.error


@pytest.mark.parametrize("hvp,batch_size", [("graph", None), ("recompute", 24), ("jvp", 24), ("jvp", None)])
def test_every_product_mode_is_the_exact_hessian(hvp, batch_size):
    model, loss_fn, x, y = tiny_mlp_problem()
    hessian = exact_hessian(model, loss_fn, x, y)
    with HessianOperator(model, loss_fn, x, y, hvp=hvp, batch_size=batch_size) as op:
        for seed in range(2):  # the graph mode differentiates its kept graph twice
            v = torch.randn(op.dim, generator=gen(seed), dtype=torch.float64)
            torch.testing.assert_close(op.matvec(v), hessian @ v, rtol=1e-10, atol=1e-12)
        assert op.mode == hvp and op.hvps == 2


def test_auto_mode_keeps_the_graph_within_the_memory_budget_and_chunks_beyond_it():
    model, loss_fn, x, y = tiny_mlp_problem()
    roomy = HessianOperator(model, loss_fn, x, y)
    assert roomy.mode == "graph" and roomy.batch_size == 64 and 0 < roomy.graph_bytes < 2**20
    tight = HessianOperator(model, loss_fn, x, y, memory_budget=int(roomy.graph_bytes // 3))
    assert tight.mode == "recompute" and 1 <= tight.batch_size <= 64 // 3
    v = torch.randn(roomy.dim, generator=gen(0), dtype=torch.float64)
    torch.testing.assert_close(tight.matvec(v), roomy.matvec(v), rtol=1e-12, atol=1e-14)


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.GELU())
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.body(x))


def train_bf16(measure: bool) -> tuple[list[torch.Tensor], dict]:
    """bf16 autocast on CPU (by hand, as a training loop would), SGD with momentum; one
    measurement from inside the autocast region after the first step when asked."""
    torch.manual_seed(3)
    model = SmallNet()
    data, labels = torch.randn(64, 6), torch.randint(0, 3, (64,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    out: dict = {}
    for step in range(4):
        idx = torch.randint(0, 64, (16,))
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(data[idx]), labels[idx])
            if measure and step == 1:
                subset = (data[:32].clone(), labels[:32].clone())
                out = measure_sharpness(model, nn.functional.cross_entropy, *subset, seed=1)
                assert torch.equal(subset[0], data[:32]) and torch.equal(subset[1], labels[:32])
                out["outside"] = measure_sharpness(model, nn.functional.cross_entropy, *subset, seed=1)
        loss.backward()
        opt.step()
    return [t.detach().clone() for t in [*model.parameters(), *model.buffers()]], out


def test_bf16_autocast_training_continues_bit_identically_and_products_are_float32():
    with_, out = train_bf16(measure=True)
    without, _ = train_bf16(measure=False)
    assert all(torch.equal(a, b) for a, b in zip(with_, without))
    # autocast is off inside the operator: measuring inside the region gives the same
    # numbers as outside it, and float32 products reach the 1e-6 target
    assert out["lam_max"] == out["outside"]["lam_max"] and out["lam_max_error"] <= 1e-6 * out["lam_max"]


def test_bf16_parameters_get_float32_products_and_stay_untouched():
    model, loss_fn, x, y = tiny_mlp_problem()
    low = model.to(torch.bfloat16)
    before = [p.detach().clone() for p in low.parameters()]
    op = HessianOperator(low, loss_fn, x.float(), y)
    assert op.dtype == torch.float32
    out = measure_sharpness(low, loss_fn, x.float(), y)
    twin = measure_sharpness(copy.deepcopy(low).float(), loss_fn, x.float(), y)
    assert out["lam_max"] == twin["lam_max"]
    assert all(p.dtype == torch.bfloat16 and torch.equal(p, b) for p, b in zip(low.parameters(), before))

