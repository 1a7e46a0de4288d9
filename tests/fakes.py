"""A small, realistic results folder written through the real store, for tests of the
store, the loader, aggregation and figures. The numbers are synthetic curves with seed
noise (SAM-family flatter and a little more accurate than SGD); no training happens."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from harness import store
from harness.config import TrialConfig
from harness.records import new_record

SWEEP = "fake-sweep"
# (optimizer, lam, rho) of the grid: every legend label once.
METHODS = (("sgd", None, 0.0), ("usam", 0.0, 0.05), ("sam", 1.0, 0.05),
           ("unified", 0.5, 0.05), ("unified", "1/t", 0.05))
STEPS_PER_EPOCH = 20


def make_results(tmp_path: Path, *, n_seeds: int = 3, epochs: int = 5, synthetic: bool = False,
                 with_sharpness: bool = True, diverged: bool = False, incomplete: bool = False,
                 busy_sam: bool = False, sweep: str = SWEEP) -> Path:
    """Write the sweep folder ``tmp_path/sweep`` (``tmp_path`` is the results root) and return it.

    The grid is METHODS x seeds. ``synthetic``: least squares (rel_subopt, grad_norm and the
    problem constants filled; accuracies null) instead of digits/MLP. ``with_sharpness``:
    lam_max and trace every second evaluation, null otherwise. ``diverged``: USAM's last
    seed diverges half way (status "diverged", a null final loss). ``incomplete``: one more
    trial in the manifest with only a progress file, as while it runs. ``busy_sam``: SAM's
    trials ran beside two others (concurrency 3), every other trial alone.
    """
    sweep_dir = Path(tmp_path) / sweep
    configs = [_config(opt, lam, rho, seed, epochs, synthetic, with_sharpness)
               for opt, lam, rho in METHODS for seed in range(n_seeds)]
    running = _config("sam", 1.0, 0.1, 0, epochs, synthetic, with_sharpness) if incomplete else None
    entries = [{"trial_id": store.trial_id(sweep, c), "trial": c} for c in configs + [running] if c]
    spec_hash = "f" * 40
    store.write_spec(sweep_dir, f"name: {sweep}\n", spec_hash,
                     {"sweep": sweep, "spec_hash": spec_hash, "trials": entries})
    rng = np.random.default_rng(0)
    for entry in entries:
        config, tid = entry["trial"], entry["trial_id"]
        diverges = diverged and config["optimizer"] == "usam" and config["seed"] == n_seeds - 1
        stop = max(1, epochs // 2) if diverges else epochs
        records = [_record(config, e, rng, synthetic, with_sharpness) for e in range(1, stop + 1)]
        if diverges:
            records[-1].update(train_loss=None, test_loss=None, weight_norm=None)
        if config is running:
            store.write_progress(sweep_dir, tid, records[: max(1, epochs // 2)])
            continue
        row = store.trial_row(
            sweep=sweep, spec_hash=spec_hash, trial_id=tid, config=config, records=records,
            status="diverged" if diverges else "ok", error=None, attempts=1,
            info=_info(synthetic), node="10.0.0.1", provenance=store.provenance(),
            concurrency=3.0 if busy_sam and config["optimizer"] == "sam" else 1.0)
        store.write_trial(sweep_dir, row, records)
    return sweep_dir


def _config(optimizer: str, lam, rho: float, seed: int, epochs: int, synthetic: bool,
            with_sharpness: bool) -> dict:
    """A config as validation leaves it (lam, rho and eval_every filled)."""
    common = dict(optimizer=optimizer, lam=lam, rho=rho, seed=seed,
                  sharpness_every=1 if with_sharpness else 0, sharpness_trace=with_sharpness)
    if synthetic:
        return TrialConfig(dataset="leastsq", model="linear", n_samples=100, dim=20, cond=50.0,
                           sampler="tau_nice", batch_size=5, lr=0.01, iterations=epochs * STEPS_PER_EPOCH,
                           eval_every=STEPS_PER_EPOCH, **common).to_dict()
    return TrialConfig(dataset="digits", model="mlp", width=32, depth=2, batch_size=64, lr=0.1,
                       momentum=0.9, weight_decay=5e-4, epochs=epochs, eval_every=1, **common).to_dict()


def _record(config: dict, epoch: int, rng: np.random.Generator, synthetic: bool, with_sharpness: bool) -> dict:
    flat = config["optimizer"] != "sgd"
    steps = epoch * STEPS_PER_EPOCH
    noise = float(rng.normal(0.0, 0.005))
    decay = math.exp(-epoch / 2.0)
    lam_t = {"sgd": None, "usam": 0.0, "sam": 1.0}.get(config["optimizer"], config["lam"])
    if lam_t == "1/t":
        lam_t = 1.0 / steps
    measured = with_sharpness and epoch % 2 == 0
    values = dict(
        epoch=float(epoch), iteration=steps, grad_evals=steps * (2 if flat else 1),
        train_loss=2.3 * decay + 0.05 + abs(noise), weight_norm=10.0 + epoch + noise,
        lam_max=(8.0 if flat else 25.0) * (1.0 + noise) if measured else None,
        lam_max_hvps=40 if measured else None, lam_max_residual=0.01 if measured else None,
        trace=(60.0 if flat else 200.0) * (1.0 + noise) if measured else None,
        trace_hvps=20 if measured else None,
        lr=config["lr"], rho=config["rho"], lam=lam_t,
        time_train=0.5 * epoch, time_eval=0.1 * epoch, time_sharpness=0.2 * (epoch // 2) if with_sharpness else 0.0,
    )
    values["time_total"] = values["time_train"] + values["time_eval"] + values["time_sharpness"] + 0.01
    if synthetic:
        values.update(rel_subopt=decay * (0.8 if flat else 1.0), grad_norm=3.0 * decay)
    else:
        top = 0.95 if flat else 0.93
        values.update(train_acc=min(1.0, top + 0.03 - (top - 0.1) * decay + noise),
                      test_acc=top - (top - 0.1) * decay + noise, test_loss=2.3 * decay + 0.2 + noise)
    return new_record(**values)


def _info(synthetic: bool) -> dict:
    if not synthetic:
        return {"sampler_desc": "reshuffle(b=64)", "device": "cpu"}
    return {"sampler_desc": "tau_nice(b=5, without replacement)", "device": "cpu",
            "problem_L": 50.0, "problem_mu": 1.0, "problem_L_max": 120.0, "problem_L_bar": 60.0,
            "problem_f_star": 0.0, "sampler_A": 114.0, "sampler_B": 0.8, "theory_rho": None, "theory_lr": None}
