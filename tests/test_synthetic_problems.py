"""Synthetic problems: constants against their definitions, exact gradients, f*, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from harness.config import ConfigError, TrialConfig
from harness.data import load_problem


def problem(**changes):
    return load_problem(TrialConfig(epochs=1, lr=0.1, model="linear").replace(**changes))


CASES = {
    "leastsq": dict(dataset="leastsq", consistent=False, n_samples=60, dim=30),
    "ridge": dict(dataset="ridge", reg=0.03, consistent=False),
    "ridge_tall": dict(dataset="ridge", reg=0.01, n_samples=60, dim=20, cond=5.0),
    "spread": dict(dataset="ridge", reg=0.03, spectrum="spread", consistent=False),
    "logreg": dict(dataset="logreg", reg=0.01, n_samples=50, dim=10, cond=4.0),
}


@pytest.mark.parametrize("case", CASES)
def test_constants_follow_their_definitions(case):
    p = problem(**CASES[case])
    hessian_eigs = np.linalg.eigvalsh(p.hessian(p.x0))
    row_norms = (p.A**2).sum(axis=1)
    if p.kind == "logreg":
        assert p.L == pytest.approx(np.linalg.eigvalsh(p.A.T @ p.A / p.n)[-1] / 4 + p.reg, rel=1e-12)
        assert np.allclose(p.L_i, row_norms / 4 + p.reg, rtol=1e-12)
        assert p.mu == p.reg and hessian_eigs[-1] <= p.L * (1 + 1e-12)  # the Hessian is bounded by L
        assert set(np.unique(p.b)) == {-1.0, 1.0}
    else:
        assert p.L == pytest.approx(hessian_eigs[-1], rel=1e-12)
        assert p.mu == pytest.approx(hessian_eigs[0], rel=1e-9)
        assert np.allclose(p.L_i, row_norms + p.reg, rtol=1e-12)
    assert p.L_max == p.L_i.max() and p.L_bar == pytest.approx(p.L_i.mean(), rel=1e-15)
    assert p.L <= p.L_bar * (1 + 1e-12)  # lam_max of a mean <= the mean of lam_max
    assert p.constants()["L_max"] == p.L_max and p.constants()["n"] == p.n


@pytest.mark.parametrize("case", CASES)
def test_gradients_are_exact(case):
    p = problem(**CASES[case])
    rng = np.random.default_rng(0)
    x, v = rng.standard_normal(p.d), rng.standard_normal(p.d)
    h = 1e-5
    directional = (p.loss(x + h * v) - p.loss(x - h * v)) / (2 * h)
    assert p.grad(x) @ v == pytest.approx(directional, rel=1e-7)
    hessian_v = (p.grad(x + h * v) - p.grad(x - h * v)) / (2 * h)
    assert np.allclose(p.hessian(x) @ v, hessian_v, rtol=1e-6, atol=1e-8)
    # the weighted minibatch estimate: full batch with unit weights is the gradient, and
    # importance sampling (p_i ~ L_i, w_i = 1/(n p_i)) is unbiased, in exact expectation
    assert np.allclose(p.grad_batch(x, np.arange(p.n), np.ones(p.n)), p.grad(x), rtol=1e-12, atol=1e-14)
    probs = p.L_i / p.L_i.sum()
    expectation = sum(probs[i] * p.grad_batch(x, np.array([i]), np.array([1 / (p.n * probs[i])])) for i in range(p.n))
    assert np.allclose(expectation, p.grad(x), rtol=1e-10, atol=1e-12)
    batch = np.array([3, 1, 3])
    manual = np.mean([p.grad_batch(x, np.array([i])) for i in batch], axis=0)
    assert np.allclose(p.grad_batch(x, batch), manual, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", CASES)
def test_f_star_is_the_minimum(case):
    p = problem(**CASES[case])
    assert np.linalg.norm(p.grad(p.x_star)) < 1e-10 * max(1.0, np.linalg.norm(p.grad(p.x0)))
    assert p.loss(p.x_star) == pytest.approx(p.f_star, rel=1e-12, abs=1e-15)
    assert p.f_star > 0  # none of these cases is consistent with reg = 0
    rng = np.random.default_rng(1)
    assert all(p.loss(p.x_star + 1e-3 * rng.standard_normal(p.d)) > p.f_star for _ in range(5))


@pytest.mark.parametrize("kind", ["leastsq", "ridge"])
def test_consistent_without_regulariser_has_f_star_zero(kind):
    p = problem(dataset=kind, consistent=True, reg=0.0, n_samples=40, dim=30)
    assert p.f_star == 0.0 and p.loss(p.x_star) < 1e-20
    assert p.loss(p.x0) > 1.0


@pytest.mark.parametrize("n, d", [(50, 50), (60, 20), (20, 60)])
def test_design_has_the_requested_condition_number(n, d):
    p = problem(dataset="ridge", n_samples=n, dim=d, cond=25.0, consistent=False)
    s = np.linalg.svd(p.A, compute_uv=False)
    assert s[0] / s[-1] == pytest.approx(25.0, rel=1e-9)
    assert s[0] * s[-1] == pytest.approx(1.0, rel=1e-9)  # singular values centred on 1
    if n == d:
        assert np.allclose(p.A, p.A.T) and np.linalg.eigvalsh(p.A)[0] > 0  # SPD
    # n < d: mu is the smallest NON-ZERO eigenvalue of A^T A / n, so L / mu = cond^2 there too
    assert p.L / p.mu == pytest.approx(25.0**2, rel=1e-9)


@pytest.mark.parametrize("kind, reg", [("leastsq", 0.0), ("ridge", 0.0), ("ridge", 0.05)])
def test_pl_constant_when_n_is_below_d(kind, reg):
    """n = 50 < d = 100: f is PL with mu = the smallest non-zero eigenvalue of the Hessian
    A^T A / n + reg I. Checked against an independent eigensolver (the n x n Gram matrix
    A A^T / n holds exactly the non-zero eigenvalues of A^T A / n), by the PL inequality
    at random points, and for tightness along the eigenvector where it must be an equality."""
    p = problem(dataset=kind, n_samples=50, dim=100, cond=10.0, reg=reg)
    nonzero = np.linalg.eigvalsh(p.A @ p.A.T / p.n)  # the n non-zero eigenvalues of A^T A / n
    expected = reg if reg > 0 else nonzero[0]       # reg > 0: the null space of A gives lam_min = reg
    assert p.mu == pytest.approx(expected, rel=1e-9) and p.mu > 0
    if kind == "leastsq":  # the reference's sum normalisation: eigenvalues of A'^T A' are 0.1 .. 10
        assert p.mu == pytest.approx(0.1, rel=1e-9)
    rng = np.random.default_rng(1)
    ratios = []
    for _ in range(2000):
        x = p.x_star + rng.standard_normal(p.d) * rng.uniform(0.01, 10.0)
        g = p.grad(x)
        ratios.append(g @ g / (2 * (p.loss(x) - p.f_star)))
    assert min(ratios) >= p.mu * (1 - 1e-9)
    eigs, vecs = np.linalg.eigh(p.hessian(p.x0))
    v = vecs[:, np.argmin(np.where(eigs > 1e-9 * eigs[-1], eigs, np.inf))]  # the eigenvector of mu
    g = p.grad(p.x_star + v)
    assert g @ g / (2 * (p.loss(p.x_star + v) - p.f_star)) == pytest.approx(p.mu, rel=1e-6)


def test_leastsq_matches_the_reference_normalisation():
    """The reference's LeastSquares minimises 1/2||A'x - b'||^2 with L = lam_max(A'^T A'):
    for cond 10 that is L = 10, mu = 0.1; our A is sqrt(n) A' (same design as ridge)."""
    lsq = problem(dataset="leastsq", cond=10.0)
    ridge = problem(dataset="ridge", cond=10.0)
    assert (lsq.L, lsq.mu) == (pytest.approx(10.0, rel=1e-12), pytest.approx(0.1, rel=1e-9))
    assert np.allclose(lsq.A, np.sqrt(100) * ridge.A) and np.allclose(lsq.b, np.sqrt(100) * ridge.b)
    x = np.random.default_rng(2).standard_normal(100)
    assert lsq.loss(x) == pytest.approx(0.5 * np.sum((ridge.A @ x - ridge.b) ** 2), rel=1e-12)
    assert np.linalg.cond(lsq.A) == pytest.approx(10.0, rel=1e-9)


def test_spread_design_of_figure_3():
    p = problem(dataset="ridge", reg=0.03, cond=10.0, spectrum="spread", consistent=False)
    eigs = np.linalg.eigvalsh(p.A)
    assert eigs[0] == pytest.approx(1.0) and eigs[-1] == pytest.approx(10.0)
    assert np.all((eigs[1:-1] >= 1.0) & (eigs[1:-1] <= 2.0))
    assert p.L == pytest.approx(100 / 100 + 0.03) and p.mu == pytest.approx(1 / 100 + 0.03)
    # the reference (seed 3107) has L_bar 3.30, L_max 8.41: very unequal L_i
    assert 3.0 < p.L_bar < 3.7 and p.L_max > 2 * p.L_bar
    with pytest.raises(ConfigError, match="spread needs n_samples == dim"):
        problem(dataset="ridge", spectrum="spread", n_samples=120)


def test_problem_seed_fixes_the_problem_and_the_trial_seed_does_not_touch_it():
    a = problem(dataset="ridge", reg=0.03, seed=0)
    b = problem(dataset="ridge", reg=0.03, seed=9)
    c = problem(dataset="ridge", reg=0.03, problem_seed=1)
    assert np.array_equal(a.A, b.A) and np.array_equal(a.b, b.b) and np.array_equal(a.x0, b.x0)
    assert not np.allclose(a.A, c.A) and not np.allclose(a.x0, c.x0)
    inconsistent = problem(dataset="ridge", reg=0.03, consistent=False)
    assert np.array_equal(a.x0, inconsistent.x0) and np.array_equal(a.A, inconsistent.A)
    assert not np.allclose(a.b, inconsistent.b)
    assert 0.5 < np.std(a.x0) < 1.5  # x0 ~ N(0, I)


def test_bad_problems_are_config_errors():
    with pytest.raises(ConfigError, match="separable"):
        problem(dataset="logreg", reg=0.0, n_samples=20, dim=20)  # random labels, full rank
    with pytest.raises(ConfigError, match="dim"):
        problem(dataset="ridge", dim=1)


def test_logreg_without_regulariser_on_overlapping_classes():
    p = problem(dataset="logreg", reg=0.0, n_samples=200, dim=5)  # random labels: not separable
    assert p.mu == 0.0 and 0.0 < p.f_star < np.log(2)
    assert np.linalg.norm(p.grad(p.x_star)) < 1e-12


def test_problem_seed_is_validated_with_the_config():
    base = dict(dataset="ridge", model="linear", optimizer="sgd", iterations=10, lr=0.1, batch_size=1)
    assert TrialConfig.from_dict({**base, "problem_seed": 4}).problem_seed == 4
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="problem_seed"):
            TrialConfig.from_dict({**base, "problem_seed": bad})
