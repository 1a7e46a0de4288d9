"""The ``tune:`` section of a spec: equal-budget searches, one per method and workload.

A grid compares methods at hyperparameters someone picked; a tuning section gives every
method the same number of trials over its own search space, selects on validation data,
and reruns each winner over fresh seeds (docs/tuning.md). The shape::

    val_fraction: 0.2            # top level, as for a grid: shared trial settings
    tune:
      budget: 8                  # trials per search (a block may state its own)
      metric: val_acc            # selection metric (a record column; never a test metric)
      mode: max                  # default: max for *_acc, min otherwise
      searcher: random           # random (default) or tpe (Optuna's TPE through Ray Tune)
      seed: 0                    # the searcher's seed: the same spec, the same suggestions
      scheduler: none            # none or asha (early stopping on the metric)
      final_seeds: [0, 1, 2]     # each winner reruns over these seeds at full length
      top_k: 3                   # the report's sensitivity: spread of the top-k trials
      dataset: [digits, mnist1d] # a list: one search per value (like a grid's shared axis)
      space:                     # shared by every block (a block may add or override keys)
        lr: {loguniform: [0.01, 1.0]}
      blocks:                    # one search per block x list values
        - optimizer: sgd
        - optimizer: sam
          space: {rho: {loguniform: [0.01, 0.5]}}

A dimension is ``{loguniform: [low, high]}`` (0 < low < high), ``{uniform: [low, high]}``
or ``{choice: [v1, v2, ...]}``, over any trial key. Every search is validated before any
work: its configs at the low and the high end of every range, and with every choice.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from harness.config import ConfigError, TrialConfig, is_number
from harness.records import RECORD_FIELDS

TUNE_KEYS = ("budget", "metric", "mode", "searcher", "seed", "scheduler", "final_seeds", "top_k", "space", "blocks")
SEARCHERS = ("random", "tpe")
SCHEDULERS = ("none", "asha")
KINDS = ("loguniform", "uniform", "choice")
MODES = ("max", "min")
TRACKERS = ("tensorboard", "mlflow", "wandb")
TRIAL_KEYS = tuple(f for f in TrialConfig.__dataclass_fields__)
_SCALAR = (str, int, float, bool, type(None))


class TuneSpecError(ConfigError):
    """A mistake in the ``tune:`` section; ``field`` is its path (``tune.blocks[1].space.lr``)."""


@dataclass(frozen=True)
class Dimension:
    key: str
    kind: str                 # loguniform | uniform | choice
    values: tuple[Any, ...]   # (low, high) or the choices


@dataclass(frozen=True)
class Search:
    """One search: a fixed base config, the dimensions sampled over it, its budget."""

    search_id: str
    base: dict[str, Any]
    space: tuple[Dimension, ...]
    budget: int

    def config(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """The validated trial config for one suggestion."""
        return TrialConfig.from_dict({**self.base, **sampled}).to_dict()


@dataclass(frozen=True)
class TuneSection:
    searches: tuple[Search, ...]
    metric: str
    mode: str
    searcher: str
    seed: int
    scheduler: str
    final_seeds: tuple[int, ...]
    top_k: int

    def to_dict(self) -> dict[str, Any]:
        """JSON for the sweep manifest (``from_dict`` reads it back on resume)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "TuneSection":
        searches = tuple(
            Search(s["search_id"], dict(s["base"]),
                   tuple(Dimension(d["key"], d["kind"], tuple(d["values"])) for d in s["space"]), s["budget"])
            for s in raw["searches"])
        return cls(**{**raw, "searches": searches, "final_seeds": tuple(raw["final_seeds"])})


def parse_tune(raw: Any, shared: Mapping[str, Any]) -> TuneSection:
    """Validate the ``tune:`` mapping against the spec's shared trial settings."""
    if not isinstance(raw, Mapping):
        raise TuneSpecError("tune", raw, "a mapping with keys " + ", ".join(TUNE_KEYS) + " or trial keys")
    settings = {k: v for k, v in raw.items() if k in TUNE_KEYS}
    for key, value in raw.items():
        if key not in TUNE_KEYS and key not in TRIAL_KEYS:
            raise TuneSpecError(f"tune.{key}", value, ", ".join(TUNE_KEYS) + " or a trial config key")
        if key not in TUNE_KEYS:
            _once(key, f"tune.{key}", value, shared)
    axes = {k: v for k, v in raw.items() if k not in TUNE_KEYS and isinstance(v, list)}
    tune_fixed = {k: v for k, v in raw.items() if k not in TUNE_KEYS and not isinstance(v, list)}
    budget = _int(settings.get("budget"), "tune.budget", 1)
    seed = _int(settings.get("seed", 0), "tune.seed", 0)
    top_k = _int(settings.get("top_k", 3), "tune.top_k", 1)
    searcher = _one_of(settings.get("searcher", "random"), "tune.searcher", SEARCHERS)
    if searcher == "tpe" and importlib.util.find_spec("optuna") is None:
        raise TuneSpecError("tune.searcher", searcher, "random, or tpe once optuna is installed "
                            "(pip install 'sambench[tune]')")
    scheduler = _one_of(settings.get("scheduler", "none"), "tune.scheduler", SCHEDULERS)
    metric = settings.get("metric", "val_acc")
    if metric in ("test_acc", "test_loss"):
        raise TuneSpecError("tune.metric", metric, "a validation metric such as val_acc or val_loss "
                            "(selecting on test data would tune on the test set)")
    _one_of(metric, "tune.metric", tuple(k for k in RECORD_FIELDS if not k.startswith("test_")))
    mode = _one_of(settings.get("mode", "max" if metric.endswith("_acc") else "min"), "tune.mode", MODES)
    seeds = settings.get("final_seeds", [0, 1, 2])
    if not isinstance(seeds, list) or not seeds or len(set(map(repr, seeds))) != len(seeds):
        raise TuneSpecError("tune.final_seeds", seeds, "a non-empty list of distinct integers >= 0")
    for i, s in enumerate(seeds):
        _int(s, f"tune.final_seeds[{i}]", 0)
    shared_space = _space(settings.get("space", {}), "tune.space")
    blocks = settings.get("blocks", [{}])
    if not isinstance(blocks, list) or not blocks:
        raise TuneSpecError("tune.blocks", blocks, "a non-empty list of mappings")

    searches: list[Search] = []
    for index, block in enumerate(blocks):
        path = f"tune.blocks[{index}]"
        if not isinstance(block, Mapping):
            raise TuneSpecError(path, block, "a mapping of trial keys, space and budget")
        space = {**shared_space, **_space(block.get("space", {}), f"{path}.space")}
        block_budget = _int(block.get("budget", budget), f"{path}.budget", 1)
        fixed: dict[str, Any] = {}
        block_axes: dict[str, list] = {}
        for key, value in block.items():
            if key in ("space", "budget"):
                continue
            if key not in TRIAL_KEYS:
                raise TuneSpecError(f"{path}.{key}", value, "space, budget or a trial config key")
            _once(key, f"{path}.{key}", value, {**shared, **axes, **tune_fixed})
            (block_axes if isinstance(value, list) else fixed)[key] = value
        all_axes = {**block_axes, **axes}
        for key in space:
            if key in all_axes or key in fixed or key in tune_fixed:
                raise TuneSpecError(f"{path}.space.{key}", space[key].values,
                                    f"a key set in one place only ({key} is also fixed or a list in tune)")
        for combo in itertools.product(*all_axes.values()):
            base = {**shared, **tune_fixed, **fixed, **dict(zip(all_axes, combo))}
            base = {k: v for k, v in base.items() if k not in space}  # the space overrides top level
            searches.append(_search(base, space, block_budget, path, len(searches)))
    _name_searches(searches)
    for search in searches:
        if metric.startswith("val_") and not search.base.get("val_fraction"):
            raise TuneSpecError("val_fraction", search.base.get("val_fraction", 0),
                                f"a number in (0, 1): tune.metric {metric} needs a validation split "
                                f"(search {search.search_id})")
    return TuneSection(tuple(searches), metric, mode, searcher, seed, scheduler,
                       tuple(int(s) for s in seeds), top_k)


def drop_key(raw: Any, key: str) -> Any:
    """The ``tune:`` mapping without trial key ``key`` (outside search spaces): what a
    ``--set key=value`` pin does to the section."""
    if not isinstance(raw, Mapping):
        return raw
    out = {k: v for k, v in raw.items() if k != key}
    if isinstance(out.get("blocks"), list):
        out["blocks"] = [{k: v for k, v in b.items() if k != key} if isinstance(b, Mapping) else b
                         for b in out["blocks"]]
    return out


def check_trackers(raw: Any, path: str = "trackers") -> tuple[str, ...]:
    """A list of tracker names, each once."""
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or any(n not in TRACKERS for n in names):
        raise ConfigError(path, raw, "a list of " + ", ".join(TRACKERS))
    return tuple(dict.fromkeys(names))


# -- helpers -------------------------------------------------------------------------------
def _space(raw: Any, path: str) -> dict[str, Dimension]:
    if not isinstance(raw, Mapping):
        raise TuneSpecError(path, raw, "a mapping of trial keys to {loguniform|uniform|choice: [...]}")
    space = {}
    for key, dim in raw.items():
        where = f"{path}.{key}"
        if key not in TRIAL_KEYS or key in ("seed", "val_fraction", "dataset"):
            raise TuneSpecError(where, dim, "a trial config key other than seed, val_fraction and dataset")
        if not isinstance(dim, Mapping) or len(dim) != 1 or next(iter(dim)) not in KINDS:
            raise TuneSpecError(where, dim, "one of {loguniform: [low, high]}, {uniform: [low, high]}, "
                                "{choice: [v1, v2, ...]}")
        kind, values = next(iter(dim.items()))
        if kind == "choice":
            if not isinstance(values, list) or not values or not all(isinstance(v, _SCALAR) for v in values):
                raise TuneSpecError(f"{where}.choice", values, "a non-empty list of single values")
        else:
            ok = (isinstance(values, list) and len(values) == 2 and all(is_number(v) for v in values)
                  and values[0] < values[1] and (kind == "uniform" or values[0] > 0))
            if not ok:
                low = "0 < low < high" if kind == "loguniform" else "low < high"
                raise TuneSpecError(f"{where}.{kind}", values, f"[low, high] with {low}")
            values = [float(v) for v in values]
        space[key] = Dimension(key, kind, tuple(values))
    return space


def _search(base: dict[str, Any], space: dict[str, Dimension], budget: int, path: str, index: int) -> Search:
    """Validate a search at the corners of its space; a method's fixed keys (sgd: rho, lam;
    sam, usam: lam) may not be searched."""
    from harness.optim import OPTIMIZERS

    optimizer = base.get("optimizer", TrialConfig.optimizer)
    fixed = ("rho", "lam") if optimizer == "sgd" else (
        ("lam",) if isinstance(OPTIMIZERS.get(optimizer), Mapping) and OPTIMIZERS[optimizer].get("lam") is not None
        else ())
    for key in space:
        if key in fixed:
            raise TuneSpecError(f"{path}.space.{key}", space[key].values, f"a key that {optimizer} does not fix")
        if key == "optimizer":
            raise TuneSpecError(f"{path}.space.optimizer", space[key].values, "a fixed optimizer per search "
                                "(equal budgets are per method: one block per optimizer)")
    base = {k: v for k, v in base.items() if k not in fixed}
    corners = [{k: d.values[0] for k, d in space.items()}, {k: d.values[-1] for k, d in space.items()}]
    for key, dim in space.items():
        if dim.kind == "choice":
            corners += [{**corners[0], key: v} for v in dim.values[1:-1]]
    for corner in corners:
        try:
            TrialConfig.from_dict({**base, **corner})
        except ConfigError as err:
            field = f"{path}.space.{err.field}" if err.field in space else (
                f"{path}.{err.field}" if err.field in base else err.field)
            raise TuneSpecError(field, err.value, err.allowed) from None
    return Search(f"s{index}", base, tuple(space.values()), budget)


def _name_searches(searches: list[Search]) -> None:
    """Readable, unique ids: dataset-model-optimizer (+ lam), a suffix where they repeat."""
    names = []
    for s in searches:
        cfg = s.base
        parts = [cfg.get("dataset", TrialConfig.dataset), cfg.get("model", TrialConfig.model),
                 cfg.get("optimizer", TrialConfig.optimizer)]
        if cfg.get("optimizer") == "unified" and "lam" in cfg:
            parts.append(f"lam{cfg['lam']}")
        names.append(re.sub(r"[^A-Za-z0-9.]+", "-", "-".join(map(str, parts))).strip("-").lower())
    for i, s in enumerate(searches):
        name = names[i] if names.count(names[i]) == 1 else f"{names[i]}-{names[:i].count(names[i]) + 1}"
        searches[i] = Search(name, s.base, s.space, s.budget)


def _once(key: str, path: str, value: Any, elsewhere: Mapping[str, Any]) -> None:
    if key in elsewhere:
        raise TuneSpecError(path, value, f"a key set in one place only ({key} is set elsewhere in the spec)")
    if isinstance(value, list) and (not value or not all(isinstance(v, _SCALAR) for v in value)):
        raise TuneSpecError(path, value, "a single value or a non-empty list of single values")
    if not isinstance(value, (list, *_SCALAR)):
        raise TuneSpecError(path, value, "a single value or a non-empty list of single values")


def _int(value: Any, path: str, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise TuneSpecError(path, value, f"an integer >= {low}")
    return value


def _one_of(value: Any, path: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise TuneSpecError(path, value, ", ".join(allowed))
    return value
