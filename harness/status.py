"""``sambench ls``: what a sweep folder holds, read from its manifest and Parquet alone."""

from __future__ import annotations

from pathlib import Path

from harness import store


def sweep_status(sweep_dir: str | Path, list_trials: bool = False) -> str:
    """A status table: trials ok, diverged, errored, in progress and not started; best so far."""
    sweep_dir = Path(sweep_dir)
    manifest = store.open_manifest(sweep_dir)
    trials_table, epochs_table = store.scan([sweep_dir], include_partial=True)  # one read
    trials = store.to_pandas(trials_table)
    recorded = set(trials_table.column("trial_id").to_pylist())
    started = set(epochs_table.column("trial_id").to_pylist()) - recorded
    counts = trials["status"].astype(str).value_counts().to_dict() if len(trials) else {}
    total = len(manifest["trials"])
    in_progress = sum(1 for t in manifest["trials"] if t["trial_id"] in started)
    not_started = total - len(recorded) - in_progress
    lines = [
        f"sweep {manifest['sweep']} ({sweep_dir}): {total} trials",
        f"  ok {counts.get('ok', 0)} · diverged {counts.get('diverged', 0)} · error {counts.get('error', 0)}"
        f" · in progress or interrupted {in_progress} · not started {not_started}",
    ]
    lines += _best_lines(trials)
    if list_trials and len(trials):
        columns = [c for c in ("trial_id", "method", "rho", "sampler", "dataset", "model", "seed",
                               "status", "final_test_acc", "final_rel_subopt", "final_lam_max",
                               "time_total") if c in trials and trials[c].notna().any()]
        lines += ["", trials[columns].sort_values("trial_id").to_string(index=False)]
    errors = trials[trials["status"].astype(str) == "error"] if len(trials) else trials
    for _, row in errors.head(5).iterrows():
        lines.append(f"  error in {row['trial_id']} ({row['method']}): {row['error']}")
    return "\n".join(lines)


def _best_lines(trials) -> list[str]:
    """Best finished trial per workload: highest test accuracy, else lowest suboptimality."""
    lines = []
    finished = trials[trials["status"].astype(str) != "error"] if len(trials) else trials
    for (dataset, model), group in finished.groupby(["dataset", "model"], observed=True):
        if group["final_test_acc"].notna().any():
            best = group.loc[group["final_test_acc"].idxmax()]
            value = f"final test acc {best['final_test_acc']:.4f}"
        elif group["final_rel_subopt"].notna().any():
            best = group.loc[group["final_rel_subopt"].idxmin()]
            value = f"final rel. suboptimality {best['final_rel_subopt']:.3e}"
        else:
            continue
        lines.append(f"  best on {dataset}/{model}: {value} — {best['method']} (trial {best['trial_id']})")
    return lines
