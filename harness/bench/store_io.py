"""Item 7: the store and analysis at scale. A results folder of synthetic learning curves
(no training) under the store's schemas, 10^4 trials and 10^6 epoch rows in full (10^3
and 10^5 quick), is written as a running sweep leaves it (``store.COMPACT_AT`` trials per
batch file, the rest one file per trial), then read back by ``analysis.load``; the
references write and read the same tables with pyarrow directly (one file per table,
one dataset scan). A whole report (every figure, png) of a smaller sweep is timed alone.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from harness import store
from harness.bench.common import Context, Headline, Measurement, alternate

ITEM, NAME = 7, "store"

DATASETS, MODELS, SAMPLERS = ("digits", "mnist1d", "cifar10", "cifar100"), ("mlp", "resnet"), \
    ("uniform", "importance", "reshuffle")
# (optimizer, lam, method) x rho: SGD once, every SAM-family method at four radii
FAMILY = (("sam", "1", "SAM"), ("usam", "0", "USAM"), ("unified", "0.5", "Unified (lam=0.5)"),
          ("unified", "1/t", "Unified (lam=1/t)"), ("unified", "1-1/t", "Unified (lam=1-1/t)"))
RHOS = (0.05, 0.1, 0.2, 0.4)


def generate(n_trials: int, n_evals: int, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """(trials, epochs) Arrow tables under the store's schemas, rows sorted by trial."""
    rng = np.random.default_rng(seed)
    configs = [("sgd", None, "SGD", 0.0)] + [(o, lam, m, rho) for o, lam, m in FAMILY for rho in RHOS]
    workloads = [(d, m, s) for d in DATASETS for m in MODELS for s in SAMPLERS]
    cells = len(configs) * len(workloads)
    i = np.arange(n_trials)
    cfg = [configs[k] for k in (i % len(configs))]
    wl = [workloads[k] for k in (i // len(configs)) % len(workloads)]
    seeds = i // cells
    sam = np.array([c[0] != "sgd" for c in cfg])
    ids = np.array([f"{k:012x}" for k in i])
    top = 0.9 + 0.02 * sam + rng.normal(0, 0.005, n_trials)
    # epochs: n_evals per trial
    tid = np.repeat(ids, n_evals)
    epoch = np.tile(np.arange(1, n_evals + 1, dtype=float), n_trials)
    cost = np.repeat(np.where(sam, 2, 1), n_evals)
    decay = np.exp(-epoch / (n_evals / 5))
    acc = np.repeat(top, n_evals) * (1 - decay) + rng.normal(0, 0.003, tid.size)
    loss = 2.3 * decay + 0.05 + np.abs(rng.normal(0, 0.01, tid.size))
    time_train = epoch * cost * (1 + rng.normal(0, 0.02, tid.size))
    measured = (epoch % 10) == 0
    finished = np.datetime64("2025-01-01T00:00:00", "us") + i.astype("timedelta64[s]")
    columns = {
        "trial_id": tid, "sweep": np.full(tid.size, "scale"), "epoch": epoch,
        "iteration": (epoch * 100).astype(np.int64), "grad_evals": (epoch * 100 * cost).astype(np.int64),
        "train_loss": loss, "train_acc": acc + 0.03, "test_loss": loss + 0.2, "test_acc": acc,
        "weight_norm": 10 + epoch, "lam_max": np.where(measured, np.where(cost == 2, 8.0, 25.0), np.nan),
        "lr": np.full(tid.size, 0.1), "time_train": time_train, "time_eval": 0.1 * epoch,
        "time_sharpness": 0.05 * epoch, "time_total": time_train + 0.15 * epoch + 0.01,
        "finished_at": np.repeat(finished, n_evals),
    }
    epochs = _table(columns, store.EPOCHS_SCHEMA, tid.size)
    last = np.arange(n_trials) * n_evals + n_evals - 1
    acc_by_trial = acc.reshape(n_trials, n_evals)
    trials_cols = {
        "trial_id": ids, "sweep": np.full(n_trials, "scale"), "spec_hash": np.full(n_trials, "0" * 40),
        "dataset": np.array([w[0] for w in wl]), "model": np.array([w[1] for w in wl]),
        "sampler": np.array([w[2] for w in wl]), "optimizer": np.array([c[0] for c in cfg]),
        "lam": np.array([c[1] for c in cfg], dtype=object), "method": np.array([c[2] for c in cfg]),
        "rho": np.array([c[3] for c in cfg]), "lr": np.full(n_trials, 0.1), "seed": seeds.astype(np.int64),
        "epochs": np.full(n_trials, n_evals, dtype=np.int64), "batch_size": np.full(n_trials, 128, dtype=np.int64),
        "lr_schedule": np.full(n_trials, "cosine"), "status": np.full(n_trials, "ok"),
        "attempts": np.ones(n_trials, dtype=np.int64), "device_used": np.full(n_trials, "cuda:0 (NVIDIA H200)"),
        "epochs_done": np.full(n_trials, float(n_evals)), "iterations_done": columns["iteration"][last],
        "grad_evals": columns["grad_evals"][last], "final_train_loss": loss[last], "final_test_loss": loss[last] + 0.2,
        "final_test_acc": acc[last], "best_test_acc": acc_by_trial.max(axis=1),
        "best_epoch": acc_by_trial.argmax(axis=1) + 1.0, "final_lam_max": np.where(sam, 8.0, 25.0),
        "time_train": time_train[last], "time_total": columns["time_total"][last],
        "node": np.full(n_trials, "10.0.0.1"), "git_commit": np.full(n_trials, "0" * 40),
        "python_version": np.full(n_trials, "3.11"), "finished_at": finished,
    }
    return _table(trials_cols, store.TRIALS_SCHEMA, n_trials), epochs


def _table(columns: dict, schema: pa.Schema, n: int) -> pa.Table:
    arrays = []
    for field in schema:
        if field.name in columns:
            values = columns[field.name]
            mask = np.isnan(values) if values.dtype.kind == "f" else None
            arrays.append(pa.array(values, type=field.type, mask=mask))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def write_as_sweep(folder: Path, trials: pa.Table, epochs: pa.Table, n_evals: int) -> float:
    """Batch files of COMPACT_AT trials, the remainder as per-trial files, named as the
    store names them (without its fsyncs); returns seconds."""
    start = time.perf_counter()
    for sub in ("trials", "epochs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    size = store.COMPACT_AT
    n_batches = trials.num_rows // size
    for b in range(n_batches):
        name = f"{store.BATCH}{b:020d}.parquet"
        pq.write_table(trials.slice(b * size, size), folder / "trials" / name)
        pq.write_table(epochs.slice(b * size * n_evals, size * n_evals), folder / "epochs" / name)
    ids = trials.column("trial_id").to_pylist()
    for k in range(n_batches * size, trials.num_rows):
        pq.write_table(trials.slice(k, 1), folder / "trials" / f"{ids[k]}.parquet")
        pq.write_table(epochs.slice(k * n_evals, n_evals), folder / "epochs" / f"{ids[k]}.parquet")
    return time.perf_counter() - start


def _pyarrow_write(folder: Path, trials: pa.Table, epochs: pa.Table) -> None:
    for sub, table in (("trials", trials), ("epochs", epochs)):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / sub / "all.parquet")


def _pyarrow_read(folder: Path) -> None:
    for sub in ("trials", "epochs"):
        ds.dataset(folder / sub, format="parquet").to_table().to_pandas()


def run(ctx: Context) -> list[Measurement]:
    import analysis
    from analysis.report import build_report

    n_trials, n_evals = ctx.pick(64, 1_000, 10_000), ctx.pick(10, 100, 100)
    trials, epochs = generate(n_trials, n_evals)
    root = Path(tempfile.mkdtemp(prefix="sambench-bench-"))
    count = iter(range(10 ** 6))

    def fresh() -> Path:
        return root / f"w{next(count)}" / "scale"

    try:
        writes = alternate(ctx, {
            "store layout write": lambda: write_as_sweep(fresh(), trials, epochs, n_evals),
            "pyarrow write": lambda: _pyarrow_write(fresh(), trials, epochs),
        }, repeats=ctx.pick(1, 3, 3), warmup=1)
        sweep, flat = fresh(), fresh()
        write_as_sweep(sweep, trials, epochs, n_evals)
        _pyarrow_write(flat, trials, epochs)
        reads = alternate(ctx, {
            "analysis.load": lambda: analysis.load(sweep),
            "pyarrow read to pandas": lambda: _pyarrow_read(flat),
        }, repeats=ctx.pick(1, 3, 3), warmup=1)
        small = fresh()
        r_trials, r_evals = ctx.pick(16, 200, 1_000), ctx.pick(5, 20, 50)
        write_as_sweep(small, *generate(r_trials, r_evals), r_evals)
        start = time.perf_counter()
        build_report(small, root / "report")
        report = time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)
    size = f"{n_trials:,} trials, {n_trials * n_evals:,} epoch rows"
    return [
        Measurement(ITEM, NAME, f"write {size}", writes, [Headline("store layout write", "pyarrow write")],
                    warmup=1),
        Measurement(ITEM, NAME, f"read {size}", reads, [Headline("analysis.load", "pyarrow read to pandas")],
                    warmup=1),
        Measurement(ITEM, NAME, f"report of {r_trials:,} trials, {r_trials * r_evals:,} epoch rows",
                    {"build_report": [report]}, [], warmup=0, note="every figure, png; reported alone"),
    ]
