"""The report's tuned comparison: what equal-budget tuning found (harness/tuning.py).

Per search (one method on one workload): the best-so-far selection metric against the
number of tuning trials (a figure), the chosen hyperparameters, the winner's test metric
over ``final_seeds`` with a t interval, and how sensitive the method is: the spread of
its top-k trials. Everything is read from the Parquet and the sweep's manifest.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from analysis.document import Document
from analysis.figures import close, save
from analysis.style import LABELS, apply_theme, method_color
from harness import store

FIGURE = "tuned_best_so_far"


def scale(metric: str) -> float:
    """Accuracies are shown in percent, everything else as stored."""
    return 100.0 if metric.endswith("_acc") else 1.0


def label(metric: str) -> str:
    if metric in LABELS:
        return LABELS[metric]
    names = {"val_acc": "Validation accuracy (%)", "val_loss": "Validation loss"}
    return names.get(metric, metric.replace("_", " "))


def tuning_settings(sweep_dir: Path) -> dict[str, Any] | None:
    """The ``tune`` entry of the sweep's manifest, or None for a sweep without tuning."""
    if not (Path(sweep_dir) / store.MANIFEST).is_file():
        return None
    return store.read_manifest(sweep_dir).get("tune")


def last_values(epochs: pd.DataFrame, metric: str) -> pd.Series:
    """Each trial's ``metric`` at its last evaluation, by trial_id."""
    rows = epochs.sort_values(["trial_id", "iteration"]).groupby("trial_id", observed=True).tail(1)
    return rows.set_index(rows["trial_id"].astype(str))[metric]


def tuning_table(trials: pd.DataFrame, epochs: pd.DataFrame, settings: dict[str, Any]) -> pd.DataFrame:
    """One row per tuning trial: search, method, dataset, index, status, its selection
    value, the best so far in suggestion order, whether it ran its full length, and the
    searched hyperparameters."""
    metric = settings["metric"]
    tune_rows = trials[trials["phase"].astype(str) == "tune"].copy()
    if not len(tune_rows):
        return tune_rows
    tune_rows["trial_id"] = tune_rows["trial_id"].astype(str)
    tune_rows["value"] = tune_rows["trial_id"].map(last_values(epochs, metric))
    tune_rows.loc[tune_rows["status"].astype(str) != "ok", "value"] = np.nan
    tune_rows["full_length"] = tune_rows["epochs"].isna() | (tune_rows["epochs_done"] >= tune_rows["epochs"])
    tune_rows = tune_rows.sort_values(["search_id", "search_index"])
    sign = 1.0 if settings["mode"] == "max" else -1.0
    eligible = tune_rows["value"].where(tune_rows["full_length"])
    tune_rows["best_so_far"] = (sign * eligible).groupby(tune_rows["search_id"], observed=True).cummax() * sign
    return tune_rows


def fig_best_so_far(table: pd.DataFrame, settings: dict[str, Any]) -> Figure | None:
    """Best selection metric so far against the number of tuning trials, one line per
    method, one panel per workload (dots: each trial's own value): how quickly each
    method's search found its best configuration under the same budget. The axis zooms
    on where the searches end up, so a poor early trial may lie below it."""
    if not len(table):
        return None
    apply_theme()
    metric = settings["metric"]
    workloads = sorted(table["dataset"].astype(str).unique())
    fig, axes = plt.subplots(1, len(workloads), figsize=(4.6 * len(workloads), 3.6), squeeze=False)
    factor = scale(metric)
    for ax, workload in zip(axes[0], workloads):
        part = table[table["dataset"].astype(str) == workload]
        for search_id, rows in part.groupby("search_id", observed=True):
            method = str(rows["method"].iloc[0])
            x = (rows["search_index"].astype(int) + 1).tolist()
            best = (rows["best_so_far"] * factor).tolist()
            # held half a trial past the last one, so the final level is visible
            ax.step(x + [x[-1] + 0.5], best + best[-1:], where="post", label=method, color=method_color(method))
            ax.scatter(x, rows["value"] * factor, s=14, alpha=0.5, color=method_color(method))
        ax.set_title(workload)
        ax.set_xlabel("tuning trials (in suggestion order)")
        ax.set_ylabel(f"{label(metric)}\nbest so far (line), each trial (dots)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        finite = part["best_so_far"].dropna() * factor
        if len(finite):  # zoom on where the searches end up; a poor first trial enters from the edge
            if settings["mode"] == "max":
                low, high = np.nanpercentile(finite, 10), finite.max()
            else:
                low, high = finite.min(), np.nanpercentile(finite, 90)
            pad = 0.1 * (high - low) or 0.01 * abs(high) or 0.01
            ax.set_ylim(low - pad, high + pad)
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def _interval(values: pd.Series) -> tuple[float, float, int]:
    x = values.dropna().to_numpy(dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, 0
    if len(x) < 2:
        return float(x[0]), math.nan, 1
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(half), len(x)


def tuned_section(doc: Document, sweep_dir: Path, trials: pd.DataFrame, epochs: pd.DataFrame,
                  out: Path, fmt: str, tables: dict[str, pd.DataFrame]) -> None:
    """Append the tuned comparison to ``doc`` (nothing for a sweep without tuning)."""
    settings = tuning_settings(sweep_dir)
    if settings is None or "phase" not in trials:
        return
    doc.heading("Tuned comparison (equal budget per method)")
    metric, budgets = settings["metric"], {s["search_id"]: s["budget"] for s in settings["searches"]}
    space = {s["search_id"]: [d["key"] for d in s["space"]] for s in settings["searches"]}
    same = len(set(budgets.values())) == 1
    budget_text = (f"the same budget of {next(iter(budgets.values()))} trials" if same
                   else "budgets " + ", ".join(f"{k}: {v}" for k, v in budgets.items()))
    val = trials["val_fraction"].dropna()
    doc.paragraph(
        f"Every method got {budget_text} on every workload, each over its own search space, with the "
        f"{settings['searcher']} searcher (seed {settings['seed']}). The winner of each search is the trial "
        f"with the {'highest' if settings['mode'] == 'max' else 'lowest'} {metric} at its last evaluation"
        + (f", measured on a validation split of {val.max():g} of the training data: the test set played no "
           "part in selection" if metric.startswith("val_") and len(val) else "")
        + f". Each winner then reran over seeds {settings['final_seeds']} at full length; the test "
        "metric below comes from those reruns only.")
    table = tuning_table(trials, epochs, settings)
    if not len(table):
        doc.paragraph("No tuning trial has finished yet.")
        return
    if settings["scheduler"] == "asha":
        stopped = table[~table["full_length"] & (table["status"].astype(str) == "ok")]
        doc.paragraph(f"ASHA stopped {len(stopped)} of {len(table)} tuning trials early: those used fewer "
                      f"epochs (mean {stopped['epochs_done'].mean():.1f} of {int(table['epochs'].max())}) and "
                      "could not win; best-so-far curves count them as trials all the same."
                      if len(stopped) else "ASHA was on but stopped no trial early.")

    fig = fig_best_so_far(table, settings)
    if fig is not None:
        path = save(fig, out / "figures" / f"{FIGURE}.{fmt}", fmt)
        image, image_fmt = path.read_bytes(), fmt
        if fmt == "pdf":  # a browser page cannot inline a PDF image: embed a PNG rendering
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
            image, image_fmt = buffer.getvalue(), "png"
        close(fig)
        caption = " ".join((fig_best_so_far.__doc__ or "").split())
        doc.figure("Best so far against tuning trials", f"figures/{FIGURE}.{fmt}", caption, image, image_fmt)

    finals = trials[trials["phase"].astype(str) == "final"]
    test_metric = "test_acc" if trials["final_test_acc"].notna().any() else "test_loss"
    final_values = last_values(epochs, test_metric) if len(finals) else pd.Series(dtype=float)
    rows, sentences = [], []
    k = int(settings["top_k"])
    sign = 1.0 if settings["mode"] == "max" else -1.0
    factor = scale(metric)
    for search_id, part in table.groupby("search_id", observed=True, sort=False):
        ranked = part.dropna(subset=["value"]).loc[lambda f: f["full_length"]]
        ranked = ranked.iloc[np.argsort(-sign * ranked["value"].to_numpy(), kind="stable")]
        method, dataset = str(part["method"].iloc[0]), str(part["dataset"].iloc[0])
        keys = space.get(str(search_id), [])
        row: dict[str, Any] = {"search": str(search_id), "method": method, "dataset": dataset,
                               "trials": f"{int(part['status'].astype(str).eq('ok').sum())} ok / {budgets.get(str(search_id))}"}
        if not len(ranked):
            rows.append(row)
            continue
        best = ranked.iloc[0]
        row["chosen"] = ", ".join(f"{key}={_fmt(best[key])}" for key in keys)
        row[f"tuning {metric}"] = round(best["value"] * factor, 2 if factor != 1 else 4)
        mine = finals[finals["search_id"].astype(str) == str(search_id)]
        mean, half, n = _interval(final_values.reindex(mine["trial_id"].astype(str)))
        test_factor = scale(test_metric)
        row[f"final {test_metric} (mean)"] = round(mean * test_factor, 2) if n else None
        row["95% interval ±"] = round(half * test_factor, 2) if n > 1 else None
        row["seeds"] = n
        rows.append(row)
        top = ranked.head(k)
        if len(top) < 2:
            sentences.append(f"{method} on {dataset}: one full-length configuration only, no spread to report")
            continue
        spread = (top["value"].max() - top["value"].min()) * factor
        ranges = "; ".join(f"{key} {_fmt(top[key].min())}–{_fmt(top[key].max())}" for key in keys)
        unit = " pp" if factor == 100 else ""
        sentences.append(f"{method} on {dataset}: its top {len(top)} configurations lie within {spread:.2f}{unit} "
                         f"of {metric} ({ranges})" + (f"; all {len(ranked)} full-length trials span "
                         f"{(ranked['value'].max() - ranked['value'].min()) * factor:.2f}{unit}" if len(ranked) > k else ""))
    summary = pd.DataFrame(rows)
    tables["tuned_winners"] = summary
    tables["tuning_trials"] = table[["trial_id", "search_id", "search_index", "method", "dataset", "status",
                                     "epochs_done", "value", "best_so_far", *sorted({k for v in space.values() for k in v})]]
    doc.heading("Winners: chosen hyperparameters and test metric over the final seeds", 3)
    doc.table(summary, "tuned_winners.csv")
    doc.heading("Sensitivity", 3)
    doc.paragraph("A small spread among the top configurations means the method is forgiving of its "
                  "hyperparameters within the searched ranges; a large one, that the budget matters for it.")
    doc.bullets(sentences)


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:.3g}"
    return str(value)
