"""The report's findings: the automatic summary and the tables behind it.

Every sentence is written from the table it summarises (report_text holds the wording), and
says how configurations were chosen (validation or test data), which comparisons were
corrected for multiplicity and when a comparison was not made, and why.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from analysis import aggregate as agg
from analysis import compare, targets, timing
from analysis import report_text as say
from analysis import style
from analysis.document import Document
from analysis.plotting import facet_name
from analysis.stats import summarize

Baseline = str | Mapping[str, str]
HOLM = ("verdicts: Holm-adjusted Welch p < 0.05 over the workload's comparisons, so that trying many "
        "configurations does not manufacture a winner; the intervals shown are the unadjusted Welch 95% intervals")


def selection_sentence(selection: agg.Selection, metric: str) -> str:
    if selection.on == "validation data":
        return (f"Configurations (best per workload, each baseline, each headline, the reference of the time "
                f"target) are chosen on validation data ({say.metric_text(selection.metric)}), and "
                f"{say.metric_text(metric)} is reported at the chosen configuration.")
    if selection.uses_test_data:
        return ("Selection used test data: the sweep has no validation split (trial key val_fraction), so best "
                "configurations and baselines are chosen on the same test values they are reported with. Such "
                "a choice favours the method with more configurations; read the verdict counts rather than "
                "the best configuration alone.")
    return (f"Configurations are chosen on {selection.on} ({say.metric_text(metric)}) over the same seeds they "
            "are reported with.")


def _values(done: pd.DataFrame, epochs: pd.DataFrame, metric: str, selection: agg.Selection,
            at: str = "final") -> tuple[pd.DataFrame, str | None]:
    """Per-trial values of ``metric`` with the selection metric's column beside them."""
    values = agg.trial_values(done, None if f"{'final' if at == 'final' else 'best'}_{metric}" in done else epochs,
                              metric, at)
    if selection.metric == metric:
        return values, None
    select = agg.value_column(selection.metric, at)
    ranks = agg.selection_values(done, epochs, selection, at)[["trial_id", select]]
    return values.merge(ranks, on="trial_id", how="left"), select


def summary_section(doc: Document, trials: pd.DataFrame, epochs: pd.DataFrame, metric: str, baseline: Baseline,
                    tables: dict[str, pd.DataFrame]) -> None:
    doc.heading("Summary")
    done = trials[trials["status"].astype(str) == "ok"]
    selection = agg.selection_for(metric, done, epochs)
    doc.paragraph(selection_sentence(selection, metric))
    log = agg.log_scale(metric)
    value = agg.value_column(metric, "final")
    values, select = _values(done, epochs, metric, selection)
    config = agg.config_columns(done)
    summary = summarize(values, value, config, log=log)
    rank = select or value
    ranked = summary if select is None else summary.merge(
        summarize(values, select, config)[[*config, f"{select}_mean", f"{select}_n"]], on=config)
    best = agg.best_configurations(ranked, rank)
    single = int(summary[f"{value}_n"].between(1, agg.MIN_SEEDS - 1).sum())  # n = 0: the metric is not measured
    doc.paragraph(f"Best configuration per workload (dataset · model · sampler), by the seed "
                  f"{'geometric ' if log and select is None else ''}mean of the final "
                  f"{say.metric_text(selection.metric)}, among configurations with at least "
                  f"{agg.MIN_SEEDS} seeds" + (f" ({single} configuration(s) with fewer seeds are not ranked)"
                                              if single else "") + ":")
    doc.bullets([f"{say.workload(row)}: {say.config_text(row, summary)}, {say.metric_text(metric)} (final) "
                 f"{say.stat_text(row, value, metric)}" for row in best.to_dict("records")])
    base = agg.baseline_mask(done, baseline)
    label = agg.baseline_text(baseline)
    if not base.any() or base.all():
        doc.paragraph(f"Comparisons against {label}: not made, "
                      + ("no finished trial matches that baseline." if not base.any()
                         else "every finished trial matches it."))
        return
    epochs_cmp = compare.compare_with_baseline(values, value, baseline, select=select, log=log)
    tables["vs_baseline_equal_epochs"] = epochs_cmp
    doc.paragraph(f"Against the baseline {label} (its best configuration per workload, chosen the same way; "
                  f"difference of seed {'log10 means, shown as a ratio of geometric means' if log else 'means'}; "
                  f"{HOLM}):")
    lines = comparison_lines(epochs_cmp, value, metric, "at equal epochs (final values)", label, select, log)
    lines += _equal_compute(done, epochs, metric, baseline, label, tables)
    doc.bullets(lines)
    pairs = compare.pairwise(values, value, select=select, log=log)
    if len(pairs):
        tables["pairwise"] = pairs
        doc.paragraph("Between methods, each at its best configuration (Welch, Holm over each workload's pairs; "
                      "tables/pairwise.csv): " + _pairs_text(pairs, value, metric, log))
    _sharpness_summary(doc, done, metric, tables)
    _cost_summary(doc, trials, epochs, baseline)


def _cost_summary(doc: Document, trials: pd.DataFrame, epochs: pd.DataFrame, baseline: Baseline) -> None:
    done = trials[trials["status"].astype(str) == "ok"]
    if not {"time_train", "epochs_done"} <= set(done):
        return
    table = timing.wallclock_table(trials, epochs, baseline)
    table = table[~table["is_baseline"]]
    if table.empty:
        return
    keys = [c for c in (*agg.WORKLOAD, targets.DEVICE) if c in table]
    lines = []
    for key, group in agg.grouped(table, keys):
        parts = [f"{row['method']} {row['ratio_to_baseline']:.2f}×" + (
            f" [{row['ratio_ci95_low']:.2f}, {row['ratio_ci95_high']:.2f}]" if np.isfinite(row["ratio_ci95_low"])
            else "") for row in group.sort_values("method", key=lambda m: m.map(_method_key)).to_dict("records")]
        lines.append(f"{facet_name(key if isinstance(key, tuple) else (key,), keys)}: " + "; ".join(parts))
    doc.paragraph(f"Training time per epoch relative to {agg.baseline_text(baseline)} (median steady-state epoch "
                  "per trial; ratio of means with Fieller's 95% interval; tables/wallclock.csv):")
    doc.bullets(lines)


def comparison_lines(cmp: pd.DataFrame, value: str, metric: str, condition: str, label: str,
                     select: str | None, log: bool, budgets: pd.Series | None = None) -> list[str]:
    """One line per workload: the headline configuration (best by the selection mean among
    those with >= 2 seeds) against the baseline, and the verdict counts over all of them."""
    name = f"{value}_log10" if log else value
    rank = f"{select or value}_selection_mean"
    up = agg.higher_is_better(agg.metric_of(select or value))
    lines = []
    keys = [c for c in agg.WORKLOAD if c in cmp]
    for key, group in agg.grouped(cmp, keys):
        budget = ""
        if budgets is not None:
            spent = budgets.get(key if len(keys) > 1 else key[0])
            budget = f" (budget {spent:,.0f})" if spent is not None and np.isfinite(spent) else ""
        head = f"{say.workload(group.iloc[0])}, {condition}{budget}: "
        ranked = group[group[f"{value}_n"] >= agg.MIN_SEEDS].sort_values(rank, ascending=not up, kind="stable")
        if ranked.empty:
            lines.append(head + f"no configuration has {agg.MIN_SEEDS} seeds; {say.counts_text(group)}")
            continue
        top = ranked.iloc[0]
        low, high = top[f"{name}_diff_ci95_low"], top[f"{name}_diff_ci95_high"]
        center = (lambda r, p: 10 ** r[f"{p}{name}_mean"]) if log else (lambda r, p: r[f"{p}{name}_mean"])
        lines.append(
            head + f"best {say.config_text(top, cmp)} {say.number(metric, center(top, ''))} vs "
            f"{say.config_text(top, cmp, 'baseline_')} {say.number(metric, center(top, 'baseline_'))}, "
            f"{'ratio' if log else 'difference'} {say.diff(metric, top[f'{name}_diff'], log)} "
            f"[{say.diff(metric, low, log)}, {say.diff(metric, high, log)}] ({top['verdict']}); "
            f"{say.counts_text(group)}")
    return lines


def _equal_compute(done: pd.DataFrame, epochs: pd.DataFrame, metric: str, baseline: Baseline, label: str,
                   tables: dict[str, pd.DataFrame]) -> list[str]:
    """Budget-matched runs when the sweep has them; else a reading at the baseline's total
    budget if every schedule is constant; else no comparison, and why."""
    if metric not in epochs or "grad_evals" not in epochs:
        return []
    cost = compare.cost_column(done, epochs)
    unit = "per-sample work (grad_samples + refresh_samples)" if cost == "samples" else "gradient evaluations"
    matched = compare.budget_matched(done, epochs, baseline, cost)
    value = agg.value_column(metric, "final")
    log = agg.log_scale(metric)
    selection = agg.selection_for(metric, done, epochs)
    if len(matched):
        runs = done[done["trial_id"].astype(str).isin(set(matched["trial_id"]))]
        values, select = _values(runs, epochs, metric, selection)
        values = values.merge(matched, on="trial_id")
        cmp = compare.compare_with_baseline(values, value, baseline, by=[*agg.WORKLOAD, "budget"], select=select,
                                            log=log)
        tables["vs_baseline_equal_compute"] = cmp
        budgets = cmp.groupby([c for c in agg.WORKLOAD if c in cmp], observed=True)["budget"].first()
        return comparison_lines(cmp, value, metric, f"budget-matched runs at equal {unit}, final values", label,
                                select, log, budgets)
    if not compare.schedules_constant(done):
        schedules = ", ".join(sorted(set(done["lr_schedule"].dropna().astype(str)) - {"constant"}))
        return [f"At equal {unit}: not compared. The sweep has no budget-matched runs, and its {schedules} "
                "learning-rate schedule makes a reading at the baseline's total budget unfair: the SAM family "
                "would be read mid-schedule, before its learning rate has annealed. For a fair comparison run "
                f"the baseline with as many {unit} as the others (e.g. SGD at twice the epochs, as Foret et al. "
                "did) and compare final values."]
    values = compare.at_equal_cost(done, epochs, metric, cost)
    compute_value = f"{metric}_at_equal_{cost}"
    if selection.metric != metric:
        values = values.merge(agg.selection_values(done, epochs, selection)[
            ["trial_id", agg.value_column(selection.metric, "final")]], on="trial_id")
    select = agg.value_column(selection.metric, "final") if selection.metric != metric else None
    cmp = compare.compare_with_baseline(values, compute_value, baseline, select=select, log=log)
    tables["vs_baseline_equal_compute"] = cmp
    budgets = values.dropna(subset=["budget"]).groupby(
        [c for c in agg.WORKLOAD if c in values], observed=True)["budget"].first()
    return comparison_lines(cmp, compute_value, metric, f"at equal {unit} (constant learning rate, every run "
                            "read at the smallest total budget)", label, select, log, budgets)


def _pairs_text(pairs: pd.DataFrame, value: str, metric: str, log: bool) -> str:
    name = f"{value}_log10" if log else value
    found = pairs[pairs["verdict"].isin(["better", "worse"])]
    if found.empty:
        return f"none of the {len(pairs)} pairs differs clearly."
    shown = []
    for row in found.to_dict("records"):
        gap = row[f"{name}_diff"]
        winner, loser = (row["method"], row["other_method"]) if row["verdict"] == "better" else (
            row["other_method"], row["method"])
        shown.append(f"{say.workload(row)}: {winner} ahead of {loser} by "
                     f"{say.diff(metric, -gap if row['verdict'] == 'worse' else gap, log).lstrip('+')}")
    return f"{len(found)} of {len(pairs)} pairs differ clearly: " + "; ".join(shown) + "."


def lam_max_table(done: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """Final λ_max per workload and method, each method at its best configuration: mean and
    95% interval over seeds."""
    if "final_lam_max" not in done or not done["final_lam_max"].notna().any():
        return None
    measured = done[done["final_lam_max"].notna()]
    chosen = agg.best_config_trials(measured, by=[*agg.WORKLOAD, "method"], metric=metric)
    values = agg.trial_values(measured, None, "lam_max", "final")
    values = values[values["trial_id"].isin(set(chosen["trial_id"]))]
    return summarize(values, "lam_max_final", [c for c in (*agg.WORKLOAD, "method") if c in values])


def _sharpness_summary(doc: Document, done: pd.DataFrame, metric: str, tables: dict[str, pd.DataFrame]) -> None:
    table = lam_max_table(done, metric)
    if table is None:
        return
    tables["lam_max"] = table
    keys = [c for c in agg.WORKLOAD if c in table]
    lines = []
    for key, group in agg.grouped(table, keys):
        parts = [f"{row['method']} {row['lam_max_final_mean']:.3g}" + (
            f" [{row['lam_max_final_ci95_low']:.3g}, {row['lam_max_final_ci95_high']:.3g}]"
            if np.isfinite(row["lam_max_final_ci95_low"]) else "")
            for row in group.sort_values("method", key=lambda m: m.map(_method_key)).to_dict("records")]
        lines.append(f"{facet_name(key if isinstance(key, tuple) else (key,), keys)}: " + "; ".join(parts))
    doc.paragraph("Sharpness: final λ_max (top Hessian eigenvalue), each method at its best configuration, "
                  "mean [95% interval] over seeds (tables/lam_max.csv):")
    doc.bullets(lines)


def _method_key(method: object) -> tuple:
    return style.method_sort_key(str(method))


# -- tables -------------------------------------------------------------------------------

def tables_section(doc: Document, trials: pd.DataFrame, epochs: pd.DataFrame, metric: str, baseline: Baseline,
                   tables: dict[str, pd.DataFrame]) -> None:
    doc.heading("Tables")
    done = trials[trials["status"].astype(str) == "ok"]
    selection = agg.selection_for(metric, done, epochs)
    log = agg.log_scale(metric)
    doc.paragraph("Statistics over seeds: mean, sample sd, n, and a Student-t 95% interval ("
                  + ("for relative suboptimality: the geometric mean, the sd of log10 and the t interval of "
                     "log10 mapped back; " if log else "")
                  + "no interval below two seeds or when every seed gave the same value). Column names say which "
                  "value each uses: _final (the last evaluation) or _best_epoch (the evaluation with the best "
                  + (f"{say.metric_text(selection.metric)}" if selection.metric != metric else "value")
                  + "). Values in stored units (accuracy as a fraction).")
    tables["summary_final"] = agg.seed_summary(done, None, metric, "final")
    if selection.metric != metric and selection.metric in epochs:
        best = agg.trial_values(done, epochs, metric, "best", rank_by=selection.metric)
        tables["summary_best_epoch"] = summarize(best, agg.value_column(metric, "best"), agg.config_columns(done),
                                                 log=log)
    else:
        has_best = f"best_{metric}" in done
        tables["summary_best_epoch"] = agg.seed_summary(done, None if has_best else epochs, metric, "best")
    for name, title in (("summary_final", "Final values"), ("summary_best_epoch", "Best-epoch values")):
        doc.heading(title, 3)
        doc.table(tables[name], f"{name}.csv")
    cells = table2(done, metric)
    if cells is not None:
        tables["table2_final"] = cells
        doc.heading("ρ × λ (the layout of the paper's Table 2)", 3)
        doc.table(cells, "table2_final.csv")
    label = agg.baseline_text(baseline)
    for name, title in (("vs_baseline_equal_epochs", f"Against {label} at equal epochs"),
                        ("vs_baseline_equal_compute", f"Against {label} at equal compute"),
                        ("pairwise", "Between methods"), ("lam_max", "Final λ_max per method")):
        if name in tables:
            doc.heading(title, 3)
            doc.table(tables[name], f"{name}.csv")
    _time_tables(doc, done, trials, epochs, metric, baseline, tables)
    _wallclock(doc, trials, epochs, baseline, tables)


def table2(done: pd.DataFrame, metric: str) -> pd.DataFrame | None:
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
            row |= {f"lam={lam}": say.pm(by_lam.loc[lam], value) if lam in by_lam.index else "" for lam in lams}
            rows.append(row)
        for base in group[group["lam_key"].isna()].to_dict("records"):
            rows.append({"workload": workload, "rho": agg.BASELINE, f"lam={lams[0]}": say.pm(base, value)})
    return pd.DataFrame(rows).rename(columns={"rho": f"rho \\ {label}"}).fillna("")


def _time_tables(doc: Document, done: pd.DataFrame, trials: pd.DataFrame, epochs: pd.DataFrame, metric: str,
                 baseline: Baseline, tables: dict[str, pd.DataFrame]) -> None:
    if metric not in epochs or not epochs[metric].notna().any() or not agg.baseline_mask(done, baseline).any():
        return
    selection = agg.selection_for(metric, done, epochs)
    target = targets.reference_target(trials, epochs, baseline, metric, selection=selection)
    if target.empty:
        return
    ttt = targets.time_to_target(trials, epochs, target, metric)
    criteria = ["time_to_target", "grad_evals_to_target"]
    if compare.cost_column(done, epochs) == "samples" and "samples_to_target" in ttt:
        criteria.append("samples_to_target")
    tables["targets"] = target
    tables["time_to_target"] = targets.time_to_target_table(ttt, criteria=criteria)
    ratios = [targets.performance_ratios(ttt, c).rename(columns={"ratio": f"{c.removesuffix('_to_target')}_ratio"})
              for c in criteria]
    keys = [c for c in (*agg.WORKLOAD, targets.DEVICE) if c in ratios[0]]
    merged = ratios[0]
    for extra in ratios[1:]:
        merged = merged.merge(extra.drop(columns=["seeds_reached", "seeds"]), on=[*keys, "method"],
                              suffixes=("", "_"))
    tables["performance_ratios"] = merged
    doc.heading("Time to target", 3)
    doc.paragraph(
        f"Target per workload (tables/targets.csv): the best-epoch {say.metric_text(metric)} of "
        f"{agg.baseline_text(baseline)}'s best configuration, chosen on {selection.on}, as the median over its "
        "replicates (seeds and problem seeds) of each one's best value: AlgoPerf's rule, except that for an even "
        "count the easier of the two middle values is taken where AlgoPerf averages them, so the reference still "
        "reaches its own target with half its seeds. Per method and criterion (chosen_by), the configuration "
        "with the lowest median over its seeds; seeds that diverged, errored or missed the target count as never "
        "reaching it, and seeds_reached/seeds counts all of them. Every number in a row is that configuration's. "
        "Times are compared only within one device.")
    doc.table(tables["time_to_target"], "time_to_target.csv")
    doc.heading("Performance ratios (inputs of the performance profile)", 3)
    doc.table(tables["performance_ratios"], "performance_ratios.csv")


def _wallclock(doc: Document, trials: pd.DataFrame, epochs: pd.DataFrame, baseline: Baseline,
               tables: dict[str, pd.DataFrame]) -> None:
    done = trials[trials["status"].astype(str) == "ok"]
    if not {"time_train", "epochs_done"} <= set(done) or not agg.baseline_mask(done, baseline).any():
        return
    table = timing.wallclock_table(trials, epochs, baseline)
    if table.empty:
        return
    tables["wallclock"] = table
    doc.heading(f"Training time per epoch relative to {agg.baseline_text(baseline)}", 3)
    notes = ["Per trial, the median training-only time of its epochs after the first (warm-up); per method, the "
             "ratio of mean epoch times to the baseline's on the same workload and device, with Fieller's 95% "
             "interval (it carries the uncertainty of both means)."]
    restarted = int(table["restarted"].sum())
    if restarted:
        notes.append(f"{restarted} trial(s) were restarted: their epochs ran in more than one session.")
    if (table["sessions"] > 1).any():
        notes.append(f"Trials compared in one row ran in up to {int(table['sessions'].max())} Ray sessions; "
                     "machine load (other trials running at once) may differ between sessions, so read these "
                     "ratios as indicative.")
    mixed = table[table["concurrency_max"] > table["concurrency_min"]]
    if len(mixed):
        notes.append(f"In {len(mixed)} row(s) the compared trials ran beside different numbers of other trials "
                     f"(from {mixed['concurrency_min'].min():g} to {mixed['concurrency_max'].max():g} at once, "
                     "concurrency_min/max): their epoch times include different machine load, so read those "
                     "ratios as indicative (max_concurrent: 1 in the spec gives clean timings).")
    doc.paragraph(" ".join(notes))
    doc.table(table, "wallclock.csv")
