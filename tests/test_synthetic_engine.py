"""The numba engine for synthetic problems: trajectories against a plain numpy reference
and against the torch UnifiedSAM, SGD at rho = 0, determinism, bit-identical resume,
divergence, and the paper's Figure 1 claim (USAM converges, SAM plateaus)."""

from __future__ import annotations

import math
import io

import numpy as np
import pytest
import torch

from harness import synthetic, synthetic_kernel
from harness.config import ConfigError, TrialConfig
from harness.data import load_problem
from harness.samplers import build_sampler
from harness.synthetic import SyntheticTrial
from harness.theory import theory_schedule, theory_step_sizes

TIMES = ("time_train", "time_eval", "time_sharpness", "time_total")


def _cfg(**changes) -> TrialConfig:
    raw = dict(dataset="ridge", model="linear", n_samples=40, dim=20, cond=10.0, reg=0.03,
               optimizer="unified", lam=0.5, rho=0.05, lr=1e-3, sampler="uniform", batch_size=1,
               iterations=300, eval_every=50, seed=3)
    raw.update(changes)
    return TrialConfig.from_dict(raw)


def _untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMES} for r in records]


# -- a straightforward numpy reference of the update ----------------------------------------
def _ref_grad(p, x, rows, w):
    """mean_j w_j grad f_{rows_j}(x), with f_i = loss_i(a_i.x) + reg/2 ||x||^2."""
    A, y = p.A[rows], p.b[rows]
    z = A @ x
    coef = -y / (1.0 + np.exp(y * z)) if p.kind == "logreg" else z - y
    return (w * coef) @ A / len(rows) + p.reg * w.mean() * x


def _ref_run(p, idx, w, rho, gamma, lam, perturb):
    x = p.x0.copy()
    for t in range(len(idx)):
        g = _ref_grad(p, x, idx[t], w[t])
        if perturb:
            e = rho[t] * (1.0 - lam[t] + lam[t] / (np.linalg.norm(g) + 1e-12)) * g
            g = _ref_grad(p, x + e, idx[t], w[t])
        x = x - gamma[t] * g
    return x


def _stream(cfg: TrialConfig, p, steps: int):
    """The trial's minibatches: the same sampler, drawn in one chunk as the trial does."""
    sampler = build_sampler(cfg.sampler, p.n, cfg.batch_size, seed=cfg.seed,
                            paper_compat=cfg.paper_compat, smoothness=p.L_i, mix=0.0)
    idx, w = sampler.draw(steps)
    return idx.numpy(), w.double().numpy()


CASES = {  # (dataset, sampler, batch): row loops, BLAS on the full data, gathered rows
    "ridge-uniform-b1": ("ridge", "uniform", 1),
    "leastsq-full": ("leastsq", "full", 40),
    "logreg-importance-b1": ("logreg", "importance", 1),
    "ridge-tau_nice-b10": ("ridge", "tau_nice", 10),
}


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, "1/t"])
@pytest.mark.parametrize("case", list(CASES))
def test_trajectory_matches_numpy_reference(case, lam):
    dataset, sampler, batch = CASES[case]
    probe = load_problem(_cfg(dataset=dataset))
    # Small enough that SAM stays away from its chaotic bouncing regime, where rounding
    # differences grow exponentially (rho L / ||g|| large): trajectories stay comparable.
    lr = 0.5 / (probe.L if sampler == "full" else probe.L_max)
    cfg = _cfg(dataset=dataset, sampler=sampler, batch_size=batch, lam=lam, lr=lr, rho=0.1 * lr)
    trial = SyntheticTrial(cfg)
    records = list(trial.records())
    p = trial.problem
    steps = cfg.iterations
    idx, w = _stream(cfg, p, steps)
    lam_t = 1.0 / np.arange(1, steps + 1) if lam == "1/t" else np.full(steps, float(lam))
    x_ref = _ref_run(p, idx, w, np.full(steps, cfg.rho), np.full(steps, lr), lam_t, True)
    x = trial.state_dict()["x"]
    assert np.linalg.norm(x - x_ref) <= 1e-12 * np.linalg.norm(x_ref)
    x_sgd = _ref_run(p, idx, w, None, np.full(steps, lr), None, False)
    assert np.linalg.norm(x_sgd - x_ref) > 1e-6 * np.linalg.norm(x_ref)  # the ascent matters
    last = records[-1]
    assert last["iteration"] == steps and last["grad_evals"] == 2 * steps
    assert last["train_loss"] == pytest.approx(p.loss(x_ref), rel=1e-12)
    assert last["grad_norm"] == pytest.approx(np.linalg.norm(p.grad(x_ref)), rel=1e-10)
    assert last["weight_norm"] == pytest.approx(np.linalg.norm(x_ref), rel=1e-12)
    assert last["lam"] == lam_t[-1]


def test_decreasing_theory_schedule_matches_reference():
    cfg = _cfg(lr=None, rho=None, step_rule="v1", lr_schedule="decreasing", lam=0.5, iterations=200)
    trial = SyntheticTrial(cfg)
    records = list(trial.records())
    p = trial.problem
    rho, gamma = theory_step_sizes("v1", mu=p.mu, L=p.L_max, A=p.L_max, B=0.0, lam=0.5)
    assert trial.info()["theory_rho"] == rho and trial.info()["theory_lr"] == gamma
    rho_t, gamma_t = theory_schedule("decreasing", rho, gamma, p.mu, np.arange(200))
    idx, w = _stream(cfg, p, 200)
    x_ref = _ref_run(p, idx, w, rho_t, gamma_t, np.full(200, 0.5), True)
    x = trial.state_dict()["x"]
    assert np.linalg.norm(x - x_ref) <= 1e-12 * np.linalg.norm(x_ref)
    # Each record reports the step sizes of the last step taken (the first one at 0).
    assert [r["lr"] for r in records] == [gamma_t[max(r["iteration"] - 1, 0)] for r in records]
    assert [r["rho"] for r in records] == [rho_t[max(r["iteration"] - 1, 0)] for r in records]


def test_matches_torch_unified_sam():
    optim = pytest.importorskip("harness.optim")
    steps = 20
    cfg = _cfg(sampler="tau_nice", batch_size=4, lam="1/t", lr=1e-3, rho=0.2, iterations=steps, eval_every=steps)
    trial = SyntheticTrial(cfg)
    list(trial.records())
    p = trial.problem
    A, y = torch.from_numpy(p.A), torch.from_numpy(p.b)
    model = torch.nn.Linear(p.d, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(p.x0)[None])
    opt = optim.build_optimizer("unified", model.parameters(), lr=cfg.lr, rho=cfg.rho, lam=cfg.lam)
    idx, w = _stream(cfg, p, steps)

    def loss(rows, weights):
        per_sample = 0.5 * (model(A[rows]).squeeze(1) - y[rows]) ** 2 + 0.5 * p.reg * model.weight.pow(2).sum()
        return (torch.from_numpy(weights) * per_sample).mean()

    for t in range(steps):
        rows = torch.from_numpy(idx[t])
        loss(rows, w[t]).backward()
        opt.first_step()
        loss(rows, w[t]).backward()
        opt.second_step()
    x_torch = model.weight.detach().numpy()[0]
    x = trial.state_dict()["x"]
    assert np.linalg.norm(x - x_torch) <= 1e-12 * np.linalg.norm(x_torch)
    assert np.linalg.norm(x - p.x0) > 1e-3 * np.linalg.norm(p.x0)


def test_rho_zero_is_plain_sgd_bit_for_bit():
    unified = SyntheticTrial(_cfg(rho=0.0))
    sgd = SyntheticTrial(_cfg(optimizer="sgd", lam=None, rho=None))
    ru, rs = list(unified.records()), list(sgd.records())
    assert np.array_equal(unified.state_dict()["x"], sgd.state_dict()["x"])
    assert [r["train_loss"] for r in ru] == [r["train_loss"] for r in rs]
    assert rs[-1]["grad_evals"] == rs[-1]["iteration"] == ru[-1]["grad_evals"]
    assert rs[-1]["lam"] is None and rs[-1]["rho"] == 0.0 and ru[-1]["lam"] == 0.5
    p = sgd.problem
    idx, w = _stream(sgd.cfg, p, 300)
    x_ref = _ref_run(p, idx, w, None, np.full(300, 1e-3), None, False)
    assert np.linalg.norm(sgd.state_dict()["x"] - x_ref) <= 1e-12 * np.linalg.norm(x_ref)


def test_records_layout_and_info():
    cfg = _cfg(optimizer="sam", lam=None, iterations=230, eval_every=50)
    trial = SyntheticTrial(cfg)
    records = list(trial.records())
    assert [r["iteration"] for r in records] == [0, 50, 100, 150, 200, 230]
    assert [r["epoch"] for r in records] == [i / 40 for i in (0, 50, 100, 150, 200, 230)]
    assert [r["grad_evals"] for r in records] == [2 * i for i in (0, 50, 100, 150, 200, 230)]
    assert records[0]["rel_subopt"] == 1.0 and 0 < records[-1]["rel_subopt"] < 1
    assert all(r["test_loss"] is None and r["lam_max"] is None and r["train_acc"] is None for r in records)
    clocks = [(r["time_train"], r["time_eval"], r["time_total"]) for r in records]
    assert all(later >= earlier for a, b in zip(clocks, clocks[1:]) for earlier, later in zip(a, b))
    assert all(r["time_total"] >= r["time_train"] + r["time_eval"] for r in records)
    assert trial.status == "ok"
    info, p = trial.info(), trial.problem
    assert info["sampler_A"] == pytest.approx(p.L_max) and info["sampler_B"] == 0.0
    assert info["problem_L_bar"] == pytest.approx(p.L_i.mean()) and info["device"] == "cpu"
    assert info["theory_rho"] is None and info["theory_lr"] is None
    logreg = list(SyntheticTrial(_cfg(dataset="logreg", iterations=50)).records())
    assert all(0.0 <= r["train_acc"] <= 1.0 for r in logreg)


def test_kernels_compile_once_per_process():
    """Every path (row loops, gathered rows, full data, logistic, schedules) shares one
    numba signature, so compilation happens once per process, never inside a clock."""
    for changes in ({}, {"sampler": "full", "batch_size": 40}, {"sampler": "tau_nice", "batch_size": 10},
                    {"dataset": "logreg", "sampler": "importance"}, {"sampler": "reshuffle", "batch_size": 7},
                    {"lr": None, "rho": None, "step_rule": "v2", "lr_schedule": "decreasing"}):
        list(SyntheticTrial(_cfg(iterations=20, eval_every=7, **changes)).records())
    assert len(synthetic_kernel.run_steps.signatures) == 1
    assert len(synthetic_kernel.evaluate.signatures) == 1


def test_same_config_same_records():
    cfg = _cfg(sampler="importance", lam="1-1/t")
    assert _untimed(list(SyntheticTrial(cfg).records())) == _untimed(list(SyntheticTrial(cfg).records()))
    other = _untimed(list(SyntheticTrial(cfg.replace(seed=4)).records()))
    assert other != _untimed(list(SyntheticTrial(cfg).records()))


@pytest.mark.parametrize("sampler,batch", [("uniform", 1), ("reshuffle", 7), ("full", 40)])
def test_resume_is_bit_identical(monkeypatch, sampler, batch):
    # Chunks of 64 steps against evaluations every 50: resumes land mid-chunk and on
    # segments that straddle a chunk boundary.
    monkeypatch.setattr(synthetic, "_MAX_CHUNK_STEPS", 64)
    cfg = _cfg(sampler=sampler, batch_size=batch, lam="1/t", iterations=330)
    full = _untimed(list(SyntheticTrial(cfg).records()))
    for cut in (1, 2, 4):
        first = SyntheticTrial(cfg)
        stream = first.records()
        head = [next(stream) for _ in range(cut)]
        state = _weights_only_round_trip(first.state_dict())
        for _ in stream:  # the original keeps going; the saved state must not move
            pass
        resumed = SyntheticTrial(cfg)
        resumed.load_state_dict(state)
        tail = list(resumed.records())
        assert _untimed(head + tail) == full
        assert tail[0]["time_total"] >= head[-1]["time_total"]


def _weights_only_round_trip(state: dict) -> dict:
    """Save and load as a sweep checkpoint does: tensors and plain data only."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_divergence_stops_without_raising():
    trial = SyntheticTrial(_cfg(lr=1e3, iterations=5000, eval_every=10))
    records = list(trial.records())
    assert trial.status == "diverged"
    assert records[-1]["iteration"] < 5000 and records[-1]["train_loss"] is None
    assert all(math.isfinite(r["train_loss"]) for r in records[:-1])
    assert list(trial.records()) == []  # a diverged trial stays stopped


@pytest.mark.parametrize("changes,field", [
    ({"momentum": 0.9}, "momentum"),
    ({"weight_decay": 5e-4}, "weight_decay"),
    ({"sampler": "reshuffle", "lr": None, "rho": None, "step_rule": "v2"}, "sampler"),
    ({"optimizer": "sgd", "lam": None, "lr": None, "rho": None, "step_rule": "v2"}, "step_rule"),
])
def test_config_errors(changes, field):
    with pytest.raises(ConfigError, match=field):
        SyntheticTrial(_cfg(**changes))


def test_figure1_usam_converges_sam_plateaus():
    """The paper's Figure 1: deterministic least squares, v2 steps."""
    base = dict(dataset="leastsq", n_samples=100, dim=100, reg=0.0, lr=None, rho=None,
                step_rule="v2", sampler="full", batch_size=100, iterations=10_000, eval_every=100)
    usam = list(SyntheticTrial(_cfg(lam=0.0, **base)).records())
    sam = list(SyntheticTrial(_cfg(lam=1.0, **base)).records())
    assert usam[-1]["rel_subopt"] < 1e-12
    assert min(r["rel_subopt"] for r in sam) > 1e-9
    assert sam[-1]["rel_subopt"] < 1e-5  # a plateau, not a failure to move


def test_paper_compat_at_batch_n_takes_L_as_the_reference_does():
    """At batch size n the reference code computes its steps with L itself, not L_max:
    paper-compat does the same; the exact sampler keeps L_max (its batches are random)."""
    base = dict(lr=None, rho=None, step_rule="v2", lam=0.5, sampler="tau_nice", batch_size=40)
    compat = SyntheticTrial(_cfg(paper_compat=True, **base))
    exact = SyntheticTrial(_cfg(**base))
    p = compat.problem
    A, B = 0.0, 1.0  # tau-nice constants at tau = n
    assert compat.info()["theory_rho"] == theory_step_sizes("v2", mu=p.mu, L=p.L, A=A, B=B, lam=0.5)[0]
    assert exact.info()["theory_rho"] == theory_step_sizes("v2", mu=p.mu, L=p.L_max, A=A, B=B, lam=0.5)[0]
    assert compat.info()["theory_lr"] > exact.info()["theory_lr"]  # p.L < p.L_max
    # ... and neither number is a proved bound for batches drawn with replacement
    assert compat.info()["sampler_AB_guaranteed"] is False and "replacement" in compat.info()["sampler_AB_caveat"]
    assert exact.info()["sampler_AB_guaranteed"] is True and exact.info()["sampler_AB_caveat"] is None
    assert SyntheticTrial(_cfg(sampler="reshuffle")).info()["sampler_AB_guaranteed"] is None  # no constants


@pytest.mark.parametrize("key, value", [("importance_mix", 0.1), ("importance_proxy", "loss"),
                                        ("importance_refresh", 1)])
def test_importance_proxy_settings_are_refused_and_stored_null(key, value):
    """Synthetic problems sample p_i ~ L_i exactly: a proxy setting would not apply, so it
    is refused, and the stored config holds null, never a default that did not run."""
    with pytest.raises(ConfigError, match=f"^{key}: .*null for synthetic problems"):
        _cfg(sampler="importance", **{key: value})
    stored = _cfg(sampler="importance").to_dict()
    assert stored[key] is None
    net = TrialConfig.from_dict(dict(dataset="digits", model="mlp", lr=0.1, epochs=1, sampler="importance"))
    assert (net.importance_proxy, net.importance_mix, net.importance_refresh) == ("loss", 0.1, 1)


def test_theory_step_rules_run_when_n_is_below_d():
    """n = 20 < d = 40 without a regulariser: mu > 0 (the PL constant), so v2 runs and
    USAM converges linearly to the exact minimum."""
    cfg = _cfg(dataset="leastsq", n_samples=20, dim=40, cond=3.0, reg=0.0, lam=0.0, lr=None, rho=None,
               step_rule="v2", sampler="full", batch_size=20, iterations=3000, eval_every=1000)
    records = list(SyntheticTrial(cfg).records())
    assert records[-1]["rel_subopt"] < 1e-10
