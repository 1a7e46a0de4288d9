"""``sambench report``: one folder that says what a sweep found.

report/ holds report.md, a self-contained report.html (figures embedded), figures/ in the
chosen format and tables/ as CSV. It opens with the spec, provenance, trial counts by
status and an automatic summary (best configuration per workload; SAM-family against SGD
at equal epochs and at equal gradient evaluations, with 95% intervals), then the tables
and every figure the sweep has the data for. It reads a running or partly failed sweep
and says what is missing. Nothing in it depends on the clock, so the same Parquet always
gives the same tables.
"""

from __future__ import annotations

import inspect
import io
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from analysis import aggregate as agg
from analysis.document import Document
from analysis.figures import FIGURES, FORMATS, close, save
from analysis.load import INCOMPLETE, load
from analysis.plotting import facet_name
from analysis.tuned import tuned_section
from harness import store
from harness.config import ConfigError

TABLES = ("summary_final", "summary_best_epoch", "table2_final", "vs_sgd_equal_epochs", "vs_sgd_equal_compute",
          "time_to_target", "performance_ratios", "wallclock", "trials", "missing")
PROVENANCE = ("git_commit", "git_dirty", "sambench_version", "python_version", "torch_version", "ray_version",
              "hostname", "cpu_model", "gpu_model", "device_used")
MAX_FAILED = 30
FAMILY_NOTE = ("The best of several SAM-family configurations is chosen after the fact, which favours it; "
               "the count of configurations clearly better or worse than SGD is the fairer reading.")


def build_report(sweep_dir: Path, out_dir: Path | None = None, fmt: str = "png",
                 expected: Mapping[str, Any] | None = None) -> Path:
    """Write the report of ``sweep_dir`` into ``out_dir`` (default ``sweep_dir/report``) and
    return the path of report.html. ``expected`` is the grid the sweep should hold, as a
    manifest (``{"trials": [{"trial_id", "trial"}, ...]}``) or ``{trial_id: config}``;
    by default the sweep's own manifest."""
    if fmt not in FORMATS:
        raise ConfigError("format", fmt, ", ".join(FORMATS))
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir / "report"
    trials, epochs = load(sweep_dir)
    grid = _expected(sweep_dir, expected)
    name = _sweep_name(sweep_dir, trials)
    doc = Document(f"sambench report: {name}")
    tables: dict[str, pd.DataFrame] = {}

    _spec_section(doc, sweep_dir)
    _provenance_section(doc, trials)
    _status_section(doc, trials, epochs, grid, tables)
    _sampler_constants_note(doc, trials)
    done = trials[trials["status"].astype(str) == "ok"] if len(trials) else trials
    if len(done):
        metric = agg.primary_metric(done)
        _summary_section(doc, trials, epochs, metric, tables)
        _tables_section(doc, trials, epochs, metric, tables)
    else:
        doc.heading("Summary")
        doc.paragraph("No trial has finished successfully yet: there is nothing to aggregate.")
    tuned_section(doc, sweep_dir, trials, epochs, out, fmt, tables)
    _figures_section(doc, trials, epochs, out, fmt)

    (out / "tables").mkdir(parents=True, exist_ok=True)
    for stale in TABLES:
        (out / "tables" / f"{stale}.csv").unlink(missing_ok=True)
    for table_name, frame in tables.items():
        frame.to_csv(out / "tables" / f"{table_name}.csv", index=False)
    (out / "report.md").write_text(doc.markdown(), encoding="utf-8")
    (out / "report.html").write_text(doc.html(), encoding="utf-8")
    return out / "report.html"


# -- opening sections -------------------------------------------------------------------

def _expected(sweep_dir: Path, expected: Mapping[str, Any] | None) -> dict[str, dict]:
    if expected is None:
        if not (sweep_dir / store.MANIFEST).is_file():
            return {}
        expected = store.read_manifest(sweep_dir)
    if "trials" in expected and isinstance(expected["trials"], list):
        return {t["trial_id"]: t["trial"] for t in expected["trials"]}
    return {str(k): dict(v) for k, v in expected.items()}


def _sweep_name(sweep_dir: Path, trials: pd.DataFrame) -> str:
    if len(trials) and "sweep" in trials and trials["sweep"].notna().any():
        return ", ".join(sorted(trials["sweep"].dropna().astype(str).unique()))
    return sweep_dir.name


def _spec_section(doc: Document, sweep_dir: Path) -> None:
    doc.heading("Spec")
    spec = sweep_dir / "spec.yaml"
    if spec.is_file():
        try:
            _, spec_hash = store.read_spec(sweep_dir)
            doc.paragraph(f"spec hash {spec_hash}")
        except (OSError, KeyError, ValueError):
            pass
        doc.code(spec.read_text(encoding="utf-8"))
    else:
        doc.paragraph("This folder has no spec.yaml.")


def _provenance_section(doc: Document, trials: pd.DataFrame) -> None:
    doc.heading("Provenance")
    rows = []
    for column in PROVENANCE:
        if column not in trials or not trials[column].notna().any():
            continue
        counts = trials[column].astype(object).dropna().astype(str).value_counts()
        values = sorted(counts.index)
        text = values[0] if len(values) == 1 else "; ".join(f"{v} ({counts[v]} trials)" for v in values)
        rows.append({"item": column, "value": text})
    if "node" in trials and trials["node"].notna().any():
        rows.append({"item": "Ray nodes", "value": str(trials["node"].nunique())})
    if "finished_at" in trials and trials["finished_at"].notna().any():
        first, last = trials["finished_at"].min(), trials["finished_at"].max()
        rows.append({"item": "trials finished (UTC)", "value": f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}"})
    if rows:
        doc.table(pd.DataFrame(rows))
    else:
        doc.paragraph("No finished trial records provenance yet.")


def _status_section(doc: Document, trials: pd.DataFrame, epochs: pd.DataFrame, grid: dict[str, dict],
                    tables: dict[str, pd.DataFrame]) -> None:
    doc.heading("Trials by status")
    recorded = set(trials["trial_id"].astype(str)) if len(trials) else set()
    running = set(epochs.loc[epochs["status"].astype(str) == INCOMPLETE, "trial_id"].astype(str)) \
        if len(epochs) else set()
    not_started = sorted(set(grid) - recorded - running)
    counts = trials["status"].astype(str).value_counts() if len(trials) else pd.Series(dtype=int)
    rows = [{"status": s, "trials": int(counts.get(s, 0))} for s in store.STATUSES]
    rows += [{"status": "in progress or interrupted", "trials": len(running)},
             {"status": "not started", "trials": len(not_started)},
             {"status": "expected (grid)", "trials": len(grid) if grid else len(recorded | running)}]
    doc.table(pd.DataFrame(rows))
    if len(trials):
        tables["trials"] = _trials_table(trials)
        doc.paragraph("Every trial with its configuration, status and final values: tables/trials.csv.")
    missing = _missing(grid, running, not_started, epochs)
    if len(missing):
        tables["missing"] = missing
        doc.paragraph(f"{len(missing)} trial(s) of the grid have no result yet; they are left out of every "
                      "table and figure below:")
        doc.table(missing, "missing.csv")
    elif grid:
        doc.paragraph("Every trial of the grid has a result.")
    failed = trials[trials["status"].astype(str).isin(["error", "diverged"])] if len(trials) else trials
    if len(failed):
        doc.paragraph("Failed trials (excluded from the statistics, which use status ok only):")
        shown = failed.sort_values("trial_id").head(MAX_FAILED)
        more = [f"and {len(failed) - MAX_FAILED} more (tables/trials.csv)"] if len(failed) > MAX_FAILED else []
        doc.bullets([f"{r.trial_id} ({r.method}, seed {r.seed}): {r.status}"
                     + (f": {r.error}" if isinstance(r.error, str) and r.error else "")
                     for r in shown.itertuples()] + more)


def _sampler_constants_note(doc: Document, trials: pd.DataFrame) -> None:
    """Say when the stored (A, B) constants, and the step sizes computed from them, are not a
    proved bound for what was sampled (the reference code's paper-compat samplers)."""
    if "sampler_AB_guaranteed" not in trials:
        return
    flagged = trials[trials["sampler_AB_guaranteed"].astype("boolean").eq(False).fillna(False).to_numpy(bool)]
    if not len(flagged):
        return
    doc.paragraph("Sampler constants not guaranteed: these trials store sampler_A/sampler_B (and took their "
                  "theory step sizes from them) although no expected-residual bound covers what they drew:")
    groups = flagged.groupby(["sampler_desc", "sampler_AB_caveat"], observed=True).size()
    doc.bullets([f"{desc}, {count} trial(s): {caveat}" for (desc, caveat), count in groups.items()])


def _trials_table(trials: pd.DataFrame) -> pd.DataFrame:
    keep = ["trial_id", *agg.config_columns(trials), *(c for c in agg.REPLICATES if c in trials), "status",
            "epochs_done", "iterations_done", "grad_evals", "final_train_loss", "final_test_acc", "best_test_acc",
            "best_epoch", "final_rel_subopt", "final_lam_max", "time_train", "time_total", "error"]
    frame = trials[[c for c in dict.fromkeys(keep) if c in trials]]
    return frame.sort_values("trial_id").reset_index(drop=True)


def _missing(grid: dict[str, dict], running: set[str], not_started: list[str], epochs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    progress = epochs[epochs["trial_id"].astype(str).isin(running)].groupby(
        epochs["trial_id"].astype(str), observed=True)["epoch"].max() if running else pd.Series(dtype=float)
    for tid in sorted(running) + not_started:
        config = grid.get(tid, {})
        rows.append({"trial_id": tid, "method": store.method_label(config) if config else "?",
                     "dataset": config.get("dataset"), "model": config.get("model"),
                     "sampler": config.get("sampler"), "rho": config.get("rho"), "seed": config.get("seed"),
                     "state": "in progress or interrupted" if tid in running else "not started",
                     "epochs so far": progress.get(tid, np.nan)})
    return pd.DataFrame(rows)


# -- summary ----------------------------------------------------------------------------

def _summary_section(doc: Document, trials: pd.DataFrame, epochs: pd.DataFrame, metric: str,
                     tables: dict[str, pd.DataFrame]) -> None:
    doc.heading("Summary")
    done = trials[trials["status"].astype(str) == "ok"]
    summary = agg.seed_summary(done, None, metric, "final")
    value = agg.value_column(metric, "final")
    best = agg.best_configurations(summary, value)
    items = []
    for row in best.to_dict("records"):
        items.append(f"{_workload(row)}: best configuration {_config_text(row, summary)}, "
                     f"{_metric_text(metric)} (final) {_stat_text(row, value, metric)}")
    doc.paragraph("Best configuration per workload (dataset · model · sampler), by the seed mean of the final value:")
    doc.bullets(items)
    methods = set(done["method"].astype(str))
    if agg.BASELINE not in methods or methods == {agg.BASELINE}:
        doc.paragraph("SAM-family against SGD: not compared, the sweep "
                      + (f"has no {agg.BASELINE} baseline." if agg.BASELINE not in methods else "has no SAM-family trials."))
        return
    values = agg.trial_values(done, None, metric, "final")
    epochs_cmp = agg.compare_with_baseline(values, value, agg.BASELINE)
    tables["vs_sgd_equal_epochs"] = epochs_cmp
    compute_values = agg.at_equal_cost(done, epochs, metric)
    compute_value = f"{metric}_at_equal_grad_evals"
    compute_cmp = agg.compare_with_baseline(compute_values, compute_value, agg.BASELINE)
    budgets = compute_values.dropna(subset=["budget"]).groupby(
        [c for c in agg.WORKLOAD if c in compute_values], observed=True)["budget"].first()
    tables["vs_sgd_equal_compute"] = compute_cmp
    doc.paragraph("SAM-family against SGD (difference of seed means, Welch 95% interval; "
                  "each workload's best SGD configuration is the baseline). " + FAMILY_NOTE)
    doc.bullets(_comparison_lines(epochs_cmp, value, metric, "at equal epochs (final values)", None)
                + _comparison_lines(compute_cmp, compute_value, metric, "at equal gradient evaluations", budgets))


def _comparison_lines(cmp: pd.DataFrame, value: str, metric: str, condition: str,
                      budgets: pd.Series | None) -> list[str]:
    lines = []
    keys = [c for c in agg.WORKLOAD if c in cmp]
    for key, group in agg.grouped(cmp, keys):
        group = group.dropna(subset=[f"{value}_diff"])
        if group.empty:
            continue
        up = agg.higher_is_better(metric)
        top = group.sort_values(f"{value}_diff", ascending=not up, kind="stable").iloc[0]
        budget = ""
        if budgets is not None:
            spent = budgets.get(key if len(keys) > 1 else key[0])
            budget = f" (budget {spent:,.0f} gradient evaluations)" if spent is not None else ""
        verdicts = group["verdict"].value_counts()
        lines.append(
            f"{_workload(top)}, {condition}{budget}: best SAM-family {_config_text(top, cmp)} "
            f"{_number(metric, top[f'{value}_mean'])} vs SGD {_number(metric, top['baseline_mean'])}, "
            f"difference {_diff(metric, top[f'{value}_diff'])} "
            f"[{_diff(metric, top[f'{value}_diff_ci95_low'])}, {_diff(metric, top[f'{value}_diff_ci95_high'])}]"
            f" ({top['verdict']}); of {len(group)} SAM-family configurations {verdicts.get('better', 0)} better, "
            f"{verdicts.get('worse', 0)} worse, {len(group) - verdicts.get('better', 0) - verdicts.get('worse', 0)} "
            "without a clear difference")
    return lines


# -- tables -----------------------------------------------------------------------------

def _tables_section(doc: Document, trials: pd.DataFrame, epochs: pd.DataFrame, metric: str,
                    tables: dict[str, pd.DataFrame]) -> None:
    doc.heading("Tables")
    done = trials[trials["status"].astype(str) == "ok"]
    doc.paragraph("Statistics over seeds: mean, sample std, n, and a Student-t 95% interval. Column names "
                  "say which value each uses: _final (the last evaluation) or _best_epoch (the evaluation "
                  "with the best value). Values in stored units (accuracy as a fraction).")
    tables["summary_final"] = agg.seed_summary(done, None, metric, "final")
    has_best = f"best_{metric}" in done
    tables["summary_best_epoch"] = agg.seed_summary(done, None if has_best else epochs, metric, "best")
    for name, title in (("summary_final", "Final values"), ("summary_best_epoch", "Best-epoch values")):
        doc.heading(title, 3)
        doc.table(tables[name], f"{name}.csv")
    table2 = _table2(done, metric)
    if table2 is not None:
        tables["table2_final"] = table2
        doc.heading("ρ × λ (the layout of the paper's Table 2)", 3)
        doc.table(table2, "table2_final.csv")
    for name, title in (("vs_sgd_equal_epochs", "Against SGD at equal epochs"),
                        ("vs_sgd_equal_compute", "Against SGD at equal gradient evaluations")):
        if name in tables:
            doc.heading(title, 3)
            doc.table(tables[name], f"{name}.csv")
    _time_tables(doc, done, trials, epochs, metric, tables)
    if {"time_train", "epochs_done"} <= set(done) and agg.BASELINE in set(done["method"].astype(str)):
        ratios = agg.epoch_time_ratio(trials)
        keys = [c for c in (*agg.WORKLOAD, "device_used", "device") if c in ratios][:len(agg.WORKLOAD) + 1]
        tables["wallclock"] = agg.summarize(ratios, "time_per_epoch_vs_SGD", [*keys, "method"])
        doc.heading("Training time per epoch relative to SGD", 3)
        doc.table(tables["wallclock"], "wallclock.csv")


def _table2(done: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """Mean ± sd (accuracy in %) with rho down and lam across, one block per workload."""
    if metric != "test_acc" or "lam" not in done or done["lam"].nunique() < 2:
        return None
    cells = agg.lam_rho_summary(done, metric, "final")
    value = agg.value_column(metric, "final")
    if cells.empty:
        return None
    keys = [c for c in (*agg.WORKLOAD, "family") if c in cells]
    lams = sorted(cells["lam_key"].dropna().unique(), key=agg.lam_sort_key)
    label = f"{value} (% mean ± sd)"
    rows = []
    for key, group in agg.grouped(cells, keys):
        workload = facet_name(key if isinstance(key, tuple) else (key,), keys)
        for rho, line in agg.grouped(group[group["lam_key"].notna()], ["rho"]):
            row = {"workload": workload, "rho": f"{rho[0]:g}"}
            by_lam = line.set_index("lam_key")
            row |= {f"lam={lam}": _pm(by_lam.loc[lam], value) if lam in by_lam.index else "" for lam in lams}
            rows.append(row)
        for base in group[group["lam_key"].isna()].to_dict("records"):
            rows.append({"workload": workload, "rho": agg.BASELINE, f"lam={lams[0]}": _pm(base, value)})
    return pd.DataFrame(rows).rename(columns={"rho": f"rho \\ {label}"}).fillna("")


def _time_tables(doc: Document, done: pd.DataFrame, trials: pd.DataFrame, epochs: pd.DataFrame, metric: str,
                 tables: dict[str, pd.DataFrame]) -> None:
    if agg.BASELINE not in set(done["method"].astype(str)) or metric not in epochs or not epochs[metric].notna().any():
        return
    target = agg.reference_target(trials, epochs, agg.BASELINE, metric)
    if target.empty:
        return
    ttt = agg.time_to_target(trials, epochs, target, metric)
    by_time = agg.method_time_to_target(ttt, "time_to_target")
    by_evals = agg.method_time_to_target(ttt, "grad_evals_to_target")
    keys = [c for c in agg.WORKLOAD if c in by_time]
    table = by_time.merge(by_evals[[*keys, "method", "grad_evals_to_target", "grad_evals_to_target_min",
                                    "grad_evals_to_target_max"]], on=[*keys, "method"], how="outer")
    tables["time_to_target"] = table.merge(target, on=keys, how="left")
    ratios = agg.performance_ratios(ttt, "time_to_target").rename(columns={"ratio": "time_ratio"})
    evals = agg.performance_ratios(ttt, "grad_evals_to_target").rename(columns={"ratio": "grad_evals_ratio"})
    tables["performance_ratios"] = ratios.merge(evals, on=[*keys, "method"])
    doc.heading("Time to target", 3)
    doc.paragraph(f"Target per workload: {agg.AT_TEXT['best']} {metric} of SGD, median over seeds of the best "
                  "over its configurations (AlgoPerf's rule). Per method, the configuration with the lowest "
                  "median over seeds (seeds that miss the target count as infinite); min and max over the "
                  "seeds that reached it.")
    doc.table(tables["time_to_target"], "time_to_target.csv")
    doc.heading("Performance ratios (inputs of the performance profile)", 3)
    doc.table(tables["performance_ratios"], "performance_ratios.csv")


# -- figures ----------------------------------------------------------------------------

def _figures_section(doc: Document, trials: pd.DataFrame, epochs: pd.DataFrame, out: Path, fmt: str) -> None:
    doc.heading("Figures")
    notes: list[str] = []
    folder = out / "figures"
    for spec in FIGURES:
        for stale in FORMATS:
            (folder / f"{spec.name}.{stale}").unlink(missing_ok=True)
        skipped: list[str] = []
        fig = spec.draw(trials, epochs, skipped) if len(trials) else None
        notes += [f"{spec.name} ({spec.title}): {note.split(': skipped, ', 1)[-1]}" for note in skipped]
        if fig is None:
            continue
        path = save(fig, folder / f"{spec.name}.{fmt}", fmt)
        if fmt == "pdf":  # a browser page cannot inline a PDF image: embed a PNG rendering
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
            image, image_fmt = buffer.getvalue(), "png"
        else:
            image, image_fmt = path.read_bytes(), fmt
        close(fig)
        caption = " ".join((inspect.getdoc(spec.function) or "").split())
        doc.heading(spec.title, 3)
        doc.figure(spec.title, f"figures/{spec.name}.{fmt}", caption, image, image_fmt)
    if not len(trials):
        notes.append("no figures: no trial has finished yet")
    if notes:
        doc.heading("Figures not drawn", 3)
        doc.bullets(notes)


# -- wording ----------------------------------------------------------------------------

def _workload(row: Mapping[str, Any]) -> str:
    keys = [c for c in agg.WORKLOAD if c in row]
    return facet_name([row[c] for c in keys], keys)


def _config_text(row: Mapping[str, Any], table: pd.DataFrame) -> str:
    """The method plus every setting that varies within its workload: 'SAM (rho=0.05, lr=0.1)'."""
    skip = {"method", "lam", *agg.WORKLOAD, *(("rho",) if row["method"] == agg.BASELINE else ())}
    for column in agg.WORKLOAD:  # a setting fixed for this workload says nothing here
        if column in table and column in row:
            table = table[table[column].astype(object) == row[column]]
    settings = []
    for column in agg.CONFIG_FIELDS:
        if column in skip or column not in table or table[column].nunique(dropna=False) < 2:
            continue
        value = row.get(column)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        settings.append(f"{column}={value:g}" if isinstance(value, float) else f"{column}={value}")
    return f"{row['method']}" + (f" ({', '.join(settings)})" if settings else "")


def _metric_text(metric: str) -> str:
    return {"test_acc": "test accuracy", "rel_subopt": "relative suboptimality",
            "train_loss": "training loss"}.get(metric, metric)


def _number(metric: str, value: float) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{100 * value:.2f}%" if metric.endswith("_acc") else f"{value:.3g}"


def _diff(metric: str, value: float) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{100 * value:+.2f} pp" if metric.endswith("_acc") else f"{value:+.3g}"


def _stat_text(row: Mapping[str, Any], value: str, metric: str) -> str:
    mean, n = row[f"{value}_mean"], int(row[f"{value}_n"])
    low, high = row[f"{value}_ci95_low"], row[f"{value}_ci95_high"]
    text = f"{_number(metric, mean)} ± {_number(metric, row[f'{value}_std']) if n > 1 else '–'} (n={n}"
    return text + (f", 95% CI {_number(metric, low)} to {_number(metric, high)})" if np.isfinite(low) else ")")


def _pm(row: Mapping[str, Any], value: str) -> str:
    std = row[f"{value}_std"]
    return f"{100 * row[f'{value}_mean']:.2f} ± " + ("–" if pd.isna(std) else f"{100 * std:.2f}")
