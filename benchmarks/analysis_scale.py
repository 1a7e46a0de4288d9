"""How fast analysis reads and aggregates a large sweep: 10^4 trials, 10^6 epoch rows.

Generates a results folder under the store's schema with synthetic learning curves (no
training) in two layouts: as a running sweep leaves it (``store.write_trial`` writes one
trials and one epochs file per trial and compacts every ``store.COMPACT_AT`` of them into a
batch file; here the batches are written directly), and after a final ``store.compact``
(one batch). For each it times ``analysis.load``, the main aggregations and a few figures,
and prints seconds.

    .venv/bin/python benchmarks/analysis_scale.py [--trials 10000] [--evals 100] [--no-figures]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import analysis  # noqa: E402
from analysis import aggregate as agg  # noqa: E402
from analysis import compare, targets  # noqa: E402
from harness import store  # noqa: E402

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


def timed(label: str, fn, results: dict):
    start = time.perf_counter()
    out = fn()
    results[label] = time.perf_counter() - start
    print(f"  {label:<44} {results[label]:7.2f} s", flush=True)
    return out


def measure(folder: Path, figures: bool) -> dict[str, float]:
    results: dict[str, float] = {}
    trials, epochs = timed("analysis.load", lambda: analysis.load(folder), results)
    print(f"  ({len(trials):,} trials, {len(epochs):,} epoch rows)")
    timed("seed_summary, final (trials table)", lambda: agg.seed_summary(trials), results)
    timed("seed_summary, best epoch (from epochs)", lambda: agg.seed_summary(trials, epochs, at="best"), results)
    target = timed("reference_target (AlgoPerf)", lambda: targets.reference_target(trials, epochs), results)
    ttt = timed("time_to_target", lambda: targets.time_to_target(trials, epochs, target), results)
    timed("performance_ratios + profile", lambda: targets.performance_profile(targets.performance_ratios(ttt)),
          results)
    equal = timed("at_equal_cost (grad evals)", lambda: compare.at_equal_cost(trials, epochs), results)
    timed("compare_with_baseline", lambda: compare.compare_with_baseline(equal, "test_acc_at_equal_grad_evals"),
          results)
    if figures:
        from analysis.figures import FIGURES, close

        for spec in FIGURES:
            if spec.name in ("curves_epoch", "heatmap_rho_lam", "performance_profile", "sharpness_vs_accuracy"):
                fig = timed(f"figure {spec.name} (drawn, not saved)", lambda: spec.draw(trials, epochs, []), results)
                if fig is not None:
                    close(fig)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--evals", type=int, default=100, help="evaluations (epoch rows) per trial")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--report", action="store_true", help="also time a whole report (all figures, png)")
    args = parser.parse_args()
    start = time.perf_counter()
    trials, epochs = generate(args.trials, args.evals)
    print(f"generated {trials.num_rows:,} trials and {epochs.num_rows:,} epoch rows in "
          f"{time.perf_counter() - start:.1f} s")
    folder = Path(tempfile.mkdtemp(prefix="sambench-scale-")) / "scale"
    try:
        seconds = write_as_sweep(folder, trials, epochs, args.evals)
        files = len(list((folder / "epochs").glob("*.parquet")))
        print(f"\nlayout as a sweep leaves it: {files} epochs files, {_mib(folder):.0f} MiB, "
              f"written in {seconds:.1f} s")
        measure(folder, figures=not args.no_figures)
        start = time.perf_counter()
        merged = store.compact(folder)
        print(f"\nlayout compacted: store.compact merged {merged:,} per-trial files in "
              f"{time.perf_counter() - start:.1f} s; {len(list((folder / 'epochs').glob('*.parquet')))} "
              f"epochs files, {_mib(folder):.0f} MiB")
        measure(folder, figures=not args.no_figures)
        if args.report:
            from analysis.report import build_report

            timed("build_report (every figure, png)", lambda: build_report(folder), {})
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


def _mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*.parquet")) / 2 ** 20


if __name__ == "__main__":
    main()
