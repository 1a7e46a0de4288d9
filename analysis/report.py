"""``sambench report``: one folder that says what a sweep found.

report/ holds report.md, a self-contained report.html (figures embedded), figures/ in the
chosen format and tables/ as CSV. It opens with the spec, provenance, trial counts by
status and an automatic summary (analysis.report_findings: how configurations were chosen,
the best configuration per workload, every configuration against a baseline at equal
epochs and at equal compute with Holm-corrected verdicts, methods pairwise, sharpness),
then the tables and every figure the sweep has the data for. It reads a running or partly
failed sweep and says what is missing. Nothing in it depends on the clock, so the same
Parquet always gives the same tables. docs/statistics.md explains every statistic.
"""

from __future__ import annotations

import inspect
import io
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from analysis import aggregate as agg
from analysis.document import Document
from analysis.report_findings import Baseline, summary_section, tables_section
from analysis.figures import FIGURES, FORMATS, close, save
from analysis.load import INCOMPLETE, load
from analysis.plotting import facet_name
from analysis.tuned import tuned_section
from analysis.timing import hosts_of
from harness import store
from harness.config import ConfigError
from harness.files import check_writable, write_atomically

TABLES = ("summary_final", "summary_best_epoch", "table2_final", "vs_baseline_equal_epochs",
          "vs_baseline_equal_compute", "pairwise", "lam_max", "targets", "time_to_target", "performance_ratios",
          "wallclock", "trials", "missing", "vs_sgd_equal_epochs", "vs_sgd_equal_compute")
PROVENANCE = ("git_commit", "git_dirty", "sambench_version", "python_version", "torch_version", "ray_version",
              "hostname", "cpu_model", "gpu_model", "device_used")
MAX_FAILED = 30


def build_report(sweep_dir: Path, out_dir: Path | None = None, fmt: str = "png",
                 expected: Mapping[str, Any] | None = None, baseline: Baseline = agg.BASELINE) -> Path:
    """Write the report of ``sweep_dir`` into ``out_dir`` (default ``sweep_dir/report``) and
    return the path of report.html. ``expected`` is the grid the sweep should hold, as a
    manifest (``{"trials": [{"trial_id", "trial"}, ...]}``) or ``{trial_id: config}``;
    by default the sweep's own manifest. ``baseline`` is a method label or a filter on
    trial columns (``{"optimizer": "sam"}``) naming what every configuration is compared with."""
    if fmt not in FORMATS:
        raise ConfigError("format", fmt, ", ".join(FORMATS))
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir / "report"
    check_writable(out)  # before minutes of drawing that could not be kept
    trials, epochs, skipped = _load(sweep_dir)
    if len(trials) and not isinstance(baseline, str) and not agg.baseline_mask(trials, baseline).any():
        values = "; ".join(f"{k}: " + ", ".join(sorted(trials[k].dropna().astype(str).unique())) for k in baseline)
        raise ConfigError("baseline", agg.baseline_text(baseline), f"a filter matching some trials ({values})")
    grid = _expected(sweep_dir, expected)
    name = _sweep_name(sweep_dir, trials)
    doc = Document(f"sambench report: {name}")
    tables: dict[str, pd.DataFrame] = {}

    _spec_section(doc, sweep_dir)
    _provenance_section(doc, trials)
    _status_section(doc, trials, epochs, grid, tables)
    _skipped_section(doc, skipped)
    _sampler_constants_note(doc, trials)
    done = trials[trials["status"].astype(str) == "ok"] if len(trials) else trials
    if len(done):
        metric = agg.primary_metric(done)
        summary_section(doc, trials, epochs, metric, baseline, tables)
        tables_section(doc, trials, epochs, metric, baseline, tables)
    else:
        doc.heading("Summary")
        doc.paragraph("No trial has finished successfully yet: there is nothing to aggregate.")
    tuned_section(doc, sweep_dir, trials, epochs, out, fmt, tables)
    _figures_section(doc, trials, epochs, out, fmt)

    for stale in TABLES:
        (out / "tables" / f"{stale}.csv").unlink(missing_ok=True)
    for table_name, frame in tables.items():
        write_atomically(out / "tables" / f"{table_name}.csv",
                         lambda handle, frame=frame: frame.to_csv(handle, index=False), binary=False)
    markdown, page = doc.markdown(), doc.html()
    write_atomically(out / "report.md", lambda handle: handle.write(markdown), binary=False)
    write_atomically(out / "report.html", lambda handle: handle.write(page), binary=False)
    return out / "report.html"


def _load(sweep_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(trials, epochs, what was skipped): each truncated or corrupt Parquet file the loader
    skipped, as "path: reason", so the report can say whose rows are missing. The warnings
    are raised again for the caller (the CLI prints them)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", store.UnreadableFileWarning)
        trials, epochs = load(sweep_dir)
    for warning in caught:
        warnings.warn(warning.message, warning.category, stacklevel=3)
    skipped = [str(w.message).removeprefix(store.UNREADABLE) for w in caught
               if issubclass(w.category, store.UnreadableFileWarning)]
    return trials, epochs, list(dict.fromkeys(skipped))  # a read repeated after a race warns twice


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
        nodes = trials["node"].dropna().astype(str)
        hosts = nodes.map(hosts_of).nunique()
        rows.append({"item": "hosts", "value": f"{hosts} ({nodes.nunique()} Ray node session(s))"})
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
    failed = _failed(trials)
    if len(failed):
        kinds = failed["status"].astype(str).value_counts()
        nulls = (" A diverged trial's loss became NaN or infinite; such values are stored as nulls, never as NaN."
                 if "diverged" in kinds else "")
        doc.paragraph(f"Failed trials, left out of every aggregate, table and figure below (only status ok is "
                      f"aggregated or drawn): {len(failed)} ("
                      + ", ".join(f"{kinds[k]} {k}" for k in sorted(kinds.index)) + f").{nulls} In "
                      "time-to-target they count as seeds that never reached the target:")
        shown = failed.sort_values("trial_id").head(MAX_FAILED)
        more = [f"and {len(failed) - MAX_FAILED} more (tables/trials.csv)"] if len(failed) > MAX_FAILED else []
        doc.bullets([f"{r.trial_id} ({r.method}, seed {r.seed}): {r.status}"
                     + (f": {r.error}" if isinstance(r.error, str) and r.error else "")
                     for r in shown.itertuples()] + more)


def _failed(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials that diverged or errored."""
    return trials[trials["status"].astype(str).isin(["error", "diverged"])] if len(trials) else trials


def _skipped_section(doc: Document, skipped: list[str]) -> None:
    if not skipped:
        return
    doc.heading("Skipped files")
    doc.paragraph(f"{len(skipped)} Parquet file(s) of this sweep could not be read (truncated or corrupt) and "
                  "were skipped: the rows they hold are missing from every table and figure below.")
    doc.bullets(skipped)


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


# -- figures ----------------------------------------------------------------------------

def _figures_section(doc: Document, trials: pd.DataFrame, epochs: pd.DataFrame, out: Path, fmt: str) -> None:
    doc.heading("Figures")
    failed = _failed(trials)
    if len(failed):
        doc.paragraph(f"The figures draw the trials with status ok; the {len(failed)} failed trial(s) listed "
                      "under Trials by status are left out, except that time to target counts them as seeds "
                      "that never reached the target.")
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
