"""The paper's synthetic problems (Oikonomou & Loizou, ICLR 2025, section 4), generated
from a seed, with their constants, so theory step sizes can be computed by name.

All three are finite sums f(x) = (1/n) sum_i f_i(x) over the rows a_i of A (n x d):

- ``ridge``:   f_i = 1/2 (a_i^T x - b_i)^2 + reg/2 ||x||^2, i.e. f = 1/(2n)||Ax - b||^2 + reg/2 ||x||^2;
               L_i = ||a_i||^2 + reg, L = lam_max(A^T A / n) + reg, and the PL constant mu is
               the smallest non-zero eigenvalue of A^T A / n + reg I (``quadratic_pl_constant``):
               lam_min(A^T A / n) + reg when n >= d; with n < d, reg when reg > 0, and the
               smallest non-zero eigenvalue of A^T A / n when reg = 0 (PL, not strongly convex).
- ``leastsq``: the same formula. The reference code's LeastSquares minimises the SUM
               1/2||A'x - b'||^2 (no 1/n) with L = lam_max(A'^T A'), so the design A', b'
               is stored scaled by sqrt(n): f, L and mu equal the reference's exactly, and
               ``A`` keeps the requested condition number. This matters for SAM (lam > 0):
               its perturbation rho g/||g|| does not scale with f.
- ``logreg``:  f_i = log(1 + exp(-b_i a_i^T x)) + reg/2 ||x||^2 with labels b_i in {-1, +1};
               L_i = ||a_i||^2 / 4 + reg, L = lam_max(A^T A) / (4n) + reg, mu = reg.

Designs (``spectrum``), following the reference code's constructions:

- "cond": singular values of A log-spaced from cond^-1/2 to cond^1/2, so cond(A) = cond
  (and L/mu = cond^2 for reg = 0); A is symmetric positive definite when n = d, else
  U diag(s) V^T with Haar-random orthogonal U, V.
- "spread" (the reference's RidgeRegression_, Figure 3; n = d only): A = Q diag(e) Q^T with
  eigenvalues e = 1, cond and d - 2 more uniform in [1, 2]. With reg = 0.03 and cond 10 the
  row norms differ a lot: L_bar ~ 3.3 against L_max ~ 8.4.

Targets: consistent b = A x_true with x_true ~ N(0, I); otherwise b ~ N(0, I) (logreg:
uniform random labels; ``consistent`` does not apply). The start x0 ~ N(0, I).

Seeds: A, b and x0 come from three independent streams spawned from ``problem_seed`` (not
the trial seed), so a sweep over ``seed`` runs several trials of the SAME problem from the
same x0, with different sampling, like the paper.

f*: 0 for consistent quadratic problems with reg = 0; else exact for quadratics (normal
equations / least squares) and a Newton solve to a gradient norm below 1e-12 for logreg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass, replace

import numpy as np

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.config import TrialConfig

SPREAD_LOW = 1.0  # the reference's RidgeRegression_(mu=1.0, L=cond): eigenvalues of A


@dataclass(frozen=True, eq=False)
class Problem:
    """A synthetic finite-sum problem with its constants. Arrays are float64."""

    kind: str            # "leastsq" | "ridge" | "logreg"
    A: np.ndarray        # (n, d)
    b: np.ndarray        # (n,) targets, or labels in {-1, +1} for logreg
    x0: np.ndarray       # (d,) the start
    reg: float
    L: float             # smoothness of f
    L_i: np.ndarray      # (n,) smoothness of each f_i
    mu: float            # PL (here strong convexity) constant
    f_star: float        # min f
    x_star: np.ndarray   # (d,) a minimiser

    @property
    def n(self) -> int:
        return self.A.shape[0]

    @property
    def d(self) -> int:
        return self.A.shape[1]

    @property
    def L_max(self) -> float:
        return float(self.L_i.max())

    @property
    def L_bar(self) -> float:
        return float(self.L_i.mean())

    def constants(self) -> dict[str, float]:
        """The constants by name, as a config or a record refers to them."""
        return {
            "n": self.n, "d": self.d, "L": self.L, "L_max": self.L_max, "L_bar": self.L_bar,
            "mu": self.mu, "f_star": self.f_star, "reg": self.reg,
        }

    def loss(self, x: np.ndarray) -> float:
        """f(x) on the full data."""
        z = self.A @ x
        if self.kind == "logreg":
            data = np.mean(np.logaddexp(0.0, -self.b * z))
        else:
            data = 0.5 * np.mean((z - self.b) ** 2)
        return float(data + 0.5 * self.reg * (x @ x))

    def grad(self, x: np.ndarray) -> np.ndarray:
        """grad f(x) on the full data."""
        return self.grad_batch(x, np.arange(self.n))

    def grad_batch(self, x: np.ndarray, idx: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        """(1/|idx|) sum_k w_k grad f_{idx_k}(x): the sampler's estimate (w = 1 when None;
        w_k = 1/(n p_k) keeps importance sampling unbiased). The regulariser is part of
        every f_i, so it is weighted too."""
        rows = self.A[idx]
        weights = np.ones(len(idx)) if w is None else np.asarray(w, dtype=np.float64)
        z = rows @ x
        if self.kind == "logreg":
            labels = self.b[idx]
            coef = -labels * _sigmoid(-labels * z)
        else:
            coef = z - self.b[idx]
        return (rows.T @ (weights * coef) + self.reg * weights.sum() * x) / len(idx)

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """The Hessian of f at x (d x d); constant A^T A / n + reg I for the quadratics."""
        if self.kind == "logreg":
            s = _sigmoid(self.A @ x)
            curvature = s * (1.0 - s)
        else:
            curvature = np.ones(self.n)
        return (self.A.T * curvature) @ self.A / self.n + self.reg * np.eye(self.d)


def load_problem(cfg: TrialConfig) -> Problem:
    """Generate the problem ``cfg.dataset`` from ``cfg.problem_seed`` (see module doc)."""
    kind, n, d, cond, reg = cfg.dataset, cfg.n_samples, cfg.dim, float(cfg.cond), float(cfg.reg)
    if kind not in ("leastsq", "ridge", "logreg"):
        raise ConfigError("dataset", kind, "leastsq, ridge, logreg")
    if d < 2:
        raise ConfigError("dim", d, "an integer >= 2 for synthetic problems")
    design_rng, target_rng, start_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(cfg.problem_seed).spawn(3)
    )
    if cfg.spectrum == "spread":
        if n != d:
            raise ConfigError("spectrum", cfg.spectrum, f"cond (spread needs n_samples == dim, got {n} and {d})")
        A = _spread_matrix(design_rng, d, cond)
    else:
        A = _conditioned_matrix(design_rng, n, d, cond)

    x_true = None
    if kind == "logreg":
        b = target_rng.choice(np.array([-1.0, 1.0]), size=n)
    elif cfg.consistent:
        x_true = target_rng.standard_normal(d)
        b = A @ x_true
    else:
        b = target_rng.standard_normal(n)
    if kind == "leastsq":  # the reference's sum normalisation, folded into the data
        A, b = A * np.sqrt(n), b * np.sqrt(n)
    x0 = start_rng.standard_normal(d)

    row_norms = np.einsum("ij,ij->i", A, A)
    gram_eigs = np.linalg.eigvalsh(A.T @ A / n)
    if kind == "logreg":
        L, mu, L_i = gram_eigs[-1] / 4.0 + reg, reg, row_norms / 4.0 + reg
    else:
        L, mu, L_i = gram_eigs[-1] + reg, quadratic_pl_constant(A, reg), row_norms + reg

    if kind == "logreg" and reg == 0.0 and _separable(A, b):
        raise ConfigError("reg", reg, "a number > 0 (this logreg problem has no minimiser: its data are separable)")
    if x_true is not None and reg == 0.0:
        return Problem(kind, A, b, x0, reg, float(L), L_i, float(mu), f_star=0.0, x_star=x_true)
    problem = Problem(kind, A, b, x0, reg, float(L), L_i, float(mu), f_star=np.nan, x_star=np.full(d, np.nan))
    x_star = _logreg_minimiser(problem) if kind == "logreg" else _quadratic_minimiser(problem)
    return replace(problem, f_star=problem.loss(x_star), x_star=x_star)


def quadratic_pl_constant(A: np.ndarray, reg: float) -> float:
    """The PL constant of f = 1/(2n)||Ax - b||^2 + reg/2 ||x||^2: the smallest NON-ZERO
    eigenvalue of its Hessian H = A^T A / n + reg I.

    f - f* and grad f = H (x - x*) only see x - x* through its part outside the null space
    of H, so ||grad f||^2 >= 2 mu (f - f*) holds with mu = that eigenvalue, with equality
    along its eigenvector. With reg > 0, H has no null space and mu = lam_min(H), which is
    exactly reg when n < d (A has a null space there). With reg = 0 and n < d, mu is the
    smallest non-zero eigenvalue of A^T A / n: f is PL, though not strongly convex.
    Zero is decided as numpy's matrix_rank does (relative tolerance max(n, d) * eps).
    """
    n, d = A.shape
    s = np.linalg.svd(A, compute_uv=False)          # min(n, d) singular values, descending
    eigs = np.concatenate((s**2 / n, np.zeros(max(d - n, 0)))) + reg
    tol = eigs.max() * max(n, d) * np.finfo(np.float64).eps
    return float(eigs[eigs > tol].min())


def _haar_orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    """A Haar-distributed orthogonal matrix (QR of a Gaussian with the signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def _conditioned_matrix(rng: np.random.Generator, n: int, d: int, cond: float) -> np.ndarray:
    """n x d with singular values log-spaced in [cond^-1/2, cond^1/2]; SPD when n = d."""
    k = min(n, d)
    s = np.geomspace(cond**-0.5, cond**0.5, k)
    if n == d:
        q = _haar_orthogonal(rng, d)
        return (q * s) @ q.T
    u, v = _haar_orthogonal(rng, n)[:, :k], _haar_orthogonal(rng, d)[:, :k]
    return (u * s) @ v.T


def _spread_matrix(rng: np.random.Generator, d: int, cond: float) -> np.ndarray:
    """Symmetric d x d with eigenvalues 1, cond and d - 2 uniform in [1, 2]."""
    eigs = np.concatenate(([SPREAD_LOW, cond], rng.uniform(SPREAD_LOW, 2 * SPREAD_LOW, d - 2)))
    q = _haar_orthogonal(rng, d)
    return (q * eigs) @ q.T


def _quadratic_minimiser(problem: Problem) -> np.ndarray:
    A, b, n, reg = problem.A, problem.b, problem.n, problem.reg
    if reg > 0:
        return np.linalg.solve(A.T @ A / n + reg * np.eye(problem.d), A.T @ b / n)
    return np.linalg.lstsq(A, b, rcond=None)[0]


def _logreg_minimiser(problem: Problem, tol: float = 1e-12, max_steps: int = 200) -> np.ndarray:
    """Damped Newton from 0 until ||grad|| <= tol * max(1, ||grad(0)||)."""
    x = np.zeros(problem.d)
    scale = max(1.0, float(np.linalg.norm(problem.grad(x))))
    for _ in range(max_steps):
        g = problem.grad(x)
        if np.linalg.norm(g) <= tol * scale:
            return x
        step = np.linalg.solve(problem.hessian(x), g)
        f, t = problem.loss(x), 1.0
        while problem.loss(x - t * step) > f - 0.25 * t * (g @ step) and t > 1e-10:
            t *= 0.5
        x = x - t * step
    raise RuntimeError(f"Newton did not reach ||grad|| <= {tol * scale:.1e} in {max_steps} steps")


def _separable(A: np.ndarray, labels: np.ndarray) -> bool:
    """Whether some x has labels_i a_i^T x >= 1 for all i (a linear feasibility problem)."""
    from scipy.optimize import linprog

    result = linprog(
        np.zeros(A.shape[1]), A_ub=-(labels[:, None] * A), b_ub=-np.ones(len(labels)),
        bounds=(None, None), method="highs",
    )
    return result.status == 0


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))
