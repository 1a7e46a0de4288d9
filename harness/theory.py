"""Step sizes from the theory for PL problems (Oikonomou & Loizou, ICLR 2025, section 3).

Constant (rho*, gamma*) from the problem constants mu (PL), L (smoothness; L_max in the
stochastic case) and the sampler's Expected Residual constants (A, B), in the two closed
forms of the reference code, and the decreasing schedule of Theorem 3.5, which converges
to the exact minimiser for any lam. Pure numpy: no torch, so the numba engine can use it.

"v2_noiseless" is v2 evaluated with A = B = 0 whatever the sampler, where both caps bind:
rho = 1/(4L), gamma = 2/L. It is not a theory rule for a stochastic sampler; it names the
settings behind the paper's published Figure 2 panels for lam = 0.5 and lam = 1 (the
notebook prints rho = 1/(4 L_max), gamma = 2/L_max there), so they can be rerun by name.
"""

from __future__ import annotations

import numpy as np

from harness.errors import ConfigError

STEP_RULE_NAMES = ("v1", "v2", "v2_noiseless")
SCHEDULE_NAMES = ("constant", "decreasing")


def theory_step_sizes(rule: str, *, mu: float, L: float, A: float, B: float, lam: float) -> tuple[float, float]:
    """(rho*, gamma*) for rule "v1", "v2" or "v2_noiseless".

    v1: rho = mu / (2 L c), gamma = (mu - L rho c) / (2 L K (2 L^2 rho^2 (1-lam)^2 + 1)),
        with K = B mu + A and c = mu + 2 K (1-lam)^2.
    v2: rho = 1/(4L) at lam = 1, else min(1, mu / (2 K (1-lam)^2)) / (4L);
        gamma = min(2, mu / (8K)) / L.
    v2_noiseless: v2 with A = B = 0 (K = 0, so both mins take their cap): rho = 1/(4L),
        gamma = 2/L for every lam; the sampler's A and B are ignored.
    """
    if rule not in STEP_RULE_NAMES:
        raise ConfigError("step_rule", rule, ", ".join(STEP_RULE_NAMES))
    for name, value in (("mu", mu), ("L", L)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    for name, value in (("A", A), ("B", B)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1] for theory step sizes, got {lam!r}")
    if rule == "v2_noiseless":
        return 1.0 / (4.0 * L), 2.0 / L
    K = B * mu + A
    if K <= 0:
        raise ValueError("B * mu + A must be positive (A = B = 0 has no gradient noise bound)")
    one_minus_sq = (1.0 - lam) ** 2
    if rule == "v1":
        c = mu + 2.0 * K * one_minus_sq
        rho = 0.5 * mu / (L * c)
        gamma = (mu - L * rho * c) / (2.0 * L * K * (2.0 * L**2 * rho**2 * one_minus_sq + 1.0))
    else:
        rho = 1.0 / (4.0 * L) if lam == 1.0 else min(1.0, mu / (2.0 * K * one_minus_sq)) / (4.0 * L)
        gamma = min(2.0, mu / (8.0 * K)) / L
    return float(rho), float(gamma)


def theory_schedule(
    schedule: str, rho: float, gamma: float, mu: float, steps: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(rho_t, gamma_t) at step indices t = 0, 1, ... (vectorised over ``steps``).

    "constant": rho*, gamma* throughout. "decreasing": rho_t = min(rho*, 1/(2t+1)) and
    gamma_t = min(gamma*, (2t+1) / ((t+1)^2 mu)).
    """
    if schedule not in SCHEDULE_NAMES:
        raise ConfigError("lr_schedule", schedule, ", ".join(SCHEDULE_NAMES))
    t = np.asarray(steps, dtype=np.float64)
    if np.any(t < 0):
        raise ValueError("step indices must be >= 0")
    if schedule == "constant":
        return np.full(t.shape, float(rho)), np.full(t.shape, float(gamma))
    if not mu > 0:
        raise ValueError(f"mu must be positive for the decreasing schedule, got {mu!r}")
    rho_t = np.minimum(rho, 1.0 / (2.0 * t + 1.0))
    gamma_t = np.minimum(gamma, (2.0 * t + 1.0) / ((t + 1.0) ** 2 * mu))
    return rho_t, gamma_t
