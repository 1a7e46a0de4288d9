"""Expected Residual constants (A, B) of the samplers, and when they are not guaranteed.

A sampler's constants bound the second moment of its gradient estimate g_S:

    E||g_S(x)||^2 <= 2A (f(x) - f_inf) + B ||grad f(x)||^2 + C,

which is what the theory's step sizes (``harness.theory``) need. Full batch gives (0, 1);
tau distinct indices drawn uniformly (tau-nice) give ((n - tau)/(tau (n - 1)) L_max,
n (tau - 1)/(tau (n - 1))). For tau independent draws with replacement, i ~ p, estimate
(1/tau) sum_j grad f_{i_j} / (n p_{i_j}):

  * one draw: E||grad f_i / (n p_i)||^2 = (1/n) sum_i ||grad f_i||^2 / (n p_i)
    <= 2 max_i(L_i / (n p_i)) (f - f_inf) + C, using ||grad f_i||^2 <= 2 L_i (f_i - f_i^inf);
    so A = max_i L_i / (n p_i): L_max for uniform p, Lbar for p proportional to L_i;
  * tau iid draws: E||mean||^2 = (1/tau) E||one||^2 + (1 - 1/tau) ||grad f||^2,
    so A / tau and B = (tau - 1) / tau.

The reference code ("paper-compat") plugs numbers into its step sizes that this bound does
not cover: tau-nice constants for batches drawn WITH replacement, whose second moment
exceeds the tau-nice bound by (tau - 1)/(tau (n - 1)) times the variance of grad f_i once
tau > 1; and (Lbar, 0) for an importance sampler without the 1/(n p_i) reweighting, whose
estimate is biased, so no such bound applies. ``*_CAVEAT`` say so, one line each; the
trials table stores them beside the constants.
"""

from __future__ import annotations

import numpy as np

WITH_REPLACEMENT_CAVEAT = ("not guaranteed: paper-compat uses tau-nice constants for batches drawn with "
                           "replacement, whose second moment exceeds the tau-nice bound when b > 1")
UNWEIGHTED_CAVEAT = ("not guaranteed: paper-compat importance sampling does not reweight by 1/(n p_i), so its "
                     "gradient estimate is biased and no expected-residual bound applies")


def tau_nice_constants(L: np.ndarray, tau: int) -> tuple[float, float]:
    """(A, B) of tau distinct indices drawn uniformly, plain mean."""
    n = len(L)
    if n == 1:
        return 0.0, 1.0
    return (n - tau) / (tau * (n - 1)) * float(L.max()), n * (tau - 1) / (tau * (n - 1))


def with_replacement_constants(L: np.ndarray, p: np.ndarray, tau: int) -> tuple[float, float]:
    """(A, B) of tau draws i ~ p with replacement, reweighted by 1/(n p_i) (see module doc)."""
    n = len(L)
    ratio = np.divide(L, n * p, out=np.where(L > 0, np.inf, 0.0), where=p > 0)
    return float(ratio.max()) / tau, (tau - 1) / tau


def check_smoothness(smoothness: np.ndarray, n: int) -> np.ndarray:
    L = np.asarray(smoothness, dtype=np.float64)
    if L.shape != (n,) or not np.all(np.isfinite(L)) or np.any(L < 0):
        raise ValueError(f"smoothness must be {n} finite non-negative numbers, got shape {L.shape}")
    return L
