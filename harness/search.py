"""One equal-budget search on Ray Tune: a searcher (random or Optuna's TPE), an optional
ASHA scheduler, ``budget`` trials. It reuses the sweep's trainable (harness.tune_worker),
store callback (harness.tune_callbacks) and cluster handling (harness.sweep); the orchestration of the
phases (grid, searches, finals) lives in harness/tuning.py, without Ray.

A tuning trial's identity is (sweep, search, suggestion index): the index is Tune's trial
counter, which Tune saves and restores with the searcher, so a resumed search continues
its sequence and a trial that runs again replaces its own rows instead of adding a copy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

# harness.tune_worker first: it sets Ray's environment (auth, usage stats) before ray is imported.
from harness import store, tune_worker
from harness.sweep import SweepOptions, _quiet_tune
from harness.tune_callbacks import StoreCallback, tracker_callbacks
from harness.tune_spec import Dimension, Search, TuneSection

from ray import tune  # noqa: E402,I001
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter  # noqa: E402

# A diverged trial reports no metric; the searcher treats it as pruned instead of failing it.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")


def domain(dim: Dimension) -> Any:
    """The Ray Tune sampling domain of a dimension."""
    if dim.kind == "loguniform":
        return tune.loguniform(*dim.values)
    if dim.kind == "uniform":
        return tune.uniform(*dim.values)
    return tune.choice(list(dim.values))


def search_seed(section: TuneSection, search: Search) -> int:
    """The searcher seed of one search: from the spec's seed and the search's position."""
    index = [s.search_id for s in section.searches].index(search.search_id)
    return int(np.random.SeedSequence([section.seed, index]).generate_state(1)[0])


def searcher(section: TuneSection, search: Search, max_concurrent: int | None) -> Any:
    """Tune's random search (BasicVariantGenerator) or Optuna's TPE (OptunaSearch), seeded."""
    seed = search_seed(section, search)
    if section.searcher == "random":
        return BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent or 0)
    from optuna.samplers import TPESampler
    from ray.tune.search.optuna import OptunaSearch

    tpe = OptunaSearch(metric=section.metric, mode=section.mode, sampler=TPESampler(seed=seed))
    return ConcurrencyLimiter(tpe, max_concurrent=max_concurrent) if max_concurrent else tpe


def scheduler(section: TuneSection, search: Search) -> Any:
    """ASHA on the selection metric, one rung per doubling of epochs; else first in, first out."""
    if section.scheduler == "none":
        return None
    epochs = int(search.base.get("epochs") or 1)
    return tune.schedulers.ASHAScheduler(time_attr="epoch", metric=section.metric, mode=section.mode,
                                         max_t=epochs, grace_period=1, reduction_factor=2)


def suggestions(section: TuneSection, search: Search, n: int | None = None) -> list[dict[str, Any]]:
    """The first ``n`` (default: budget) configurations the random searcher suggests, without
    running anything: the same generator, seed and space as ``run_search`` uses."""
    if section.searcher != "random":
        raise ValueError("only the random searcher's suggestions are known before results come in")
    generator = searcher(section, search, None)
    space = {"space": {d.key: domain(d) for d in search.space}}
    tune.register_trainable("sambench_suggest", _no_training)  # a trial needs a known trainable
    generator.add_configurations({"suggest": {"run": "sambench_suggest", "config": space,
                                              "num_samples": n or search.budget}})
    out = []
    while (trial := generator.next_trial()) is not None:
        out.append(dict(trial.config["space"]))
    return out


def _no_training(config: dict[str, Any]) -> None:
    """Stands in for the trainable when only the suggestions are wanted."""


class SearchCallback(StoreCallback):
    """The store callback for a search: a trial's id, config and tags come from its search
    and suggestion index; an ASHA-stopped trial is written from the records it reported."""

    def __init__(self, sweep_dir: Path, spec_hash: str, name: str, quiet: bool, search: Search,
                 index_base: int) -> None:
        super().__init__(sweep_dir, spec_hash, name, quiet)
        self.search, self.index_base = search, index_base

    def item(self, trial: Any) -> dict[str, Any]:
        index = int(trial.experiment_tag.split("_", 1)[0]) - self.index_base
        return tuning_item(self.sweep, self.search, index, trial.config.get("space", {}))

    def on_trial_complete(self, iteration, trials, trial, **info):
        loaded = tune_worker.read_checkpoint(trial.checkpoint)
        if loaded is not None and loaded[1].get("done"):
            return super().on_trial_complete(iteration, trials, trial, **info)
        # Stopped by the scheduler: its last checkpoint (if any) plus every record reported since.
        item = self.item(trial)
        records, summary = loaded or ([], {})
        records = records + self.pending.get(item["trial_id"], [])
        self.write(item, records, summary, "ok", None, trial.num_failures + 1)


def tuning_item(name: str, search: Search, index: int, sampled: dict[str, Any]) -> dict[str, Any]:
    """The ``{"trial_id", "trial", "tags"}`` of suggestion ``index`` of ``search``."""
    return {"trial_id": store.trial_id(name, {"phase": "tune", "search_id": search.search_id, "index": index}),
            "trial": search.config(sampled),
            "tags": {"phase": "tune", "search_id": search.search_id, "search_index": index}}


def _can_restore(storage: str) -> bool:
    return tune.Tuner.can_restore(storage.rstrip("/") + "/run")


def run_search(name: str, sweep_dir: Path, section: TuneSection, search: Search, resources: dict[str, Any],
               max_failures: int, spec_hash: str, storage: str, options: SweepOptions,
               max_concurrent: int | None) -> str:
    """Run (or continue, from Tune's saved state in ``storage``) one search; the caller has
    joined Ray and holds the sweep's lock. Returns how it started: "new", "restored" or
    the reason Tune's state could not be restored (the search then starts again: the
    random searcher suggests the same configurations, which replace their own rows)."""
    max_concurrent = options.max_concurrent or max_concurrent
    cpus, gpus = float(resources.get("cpu", 1)), float(resources.get("gpu", 0))
    trainable = tune.with_resources(tune_worker.trainable, {"cpu": cpus, "gpu": gpus})
    path = storage.rstrip("/") + "/run"
    tuner, how = None, "new"
    if _can_restore(storage):
        try:
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False)
            how = "restored"
        except Exception as error:  # a driver killed mid-write can leave Tune's state unreadable
            how = f"Tune's saved state was unreadable ({type(error).__name__}: {error})"
    elif Path(storage).exists():
        how = "Tune had not saved the search's state yet"
    if tuner is None:
        callback = SearchCallback(sweep_dir, spec_hash, name, options.quiet, search,
                                  0 if section.searcher == "random" else 1)
        item = {"trial": search.base, "cpus": cpus, "report_seconds": 0.0 if section.scheduler == "asha" else 1.0}
        tuner = tune.Tuner(
            trainable,
            param_space={"item": item, "space": {d.key: domain(d) for d in search.space}},
            tune_config=tune.TuneConfig(
                search_alg=searcher(section, search, max_concurrent), scheduler=scheduler(section, search),
                num_samples=search.budget, reuse_actors=True,
                max_concurrent_trials=max_concurrent if section.searcher == "random" else None),
            run_config=tune.RunConfig(
                name="run", storage_path=storage, verbose=0,
                callbacks=[callback, *tracker_callbacks(options.trackers, sweep_dir, name, callback)],
                failure_config=tune.FailureConfig(max_failures=max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            ),
        )
    with _quiet_tune():
        results = tuner.fit()
    _reconcile(name, sweep_dir, spec_hash, section, search, results)
    return how


def _reconcile(name: str, sweep_dir: Path, spec_hash: str, section: TuneSection, search: Search,
               results: Any) -> None:
    """Write any finished trial the callback missed (a driver killed between a trial's end
    and Tune's next snapshot), from its final checkpoint."""
    done = store.completed_trial_ids(sweep_dir, include_errors=True)
    base = 0 if section.searcher == "random" else 1
    writer = StoreCallback(sweep_dir, spec_hash, name, quiet=True)
    for result in results:
        tag = (result.metrics or {}).get("experiment_tag")
        if tag is None:
            continue
        item = tuning_item(name, search, int(str(tag).split("_", 1)[0]) - base, result.config.get("space", {}))
        if item["trial_id"] in done:
            continue
        loaded = tune_worker.read_checkpoint(result.checkpoint)
        if result.error is not None:
            records, summary = loaded or ([], {})
            writer.write(item, records, summary, "error", str(result.error).strip().splitlines()[-1][:500], 1)
        elif loaded is not None and loaded[1].get("done"):
            writer.write(item, loaded[0], loaded[1], loaded[1]["status"], None, 1)
