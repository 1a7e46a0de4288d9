"""Equal-budget tuning: a spec's ``tune:`` section run in three phases, each resumable.

1. grid: the spec's ``grid:`` trials, if it has one (an ordinary sweep);
2. tune: one search per method and workload, ``budget`` trials each (harness/search.py);
3. final: each search's winner, chosen on the selection metric at its last evaluation
   among the trials that ran their full length, reruns over ``final_seeds``.

Every trial of every phase is an ordinary trial in the store, tagged with its ``phase``
and ``search_id``. The manifest (sweep.json) holds the searches and, once chosen, the final
trials, so ``sambench resume`` knows where a sweep stopped: it finishes the grid,
continues the unfinished searches from Tune's saved state, and runs the finals. Ray is
imported only inside the functions that run something (through sweep.py and search.py).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import store
from harness.config import TrialConfig
from harness.tune_spec import Search, TuneSection

if TYPE_CHECKING:
    from harness.spec import Spec
    from harness.sweep import SweepOptions

GRID, FINAL = "grid", "final"


def is_tuning_sweep(sweep_dir: str | Path) -> bool:
    path = Path(sweep_dir) / store.MANIFEST
    return path.is_file() and "tune" in store.read_manifest(sweep_dir)


def run_tuning(spec: Spec, results_root: str | Path, options: SweepOptions) -> Path:
    """Run every phase of a spec with a ``tune:`` section into ``results_root/<name>/``."""
    from harness.files import check_writable
    from harness.sweep import SweepError, _join_cluster, _sweep_lock

    sweep_dir = Path(results_root).resolve() / spec.name
    if (sweep_dir / store.MANIFEST).exists():
        with _sweep_lock(sweep_dir):  # a second driver of this very sweep is told it is running
            manifest = store.read_manifest(sweep_dir)
            if manifest["spec_hash"] != spec.spec_hash:
                raise SweepError(f"{sweep_dir} already holds a sweep with a different spec; "
                                 "choose another name or results folder")
            if not _remaining(sweep_dir, manifest):
                print(f"{sweep_dir} already holds every trial of this spec; nothing to run")
                return sweep_dir
            raise SweepError(f"{sweep_dir} already exists: continue it with `sambench resume {sweep_dir}`")
    check_writable(sweep_dir)  # a folder the results cannot go into is refused before Ray starts
    _join_cluster(spec.resources, options)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with _sweep_lock(sweep_dir):
        if (sweep_dir / store.MANIFEST).exists():
            raise SweepError(f"{sweep_dir} was started by another sambench run")
        grid = [{"trial_id": store.config_id(spec.name, cfg), "trial": cfg.to_dict()} for cfg in spec.trials]
        grid += planned_trials(spec.name, spec.tune)
        manifest = {
            "sweep": spec.name, "spec_hash": spec.spec_hash, "storage": options.storage or str(sweep_dir / "tune"),
            "resources": spec.resources, "max_failures": spec.max_failures, "max_concurrent": spec.max_concurrent,
            "trials": grid, "tune": spec.tune.to_dict(), "trackers": list(spec.trackers),
        }
        store.write_spec(sweep_dir, spec.text, spec.spec_hash, manifest)
        _phases(sweep_dir, spec.text, manifest, options)
    return sweep_dir


def resume_tuning(sweep_dir: str | Path, options: SweepOptions, rerun_errored: bool = False) -> Path:
    """Continue a tuning sweep where it stopped (see the module docstring)."""
    from harness.sweep import _join_cluster, _sweep_lock

    sweep_dir = Path(sweep_dir).resolve()
    with _sweep_lock(sweep_dir):
        manifest = store.read_manifest(sweep_dir)
        left = _remaining(sweep_dir, manifest, rerun_errored)
        if not left:
            print(f"nothing to resume: every phase of {sweep_dir.name} is recorded")
            return sweep_dir
        print(f"resuming {sweep_dir.name}: " + "; ".join(left), flush=True)
        _join_cluster(manifest["resources"], options)
        _phases(sweep_dir, store.read_spec(sweep_dir)[0], manifest, options, rerun_errored)
    return sweep_dir


def planned_trials(name: str, section: TuneSection) -> list[dict[str, Any]]:
    """The tuning trials known before any result: a random search without a scheduler draws
    every suggestion up front (Tune's own generator and seed, harness/search.py), so all
    searches run as one batch of ordinary trials, which costs one Tuner instead of one per
    search. Adaptive searchers and schedulers run search by search instead (empty here)."""
    if section.searcher != "random" or section.scheduler != "none":
        return []
    from harness.search import suggestions, tuning_item

    return [tuning_item(name, search, index, sampled)
            for search in section.searches for index, sampled in enumerate(suggestions(section, search))]


def _remaining(sweep_dir: Path, manifest: dict[str, Any], rerun_errored: bool = False) -> list[str]:
    """What is left to run, one phrase per phase; empty when the sweep is complete."""
    section = TuneSection.from_dict(manifest["tune"])
    done = store.completed_trial_ids(sweep_dir, include_errors=not rerun_errored)
    counts = _search_counts(sweep_dir, rerun_errored)
    left = []
    grid = [t for t in manifest["trials"] if t.get("tags", {}).get("phase", GRID) == GRID]
    if missing := sum(t["trial_id"] not in done for t in grid):
        left.append(f"{missing} of {len(grid)} grid trials")
    for search in section.searches:
        if counts.get(search.search_id, 0) < search.budget:
            left.append(f"search {search.search_id} at {counts.get(search.search_id, 0)}/{search.budget} trials")
    finals = [t for t in manifest["trials"] if t.get("tags", {}).get("phase") == FINAL]
    if "finals_chosen" not in manifest:
        left.append("the final runs (winners not chosen yet)")
    elif missing := sum(t["trial_id"] not in done for t in finals):
        left.append(f"{missing} of {len(finals)} final runs")
    return left


def _search_counts(sweep_dir: Path, rerun_errored: bool = False) -> dict[str, int]:
    """Recorded tuning trials per search (errored ones only without ``rerun_errored``)."""
    trials = store.trials_table([sweep_dir]).to_pylist()
    counts: dict[str, int] = {}
    for row in trials:
        if row["phase"] == "tune" and not (rerun_errored and row["status"] == "error"):
            counts[row["search_id"]] = counts.get(row["search_id"], 0) + 1
    return counts


def _phases(sweep_dir: Path, spec_text: str, manifest: dict[str, Any], options: SweepOptions,
            rerun_errored: bool = False) -> None:
    from harness.search import run_search
    from harness.sweep import _run_tuner, _settle

    name, spec_hash, storage = manifest["sweep"], manifest["spec_hash"], manifest["storage"]
    section = TuneSection.from_dict(manifest["tune"])
    resources, max_failures = manifest["resources"], manifest["max_failures"]
    trackers = tuple(dict.fromkeys([*manifest.get("trackers", []), *options.trackers]))
    options = dataclasses.replace(options, trackers=trackers)

    def run_trials(phase: str) -> None:
        done = store.completed_trial_ids(sweep_dir, include_errors=not rerun_errored)
        todo = [t for t in manifest["trials"] if t.get("tags", {}).get("phase", GRID) == phase
                and t["trial_id"] not in done]
        if todo:
            where = f"{storage}/{phase}"
            todo = _settle(sweep_dir, name, spec_hash, todo, where)  # written if final, else resumable
            if not todo:
                return
            print(f"{phase} phase: {len(todo)} trials", flush=True)
            _run_tuner(name, sweep_dir, todo, resources, max_failures, spec_hash, where, options,
                       max_concurrent=manifest.get("max_concurrent"))

    run_trials(GRID)
    run_trials("tune")  # planned tuning trials (random searcher, no scheduler): one batch
    counts = _search_counts(sweep_dir, rerun_errored)
    for search in section.searches:
        have = counts.get(search.search_id, 0)
        if have >= search.budget:
            continue
        print(f"search {search.search_id}: {search.budget - have} of {search.budget} trials to run "
              f"({section.searcher} searcher, scheduler {section.scheduler})", flush=True)
        how = run_search(name, sweep_dir, section, search, resources, max_failures, spec_hash,
                         f"{storage}/search-{search.search_id}", options, manifest.get("max_concurrent"))
        if how not in ("new", "restored"):
            print(f"search {search.search_id}: {how}; started it again (its recorded trials are rerun "
                  "and replace their own rows)", flush=True)
    if "finals_chosen" not in manifest:
        counts = _search_counts(sweep_dir)
        short = [s.search_id for s in section.searches if counts.get(s.search_id, 0) < s.budget]
        if short:  # every trial of these searches errored or the run was cut short
            print(f"not choosing winners: searches {', '.join(short)} are incomplete; "
                  f"`sambench resume {sweep_dir}` continues them", flush=True)
            return
        finals = final_trials(name, section, winners(sweep_dir, section))
        manifest = {**manifest, "trials": manifest["trials"] + finals, "finals_chosen": True}
        store.write_spec(sweep_dir, spec_text, spec_hash, manifest)
    run_trials(FINAL)


def winners(sweep_dir: str | Path, section: TuneSection) -> dict[str, dict[str, Any]]:
    """Per search, the trial with the best selection metric at its last evaluation among
    the ``ok`` trials that ran their full length (ties: the earlier suggestion): its
    ``trial_id``, ``config``, ``value`` and ``search_index``. A search without such a
    trial has no entry."""
    trials, epochs = store.scan([Path(sweep_dir)], include_partial=False)
    last: dict[str, dict] = {}
    for row in epochs.to_pylist():  # sorted by iteration within a trial
        last[row["trial_id"]] = row
    sign = 1.0 if section.mode == "max" else -1.0
    best: dict[str, dict[str, Any]] = {}
    for row in sorted(trials.to_pylist(), key=lambda r: (r["search_id"] or "", r["search_index"] or 0)):
        if row["phase"] != "tune" or row["status"] != "ok" or row["trial_id"] not in last:
            continue
        value = last[row["trial_id"]].get(section.metric)
        full = row["epochs"] is None or (row["epochs_done"] or 0) >= row["epochs"]
        if value is None or not math.isfinite(value) or not full:
            continue
        current = best.get(row["search_id"])
        if current is None or sign * value > sign * current["value"]:
            best[row["search_id"]] = {"trial_id": row["trial_id"], "config": config_of(row),
                                      "value": value, "search_index": row["search_index"]}
    return best


def config_of(row: dict[str, Any]) -> dict[str, Any]:
    """A validated trial config back from a trials row (lam is stored as text)."""
    config = {name: row[name] for name in store.CONFIG_FIELDS}
    lam = config["lam"]
    if isinstance(lam, str):
        try:
            config["lam"] = float(lam)
        except ValueError:
            pass  # a schedule name: "1/t", "1-1/t"
    return TrialConfig.from_dict(config).to_dict()


def final_trials(name: str, section: TuneSection, chosen: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifest entries of the final runs: each winner at every final seed."""
    out = []
    for search in section.searches:
        if search.search_id not in chosen:
            continue
        for seed in section.final_seeds:
            cfg = TrialConfig.from_dict({**chosen[search.search_id]["config"], "seed": seed})
            tags = {"phase": FINAL, "search_id": search.search_id}
            out.append({"trial_id": store.trial_id(name, {"config": cfg.identity(), **tags}), "trial": cfg.to_dict(),
                        "tags": tags})
    return out


def describe(section: TuneSection) -> str:
    """The searches as text, for ``sambench validate``."""
    lines = [f"tuning: {len(section.searches)} searches, {section.searcher} searcher (seed {section.seed}), "
             f"scheduler {section.scheduler}, select on {section.metric} ({section.mode}), "
             f"winners rerun over seeds {list(section.final_seeds)}"]
    for search in section.searches:
        space = ", ".join(f"{d.key} ~ {d.kind}{list(d.values)}" for d in search.space)
        lines.append(f"  {search.search_id}: {search.budget} trials over {space or 'nothing'}")
    total = sum(s.budget for s in section.searches) + len(section.searches) * len(section.final_seeds)
    lines.append(f"{total} tuning and final trials")
    return "\n".join(lines)


__all__ = ["Search", "TuneSection", "config_of", "describe", "final_trials", "is_tuning_sweep",
           "resume_tuning", "run_tuning", "winners"]
