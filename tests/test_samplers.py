"""Samplers: inclusion frequencies, unbiasedness, (A, B) constants, save/restore, RNG hygiene."""

import itertools
import pickle

import numpy as np
import pytest
import torch

from harness.config import ConfigError
from harness.samplers import SAMPLERS, build_sampler

L_SPREAD = np.array([0.5, 1.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 0.7, 1.5])  # unequal L_i, n = 10


def _max_z(counts: np.ndarray, trials: int, p: np.ndarray) -> float:
    """Largest |count - N p_i| in binomial standard deviations."""
    return float(np.max(np.abs(counts - trials * p) / np.sqrt(trials * p * (1 - p))))


def _least_squares(n: int = 12, d: int = 3, consistent: bool = False, seed: int = 0):
    """Rows with very unequal norms so importance weights matter; per-sample gradients G."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d))
    A *= (np.linspace(0.3, 3.0, n) / np.linalg.norm(A, axis=1))[:, None]
    b = A @ rng.standard_normal(d) if consistent else rng.standard_normal(n)
    return A, b


def _per_sample_grads(A, b, x):
    return A * (A @ x - b)[:, None]  # grad of f_i = 0.5 (a_i.x - b_i)^2


# -- registry and construction -----------------------------------------------------------
def test_registry_names_and_errors():
    assert list(SAMPLERS) == ["full", "uniform", "tau_nice", "importance", "reshuffle"]
    with pytest.raises(ConfigError, match="sampler"):
        build_sampler("nice", 10, 2, seed=0)
    with pytest.raises(ConfigError, match="batch_size"):
        build_sampler("tau_nice", 10, 11, seed=0)
    with pytest.raises(ConfigError, match="paper_compat"):
        build_sampler("reshuffle", 10, 2, seed=0, paper_compat=True)
    with pytest.raises(ConfigError, match="importance_mix"):
        build_sampler("importance", 10, 2, seed=0, mix=1.5)
    with pytest.raises(ConfigError, match="seed"):
        build_sampler("uniform", 10, 2, seed=-1)
    with pytest.raises(TypeError):
        build_sampler("uniform", 10, 2, seed=0).update_scores(np.ones(10))
    with pytest.raises(ValueError, match="fixed smoothness"):
        build_sampler("importance", 10, 2, seed=0, smoothness=L_SPREAD).update_scores(np.ones(10))
    proxy = build_sampler("importance", 10, 2, seed=0)
    for bad in (np.ones(9), -np.ones(10), np.zeros(10), np.full(10, np.nan)):
        with pytest.raises(ValueError):
            proxy.update_scores(bad)


def test_describe_records_the_variant():
    assert build_sampler("full", 10, 3, seed=0).describe() == "full"
    assert build_sampler("uniform", 10, 3, seed=0).describe() == "uniform(b=3, with replacement)"
    assert build_sampler("tau_nice", 10, 3, seed=0).describe() == "tau_nice(b=3, without replacement)"
    assert build_sampler("tau_nice", 10, 3, seed=0, paper_compat=True).describe() == (
        "tau_nice(b=3, paper-compat: with replacement)"
    )
    assert build_sampler("importance", 10, 1, seed=0, smoothness=L_SPREAD).describe() == (
        "importance(L_i, b=1, reweighted)"
    )
    assert build_sampler("importance", 10, 8, seed=0, mix=0.1).describe() == (
        "importance(loss proxy, mix=0.1, b=8, reweighted)"
    )
    assert build_sampler("importance", 10, 1, seed=0, smoothness=L_SPREAD, paper_compat=True).describe() == (
        "importance(L_i, b=1, paper-compat: unreweighted)"
    )
    assert build_sampler("importance", 10, 1, seed=0, proxy="gradnorm").describe().startswith("importance(gradnorm proxy")
    assert build_sampler("reshuffle", 10, 3, seed=0).describe() == "reshuffle(b=3, keep last)"


def test_shapes_dtypes_and_epoch_lengths():
    for name in SAMPLERS:
        s = build_sampler(name, 10, 4, seed=0, smoothness=L_SPREAD)
        b = 10 if name == "full" else 4
        idx, w = s.draw(6)
        assert idx.shape == w.shape == (6, b)
        assert idx.dtype == torch.int64 and w.dtype == torch.float32 and idx.device.type == "cpu"
        assert int(idx.min()) >= 0 and int(idx.max()) < 10
        assert s.batches_per_epoch == (1 if name == "full" else 3)
        assert s.batches_drawn == 6
        i1, w1 = s.next_batch()
        assert i1.ndim == w1.ndim == 1 and s.batches_drawn == 7
    assert build_sampler("full", 10, 4, seed=0).draw(2)[0].tolist() == [list(range(10))] * 2


# -- inclusion frequencies ---------------------------------------------------------------
def test_importance_frequencies_match_p_and_the_test_has_power():
    s = build_sampler("importance", 10, 5, seed=1, smoothness=L_SPREAD)
    p = L_SPREAD / L_SPREAD.sum()
    np.testing.assert_allclose(s.probabilities, p, rtol=1e-12)
    idx, _ = s.draw(4000)
    counts = np.bincount(idx.flatten().numpy(), minlength=10)
    assert _max_z(counts, idx.numel(), p) < 5.0
    assert _max_z(counts, idx.numel(), np.full(10, 0.1)) > 20.0  # the same test rejects uniform


def test_importance_mix_and_proxy_refresh():
    s = build_sampler("importance", 10, 4, seed=2, mix=0.3)
    np.testing.assert_allclose(s.probabilities, np.full(10, 0.1))  # uniform until scores arrive
    scores = torch.arange(10, dtype=torch.float32)  # sample 0 has zero loss: the mix keeps it alive
    s.update_scores(scores)
    p = 0.7 * scores.numpy() / scores.sum().item() + 0.03
    np.testing.assert_allclose(s.probabilities, p, rtol=1e-6)
    idx, w = s.draw(5000)
    counts = np.bincount(idx.flatten().numpy(), minlength=10)
    assert counts[0] > 0 and _max_z(counts, idx.numel(), p) < 5.0
    np.testing.assert_allclose(w.numpy(), 1.0 / (10 * p[idx.numpy()]), rtol=1e-6)


def test_uniform_and_tau_nice_frequencies():
    n = 20
    idx, w = build_sampler("uniform", n, 3, seed=3).draw(5000)
    counts = np.bincount(idx.flatten().numpy(), minlength=n)
    assert _max_z(counts, idx.numel(), np.full(n, 1 / n)) < 5.0 and bool((w == 1).all())
    for b in (1, 7, 15, n):  # rejection path (small b) and the top-k path (large b)
        idx, _ = build_sampler("tau_nice", n, b, seed=4).draw(3000)
        assert all(len(set(row)) == b for row in idx.tolist())
        per_batch = np.bincount(idx.flatten().numpy(), minlength=n)  # ~ Binomial(3000, b/n)
        if b < n:
            assert _max_z(per_batch, 3000, np.full(n, b / n)) < 5.0
    compat, _ = build_sampler("tau_nice", 10, 5, seed=5, paper_compat=True).draw(200)
    assert any(len(set(row)) < 5 for row in compat.tolist())  # with replacement: repeats occur


def test_reshuffle_covers_each_epoch_once_and_keeps_the_last_batch():
    s = build_sampler("reshuffle", 10, 4, seed=6)
    for _ in range(3):
        batches = [s.next_batch() for _ in range(s.batches_per_epoch)]
        assert [len(i) for i, _ in batches] == [4, 4, 2]
        assert sorted(torch.cat([i for i, _ in batches]).tolist()) == list(range(10))
        assert all(bool((w == 1).all()) for _, w in batches)
    idx, w = build_sampler("reshuffle", 10, 4, seed=6).draw(9)
    assert torch.equal(w[2], torch.tensor([2.0, 2.0, 0.0, 0.0]))  # short batch: mean over its 2 samples
    for e in range(3):
        rows, weights = idx[3 * e : 3 * e + 3], w[3 * e : 3 * e + 3]
        assert sorted(rows[weights > 0].tolist()) == list(range(10))
    first_two, _ = (s := build_sampler("reshuffle", 10, 4, seed=7)).draw(2)
    last, _ = s.next_batch()  # draw(k) left the stream mid-epoch: next_batch completes it
    assert sorted(first_two.flatten().tolist() + last.tolist()) == list(range(10))


# -- unbiasedness ------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["importance_L", "importance_proxy_mix", "uniform", "tau_nice"])
def test_reweighted_estimators_are_unbiased(variant):
    A, b = _least_squares()
    x = np.array([1.0, -2.0, 0.5])
    G = _per_sample_grads(A, b, x)
    full = G.mean(axis=0)
    L = (A**2).sum(axis=1)
    n, batch, k = len(b), 4, 20000
    if variant == "importance_L":
        s = build_sampler("importance", n, batch, seed=8, smoothness=L)
    elif variant == "importance_proxy_mix":
        s = build_sampler("importance", n, batch, seed=8, mix=0.2)
        s.update_scores(0.5 * (A @ x - b) ** 2)
    else:
        s = build_sampler(variant, n, batch, seed=8)
    p = s.probabilities if variant.startswith("importance") else np.full(n, 1 / n)
    idx, w = (t.numpy() for t in s.draw(k))
    w_of = np.zeros(n)
    w_of[idx] = w  # the sampler's weight for each index: one value per index
    assert np.array_equal(w_of[idx], w)
    # exact: E[w_i G_i] over i ~ p is the full gradient; then the Monte-Carlo average
    np.testing.assert_allclose((p * w_of) @ G, full, rtol=1e-6)
    single_var = p @ (w_of[:, None] * G) ** 2 - full**2
    se = np.sqrt(single_var / (k * batch))  # exact for iid draws, conservative for tau-nice
    estimate = (w.astype(np.float64)[..., None] * G[idx]).mean(axis=(0, 1))
    err = np.abs(estimate - full) / se
    assert err.max() < 5.0, err


def test_paper_compat_importance_is_biased():
    A, b = _least_squares()
    x = np.array([1.0, -2.0, 0.5])
    G = _per_sample_grads(A, b, x)
    L = (A**2).sum(axis=1)
    n, batch, k = len(b), 4, 20000
    s = build_sampler("importance", n, batch, seed=8, smoothness=L, paper_compat=True)
    idx, w = s.draw(k)
    assert bool((w == 1).all())
    p = L / L.sum()
    estimate = G[idx.numpy()].mean(axis=(0, 1))
    what_it_estimates = (p[:, None] * G).sum(axis=0)
    se = np.sqrt(((p[:, None] * G**2).sum(axis=0) - what_it_estimates**2) / (k * batch))
    assert (np.abs(estimate - what_it_estimates) / se).max() < 5.0
    assert (np.abs(estimate - G.mean(axis=0)) / se).max() > 20.0  # far from the full gradient


# -- (A, B) constants --------------------------------------------------------------------
def test_constants_match_the_table():
    L, n = L_SPREAD, 10
    Lmax, Lbar = L.max(), L.mean()
    assert build_sampler("full", n, 3, seed=0).constants(L) == (0.0, 1.0)
    assert build_sampler("uniform", n, 1, seed=0).constants(L) == (Lmax, 0.0)
    assert build_sampler("uniform", n, 4, seed=0).constants(L) == pytest.approx((Lmax / 4, 0.75))
    assert build_sampler("tau_nice", n, 3, seed=0).constants(L) == pytest.approx((7 / 27 * Lmax, 20 / 27))
    assert build_sampler("tau_nice", n, 1, seed=0).constants(L) == pytest.approx((Lmax, 0.0))
    assert build_sampler("tau_nice", n, n, seed=0).constants(L) == pytest.approx((0.0, 1.0))
    imp = build_sampler("importance", n, 1, seed=0, smoothness=L)
    assert imp.constants(L) == pytest.approx((Lbar, 0.0), rel=1e-12)
    assert build_sampler("importance", n, 2, seed=0, smoothness=L).constants(L) == pytest.approx((Lbar / 2, 0.5))
    assert build_sampler("importance", n, 1, seed=0).constants(L) == pytest.approx((Lmax, 0.0))  # uniform p
    two = np.array([1.0, 3.0])  # mix 0.5: p = [0.375, 0.625], L_i/(n p_i) = [4/3, 2.4]
    assert build_sampler("importance", 2, 1, seed=0, smoothness=two, mix=0.5).constants(two) == pytest.approx((2.4, 0.0))
    assert build_sampler("reshuffle", n, 3, seed=0).constants(L) is None
    with pytest.raises(ValueError):
        imp.constants(L[:5])


def test_paper_compat_constants_are_the_reference_codes():
    L, n = L_SPREAD, 10
    tau_nice = ((n - 4) * L.max() / (4 * (n - 1)), n * 3 / (4 * (n - 1)))
    assert build_sampler("uniform", n, 4, seed=0, paper_compat=True).constants(L) == pytest.approx(tau_nice)
    assert build_sampler("tau_nice", n, 4, seed=0, paper_compat=True).constants(L) == pytest.approx(tau_nice)
    compat = dict(seed=0, smoothness=L, paper_compat=True)
    assert build_sampler("importance", n, 4, **compat).constants(L) == pytest.approx(tau_nice)
    assert build_sampler("importance", n, 1, **compat).constants(L) == pytest.approx((L.mean(), 0.0))


def test_paper_compat_constants_are_marked_not_guaranteed():
    L, n = L_SPREAD, 10
    guaranteed = [build_sampler("full", n, 3, seed=0), build_sampler("uniform", n, 4, seed=0),
                  build_sampler("tau_nice", n, 4, seed=0), build_sampler("importance", n, 4, seed=0, smoothness=L),
                  # b = 1 with replacement is exactly 1-nice: the reference's numbers hold there
                  build_sampler("uniform", n, 1, seed=0, paper_compat=True),
                  build_sampler("tau_nice", n, 1, seed=0, paper_compat=True)]
    assert all(s.constants_caveat() is None for s in guaranteed)
    for s in (build_sampler("uniform", n, 4, seed=0, paper_compat=True),
              build_sampler("tau_nice", n, n, seed=0, paper_compat=True)):
        assert s.constants_caveat().startswith("not guaranteed") and "with replacement" in s.constants_caveat()
    for b in (1, 4):
        caveat = build_sampler("importance", n, b, seed=0, smoothness=L, paper_compat=True).constants_caveat()
        assert caveat.startswith("not guaranteed") and "biased" in caveat


def test_with_replacement_batches_break_the_tau_nice_bound():
    """Why paper-compat's constants carry a caveat: rows of equal norm make ||grad f_i||^2 =
    2 L_i f_i exact, so the tau-nice bound is tight for tau-nice batches, and batches drawn
    with replacement (the reference code's) exceed it."""
    n, tau = 8, 3
    rng = np.random.default_rng(4)
    A = rng.standard_normal((n, 3))
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    b = A @ rng.standard_normal(3)  # consistent: f_inf = f_i^inf = 0, C = 0
    x = rng.standard_normal(3) * 3
    G = _per_sample_grads(A, b, x)
    f, g = 0.5 * np.mean((A @ x - b) ** 2), G.mean(axis=0)
    compat = build_sampler("tau_nice", n, tau, seed=0, paper_compat=True)
    a, bb = compat.constants(np.ones(n))
    with_replacement = np.mean((G**2).sum(axis=1)) / tau + (1 - 1 / tau) * g @ g
    assert with_replacement > 2 * a * f + bb * g @ g + 1e-9
    assert compat.constants_caveat() is not None


def test_samples_in_counts_real_samples():
    assert build_sampler("uniform", 10, 3, seed=0).samples_in(7) == 21
    assert build_sampler("full", 10, 3, seed=0).samples_in(2) == 20
    # reshuffle: 10 in batches of 3 is 3, 3, 3, 1 a pass
    shuffle = build_sampler("reshuffle", 10, 3, seed=0)
    assert [shuffle.samples_in(k) for k in (0, 3, 4, 5, 8, 9)] == [0, 9, 10, 13, 20, 23]
    idx, w = shuffle.draw(9)
    assert int((w > 0).sum()) == shuffle.samples_in(9)  # the padded entries are not samples


def test_constants_satisfy_the_expected_residual_bound():
    """Consistent least squares (f_inf = f_i^inf = 0, so C = 0): the exact E||grad f_S||^2
    never exceeds 2A f + B ||grad f||^2, and importance sampling at b = 1 attains it."""
    A_mat, b = _least_squares(n=7, consistent=True, seed=1)
    n, L = 7, (A_mat**2).sum(axis=1)
    rng = np.random.default_rng(2)
    for _ in range(5):
        x = rng.standard_normal(3) * 3
        G = _per_sample_grads(A_mat, b, x)
        f, g = 0.5 * np.mean((A_mat @ x - b) ** 2), G.mean(axis=0)
        for name, tau in [("uniform", 1), ("uniform", 3), ("importance", 1), ("importance", 3)]:
            s = build_sampler(name, n, tau, seed=0, smoothness=L)
            p = s.probabilities if name == "importance" else np.full(n, 1 / n)
            one = (p * ((G / (n * p)[:, None]) ** 2).sum(axis=1)).sum()
            second_moment = one / tau + (1 - 1 / tau) * g @ g
            a, bb = s.constants(L)
            assert second_moment <= 2 * a * f + bb * g @ g + 1e-9
            if name == "importance" and tau == 1:
                assert second_moment == pytest.approx(2 * a * f, rel=1e-9)
        for tau in (2, 3, 5):
            subsets = list(itertools.combinations(range(n), tau))
            second_moment = np.mean([np.sum(G[list(S)].mean(axis=0) ** 2) for S in subsets])
            a, bb = build_sampler("tau_nice", n, tau, seed=0).constants(L)
            assert second_moment <= 2 * a * f + bb * g @ g + 1e-9


# -- determinism, save / restore, RNG hygiene ----------------------------------------------
def _configs():
    yield "full", {}
    yield "uniform", {}
    yield "tau_nice", {}
    yield "tau_nice", {"paper_compat": True}
    yield "importance", {"smoothness": L_SPREAD}
    yield "importance", {"mix": 0.25, "refresh": True}
    yield "reshuffle", {}


def _make(name, seed, opts):
    opts = dict(opts)
    refresh = opts.pop("refresh", False)
    s = build_sampler(name, 10, 3, seed=seed, **opts)
    if refresh:
        s.update_scores(np.linspace(1.0, 5.0, 10))
    return s


@pytest.mark.parametrize("name,opts", list(_configs()))
def test_save_restore_continues_the_stream(name, opts):
    s = _make(name, 11, opts)
    s.draw(5)
    s.next_batch()  # reshuffle: now mid-epoch (2 of 4 batches of the second epoch used)
    saved = pickle.loads(pickle.dumps(s.state_dict()))
    expected = [s.draw(6), s.next_batch(), s.draw(3)]
    for target in (s, _make(name, 999, opts)):  # the saved dict is a snapshot, not an alias
        target.load_state_dict(saved)
        again = [target.draw(6), target.next_batch(), target.draw(3)]
        for (i1, w1), (i2, w2) in zip(expected, again):
            assert torch.equal(i1, i2) and torch.equal(w1, w2)
        assert target.batches_drawn == 6 + 6 + 1 + 3


def test_seeds_determine_the_stream_and_mismatched_state_is_refused():
    for name, opts in _configs():
        a, b, c = _make(name, 1, opts), _make(name, 1, opts), _make(name, 2, opts)
        ia, ib, ic = a.draw(20)[0], b.draw(20)[0], c.draw(20)[0]
        assert torch.equal(ia, ib)
        assert name == "full" or not torch.equal(ia, ic)
    with pytest.raises(ValueError, match="cannot be loaded"):
        build_sampler("tau_nice", 10, 3, seed=0).load_state_dict(build_sampler("uniform", 10, 3, seed=0).state_dict())
    with pytest.raises(ValueError, match="cannot be loaded"):
        build_sampler("uniform", 10, 3, seed=0).load_state_dict(build_sampler("uniform", 10, 4, seed=0).state_dict())


def test_global_rng_is_never_touched():
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    for name, opts in _configs():
        s = _make(name, 0, opts)
        s.draw(50)
        s.next_batch()
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)


def test_reshuffle_next_batch_fast_path_matches_draw():
    fast = build_sampler("reshuffle", 10, 3, seed=5)
    slow = build_sampler("reshuffle", 10, 3, seed=5)
    for _ in range(9):  # three epochs of four batches, the last of each short
        idx, w = slow.draw(1)
        real = w[0] > 0
        got, weights = fast.next_batch()
        assert torch.equal(got, idx[0][real]) and torch.equal(weights, torch.ones(int(real.sum())))
    assert fast.state_dict()["batches_drawn"] == slow.state_dict()["batches_drawn"]
