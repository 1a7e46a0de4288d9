"""``sambench ls``: what a sweep folder holds, read from its manifest and Parquet alone."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from harness import store
from harness.progress import better, format_seconds, headline, work


def sweep_status(sweep_dir: str | Path, list_trials: bool = False) -> str:
    """A status table: trials ok, diverged, errored, running (or interrupted) with their last
    recorded evaluation, not started; the best finished trial per workload."""
    sweep_dir = Path(sweep_dir)
    manifest = store.open_manifest(sweep_dir)
    trials_table, epochs_table = store.scan([sweep_dir], include_partial=True)  # one read
    trials = store.to_pandas(trials_table)
    recorded = set(trials_table.column("trial_id").to_pylist())
    started = set(epochs_table.column("trial_id").to_pylist()) - recorded
    counts = trials["status"].astype(str).value_counts().to_dict() if len(trials) else {}
    total = store.expected_trials(manifest)
    running = [t for t in manifest["trials"] if t["trial_id"] in started]
    not_started = total - len(recorded) - len(running)
    lines = [
        f"sweep {manifest['sweep']} ({sweep_dir}): {total} trials",
        f"  ok {counts.get('ok', 0)} · diverged {counts.get('diverged', 0)} · error {counts.get('error', 0)}"
        f" · running or interrupted {len(running)} · not started {not_started}",
    ]
    lines += _best_lines(trials_table.to_pylist())
    if running:
        lines += ["", "running or interrupted (last recorded evaluation):",
                  _running_table(sweep_dir, running, epochs_table).to_string(index=False)]
    if list_trials and len(trials):
        columns = [c for c in ("trial_id", "method", "rho", "sampler", "dataset", "model", "seed",
                               "status", "final_test_acc", "final_rel_subopt", "final_lam_max",
                               "time_total") if c in trials and trials[c].notna().any()]
        lines += ["", "recorded:", trials[columns].sort_values("trial_id").to_string(index=False)]
    errors = trials[trials["status"].astype(str) == "error"] if len(trials) else trials
    for _, row in errors.head(5).iterrows():
        lines.append(f"  error in {row['trial_id']} ({row['method']}): {row['error']}")
    return "\n".join(lines)


def _running_table(sweep_dir: Path, running: list[dict], epochs_table) -> pd.DataFrame:
    """One row per unfinished trial: its progress and the metrics of its last evaluation.
    ``updated`` is the age of its progress file (the driver rewrites it every few seconds
    while the trial runs, so a large age means an interrupted sweep)."""
    ids = [t["trial_id"] for t in running]
    epochs = epochs_table.to_pandas()
    last = epochs[epochs["trial_id"].isin(ids)].sort_values("iteration").groupby("trial_id").tail(1)
    last = last.set_index("trial_id")
    rows = []
    for entry in running:
        tid, config = entry["trial_id"], entry["trial"]
        record = last.loc[tid].to_dict() if tid in last.index else {}
        done, total, unit = work(config, record)
        progress = f"{unit} {done:g}/{total:g}" if unit == "epoch" else f"it {int(done)}/{int(total)}"
        path = sweep_dir / "epochs" / f"{tid}{store.PARTIAL}"
        age = format_seconds(time.time() - path.stat().st_mtime) + " ago" if path.exists() else "-"
        row = {"trial_id": tid, "method": store.method_label(config), "dataset": config["dataset"],
               "model": config["model"], "seed": config["seed"], "progress": progress}
        for key in ("train_loss", "test_acc", "rel_subopt", "lam_max", "time_total"):
            value = record.get(key)
            if value is not None and value == value:
                row[key] = value
        row["updated"] = age
        rows.append(row)
    return pd.DataFrame(rows).fillna("-")


def _best_lines(rows: list[dict]) -> list[str]:
    """Best finished trial per workload, by ``harness.progress.headline`` (final values)."""
    best: dict[str, tuple[tuple[str, float, bool], dict]] = {}
    for row in rows:
        score = headline(row)
        workload = f"{row['dataset']}/{row['model']}"
        if score is not None and (workload not in best or better(score, best[workload][0])):
            best[workload] = (score, row)
    lines = []
    for workload, ((label, value, _), row) in sorted(best.items()):
        shown = f"{value:.4f}" if label.endswith("acc") else f"{value:.3e}"
        if label == "final val acc" and row.get("final_test_acc") == row.get("final_test_acc"):
            shown += f" (test {row['final_test_acc']:.4f})"  # chosen on validation, test reported there
        lines.append(f"  best on {workload}: {label} {shown} — {row['method']} (trial {row['trial_id']})")
    return lines
