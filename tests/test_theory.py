"""Theory step sizes: hand-computed values, the reference code's formulas, schedules."""

import numpy as np
import pytest

from harness.config import ConfigError
from harness.theory import theory_schedule, theory_step_sizes


def test_v1_by_hand():
    # mu=1, L=10, A=10, B=0, lam=0.5: K=10, c = 1 + 2*10*0.25 = 6, rho = 0.5/(10*6) = 1/120,
    # gamma = (1 - 10*6/120) / (2*10*10*(2*100/14400*0.25 + 1)) = 0.5/(200*289/288) = 18/7225
    assert theory_step_sizes("v1", mu=1, L=10, A=10, B=0, lam=0.5) == pytest.approx((1 / 120, 18 / 7225), rel=1e-14)
    # lam=1: c = mu = 1, rho = 0.5/10, gamma = (1 - 0.5)/(2*10*10) = 1/400
    assert theory_step_sizes("v1", mu=1, L=10, A=10, B=0, lam=1.0) == pytest.approx((0.05, 0.0025), rel=1e-14)
    # full batch (A=0, B=1), mu=2, L=4, lam=0: K=2, c = 2 + 4 = 6, rho = 1/24,
    # gamma = (2 - 4/24*6) / (2*4*2*(2*16/576 + 1)) = 1/(16*19/18) = 9/152
    assert theory_step_sizes("v1", mu=2, L=4, A=0, B=1, lam=0.0) == pytest.approx((1 / 24, 9 / 152), rel=1e-14)


def test_v2_by_hand_both_lam_branches():
    # lam = 1: rho = 1/(4L); gamma = min(2, mu/(8K))/L = (1/80)/10
    assert theory_step_sizes("v2", mu=1, L=10, A=10, B=0, lam=1.0) == pytest.approx((0.025, 0.00125), rel=1e-14)
    # lam < 1, min picks mu/(2K(1-lam)^2) = 1/(2*10*0.25) = 0.2: rho = 0.2/40
    assert theory_step_sizes("v2", mu=1, L=10, A=10, B=0, lam=0.5) == pytest.approx((0.005, 0.00125), rel=1e-14)
    # lam < 1, min picks 1 (mu/(2K(1-lam)^2) = 2): rho = 1/(4L); gamma = (1/8)/1
    assert theory_step_sizes("v2", mu=1, L=1, A=0, B=1, lam=0.5) == pytest.approx((0.25, 0.125), rel=1e-14)
    # gamma's cap of 2/L is active when mu/(8K) > 2 (tiny A, B = 0): mu/(8*0.01) = 12.5
    assert theory_step_sizes("v2", mu=1, L=2, A=0.01, B=0, lam=0.0) == pytest.approx((0.125, 1.0), rel=1e-14)
    # rho is continuous at lam -> 1 (the min saturates at 1 before lam reaches 1)
    near = theory_step_sizes("v2", mu=1, L=10, A=10, B=0, lam=0.999)
    assert near == theory_step_sizes("v2", mu=1, L=10, A=10, B=0, lam=1.0)


# The formulas exactly as the reference code (numpy_exps/exp_script.py) writes them, with its
# inputs: L = L_max and tau-nice A, B for minibatches, A = L_max or Lbar with B = 0 at batch 1.
def _reference_v1(mu, L, A, B, lam):
    rho = 0.5 * mu / (L * (mu + 2 * (B * mu + A) * (1 - lam) ** 2))
    gamma = (mu - L * rho * (mu + 2 * (B * mu + A) * (1 - lam) ** 2)) / (
        2 * L * (B * mu + A) * (2 * L**2 * rho**2 * (1 - lam) ** 2 + 1)
    )
    return rho, gamma


def _reference_v2(mu, L, A, B, lam):
    rho = 1 / (4 * L) if lam == 1.0 else min(1, mu / (2 * (B * mu + A) * (1 - lam) ** 2)) / (4 * L)
    return rho, min(2, mu / (8 * (B * mu + A))) / L


@pytest.mark.parametrize("n,bs", [(100, 1), (100, 10), (100, 100)])
@pytest.mark.parametrize("lam", [0.0, 0.1, 0.3, 0.5, 0.9, 1.0])
def test_rules_match_the_reference_formulas(n, bs, lam):
    mu, L_max = 0.03, 8.4
    A, B = (n - bs) * L_max / (bs * (n - 1)), n * (bs - 1) / (bs * (n - 1))
    for rule, reference in (("v1", _reference_v1), ("v2", _reference_v2)):
        ours = theory_step_sizes(rule, mu=mu, L=L_max, A=A, B=B, lam=lam)
        assert ours == pytest.approx(reference(mu, L_max, A, B, lam), rel=1e-13)
    # v1 simplifies: L rho c = mu/2, so gamma = mu / (4 L K (2 L^2 rho^2 (1-lam)^2 + 1))
    rho, gamma = theory_step_sizes("v1", mu=mu, L=L_max, A=A, B=B, lam=lam)
    K = B * mu + A
    assert gamma == pytest.approx(mu / (4 * L_max * K * (2 * L_max**2 * rho**2 * (1 - lam) ** 2 + 1)), rel=1e-12)


def test_v2_noiseless_is_v2_with_the_noise_constants_at_zero():
    """rho = 1/(4L), gamma = 2/L for every lam and sampler: v2's caps, as if A = B = 0 (the
    settings behind the paper's published Figure 2 panels for lam = 0.5 and 1)."""
    L_max = 3.1168  # the notebook's draw: rho = 0.0802, gamma = 0.6417
    for lam in (0.0, 0.5, 1.0):
        rho, gamma = theory_step_sizes("v2_noiseless", mu=0.03, L=L_max, A=L_max, B=0.0, lam=lam)
        assert (rho, gamma) == (1 / (4 * L_max), 2 / L_max)
        assert (round(rho, 4), round(gamma, 4)) == (0.0802, 0.6417)
        # the limit of v2 as the noise constants vanish
        assert theory_step_sizes("v2", mu=0.03, L=L_max, A=1e-9, B=0.0, lam=lam) == pytest.approx((rho, gamma))


def test_step_size_inputs_are_checked():
    with pytest.raises(ConfigError, match="step_rule"):
        theory_step_sizes("v3", mu=1, L=1, A=1, B=0, lam=0.5)
    with pytest.raises(ValueError):
        theory_step_sizes("v1", mu=1, L=1, A=0, B=0, lam=0.5)  # B mu + A = 0
    with pytest.raises(ValueError):
        theory_step_sizes("v2", mu=0, L=1, A=1, B=0, lam=0.5)
    with pytest.raises(ValueError):
        theory_step_sizes("v2", mu=1, L=1, A=1, B=0, lam=1.5)


def test_constant_schedule():
    rho, gamma = theory_schedule("constant", 0.1, 0.02, 1.0, np.arange(5))
    assert rho.tolist() == [0.1] * 5 and gamma.tolist() == [0.02] * 5


def test_decreasing_schedule_values_and_monotone():
    mu, rho_star, gamma_star = 0.5, 0.05, 0.4
    t = np.arange(100_000)
    rho, gamma = theory_schedule("decreasing", rho_star, gamma_star, mu, t)
    assert rho.shape == gamma.shape == t.shape
    assert np.all(np.diff(rho) <= 0) and np.all(np.diff(gamma) <= 0)
    assert np.all(rho <= rho_star) and np.all(gamma <= gamma_star)
    # t=0: min(0.05, 1) and min(0.4, 1/0.5 = 2); t=9: 1/19 > 0.05 still capped; t=10: 1/21
    assert (rho[0], gamma[0]) == (0.05, 0.4)
    assert rho[9] == 0.05 and rho[10] == pytest.approx(1 / 21)
    # gamma leaves its cap once (2t+1)/((t+1)^2 mu) < 0.4: t=9 gives 19/50 = 0.38
    assert gamma[8] == 0.4 and gamma[9] == pytest.approx(0.38)
    assert gamma[-1] == pytest.approx((2 * 99_999 + 1) / (100_000**2 * mu))  # the O(1/t) tail
    r3, g3 = theory_schedule("decreasing", rho_star, gamma_star, mu, np.array([3, 0]))
    assert r3.tolist() == [min(0.05, 1 / 7), 0.05] and g3.tolist() == [0.4, 0.4]


def test_schedule_inputs_are_checked():
    with pytest.raises(ConfigError, match="lr_schedule"):
        theory_schedule("cosine", 0.1, 0.1, 1.0, np.arange(3))
    with pytest.raises(ValueError):
        theory_schedule("decreasing", 0.1, 0.1, 1.0, np.array([-1]))
