"""Sweep specs: one YAML file -> a validated, duplicate-free list of trial configs.

Everything is checked before any trial starts, so a typo costs one line of output, not a
Ray worker's traceback. The shape of a spec::

    name: unified-vs-sgd          # names the results folder: letters, digits, . _ -
    description: optional text
    dataset: digits               # top level: shared trial settings, one value each
    model: mlp                    # (the keys of harness.config.TrialConfig, plus the
    epochs: 20                    #  sugar ``sharpness: {every, samples, method, trace}``)
    lr: 0.1
    grid:                         # what varies
      seed: [0, 1, 2]             # a shared axis: key -> non-empty list
      blocks:                     # optional: alternatives, each its own small grid
        - optimizer: sgd
        - optimizer: unified
          rho: [0.1, 0.2]         # a list in a block is an axis of that block only
          lam: [0, 0.5, 1, "1/t", "1-1/t"]
    resources: {cpu: 1, gpu: 0.25}   # per trial; gpu: a fraction in [0, 1] or a whole count
    max_failures: 0               # retries of a failed trial
    max_concurrent: null          # cap on trials running at once (null: as many as fit)
    tune: {...}                   # optional, beside or instead of grid: equal-budget tuning
                                  # searches per method (harness/tune_spec.py, docs/tuning.md)
    trackers: [tensorboard]       # optional: tensorboard, mlflow, wandb (docs/trackers.md)

Semantics:

- The trials are the union over blocks of (block scalars x block axes x shared axes), where
  "x" is a Cartesian product. No ``blocks`` means one block with no keys. The example gives
  3 sgd trials + 2 * 5 * 3 = 30 unified trials.
- ``grid`` may also be a plain list of blocks (shorthand for ``grid: {blocks: [...]}``).
- A key lives in one place only: at top level, as a shared axis, or in blocks (it may then
  appear in several blocks). A list at top level is an error: lists go under ``grid``.
- Order is stable: block by block; within a block, nested loops over the block's axes and
  then the shared axes, in the order written, the last varying fastest.
- Values the optimizer fixes are dropped before validation: sgd drops ``rho`` and ``lam``;
  an optimizer whose registry entry fixes ``lam`` (sam: 1, usam: 0) drops ``lam``. Configs
  that are then identical are run once (the first in order is kept). So ``optimizer: [sgd,
  sam, usam, unified]`` x 3 lam x 2 rho x 2 samplers x 3 seeds is 6 + 12 + 12 + 36 = 66.

Overrides (``--set key=value``, value parsed as YAML: ``0.1``, ``sgd``, ``[0, 1]``) apply to
the spec before validation:

- ``key=v`` for a trial key (also ``sharpness.every=v``) pins the key to one value for
  every trial and removes it from the grid (shared axis and blocks): ``seed=0`` turns a
  seed axis into one seed, which is how a smoke run shrinks a sweep.
- ``grid.key=[...]`` sets a shared axis and removes the key from top level and blocks;
  ``grid.blocks=[...]`` and ``grid=...`` replace those parts whole.
- ``resources.cpu=2``, ``name=x``, ``max_failures=1``, ... set spec keys.

``Spec.text`` is the canonical YAML of the spec after overrides (sugar flattened, fixed key
order, defaults filled); ``Spec.spec_hash`` is its sha1, so comments, quoting and layout do
not change the hash and a different override does. Every mistake raises ``SpecError``, one
line naming the path in the spec (``grid.blocks[1].lam[2]``), the bad value and what is
allowed.

YAML is read by ``load_yaml`` (harness.spec_yaml): a safe loader that refuses duplicate
keys and anchor bombs and reads ``1e-3`` as a float (PyYAML's YAML 1.1 rules would make it
a string). The keys, the split of the top level and the overrides live in
harness.spec_doc; ``apply_overrides`` gives ``sambench train`` the same ``--set`` for a
single trial's mapping.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.config import ConfigError, TrialConfig, is_number
from harness.errors import SpecError, did_you_mean
# The document's keys and --set overrides (spec_doc), and safe YAML (spec_yaml); their
# public names are part of this module's API too.
from harness.spec_doc import (GRID_KEY_ALLOWED, SCALAR, SPEC_KEYS, TRIAL_KEYS, apply_override,  # noqa: F401
                              apply_overrides, split_doc)
from harness.spec_yaml import dump_yaml, load_yaml
from harness.tune_spec import TuneSection, check_trackers, parse_tune

RESOURCE_DEFAULTS = {"cpu": 1.0, "gpu": 0.0}
MAX_YAML_BYTES = 4 * 2**20      # a spec is a few KiB; refuse what is clearly no spec
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_NAME_ALLOWED = "letters, digits, '.', '_' or '-', starting with a letter or digit (it names the results folder)"


@dataclass(frozen=True)
class Spec:
    """A validated sweep: the expanded trials plus what Ray Tune needs to schedule them."""

    name: str
    trials: list[TrialConfig]
    resources: dict[str, float]
    max_failures: int
    max_concurrent: int | None
    text: str
    spec_hash: str
    description: str | None = None
    tune: TuneSection | None = None     # equal-budget tuning searches (harness/tune_spec.py)
    trackers: tuple[str, ...] = ()      # experiment trackers; not part of the hash (they change no result)

    def table(self) -> str:
        """The trials as an aligned text table: dataset, model and every column that varies."""
        rows = [trial.to_dict() for trial in self.trials]
        columns = [
            key for key in TRIAL_KEYS
            if key in ("dataset", "model") or len({_distinct(row[key]) for row in rows}) > 1
        ]
        header = ["#", *columns]
        body = [[str(i), *(_cell(row[key]) for key in columns)] for i, row in enumerate(rows)]
        numeric = [True] + [all(is_number(row[key]) or row[key] is None for row in rows) for key in columns]
        widths = [max(len(line[j]) for line in [header, *body]) for j in range(len(header))]

        def render(line: list[str]) -> str:
            cells = (c.rjust(w) if num else c.ljust(w) for c, w, num in zip(line, widths, numeric))
            return "  ".join(cells).rstrip()

        count = f"{len(rows)} trial" + ("" if len(rows) == 1 else "s")
        return "\n".join([render(header), *map(render, body), count])


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> Spec:
    """Read, override, validate and expand the spec at ``path``."""
    return parse_spec(read_text(path, "spec"), overrides, source=str(path))


def read_text(path: str | Path, field: str) -> str:
    """A YAML file's text, or a one-line SpecError: missing, a folder, unreadable, too
    large, or not UTF-8."""
    path = Path(path)
    try:
        if path.is_dir():
            raise SpecError(field, str(path), "a YAML file (this is a folder)")
        if path.is_file() and path.stat().st_size > MAX_YAML_BYTES:
            raise SpecError(field, str(path), f"a YAML file of at most {MAX_YAML_BYTES // 2**20} MiB")
        data = path.read_bytes()
    except OSError as err:
        raise SpecError(field, str(path), f"a readable YAML file ({err.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(field, str(path), f"a UTF-8 text file (byte {data[err.start]:#04x} at offset "
                                          f"{err.start} is not UTF-8)") from None


def parse_spec(text: str, overrides: Sequence[str] = (), source: str = "<spec>") -> Spec:
    """Like ``load_spec`` for YAML text; ``source`` names it in syntax errors."""
    doc = split_doc(load_yaml(text, source))
    for item in overrides:
        apply_override(doc, item)
    _check(doc)
    try:
        tuning = parse_tune(doc["tune"], doc["shared"]) if doc["tune"] is not None else None
    except ConfigError as err:  # every spec mistake is a SpecError
        raise SpecError(err.field, err.value, err.allowed) from None
    # A spec with a tune: section and no grid: has no grid trials (not the one default trial).
    no_grid = tuning is not None and not doc["axes"] and doc["blocks"] is None
    trials = [] if no_grid else _expand(doc)
    _check_models(trials)
    canonical = _dump(doc)
    return Spec(
        name=doc["name"],
        trials=trials,
        resources=dict(doc["resources"]),
        max_failures=doc["max_failures"],
        max_concurrent=doc["max_concurrent"],
        text=canonical,
        spec_hash=hashlib.sha1(canonical.encode("utf-8")).hexdigest(),
        description=doc["description"],
        tune=tuning,
        trackers=_trackers(doc["trackers"]),
    )


def _trackers(raw: Any) -> tuple[str, ...]:
    try:
        return check_trackers(raw) if raw is not None else ()
    except ConfigError as err:
        raise SpecError(err.field, err.value, err.allowed) from None


# -- checks --------------------------------------------------------------------------------
def _check(doc: dict[str, Any]) -> None:
    """Check the spec keys and the grid's shape; trial values are checked by TrialConfig."""
    name = doc["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SpecError("name", name, _NAME_ALLOWED)
    if doc["description"] is not None and not isinstance(doc["description"], str):
        raise SpecError("description", doc["description"], "a string")
    if not _is_int(doc["max_failures"]) or doc["max_failures"] < 0:
        raise SpecError("max_failures", doc["max_failures"], "an integer >= 0")
    if doc["max_concurrent"] is not None and (not _is_int(doc["max_concurrent"]) or doc["max_concurrent"] < 1):
        raise SpecError("max_concurrent", doc["max_concurrent"], "an integer >= 1 or null")
    doc["resources"] = _check_resources(doc["resources"])

    for key, value in doc["shared"].items():
        if not isinstance(value, SCALAR):
            raise SpecError(key, value, f"a single value (lists go under grid.{key})")
    for key, values in doc["axes"].items():
        if key not in TRIAL_KEYS:
            raise SpecError(f"grid.{key}", values, GRID_KEY_ALLOWED + did_you_mean(key, TRIAL_KEYS))
        if not isinstance(values, list):
            raise SpecError(f"grid.{key}", values, "a non-empty list (put single values at top level)")
        _check_axis(values, f"grid.{key}")
        _check_once(doc, key, f"grid.{key}", values, in_block=False)

    blocks = doc["blocks"]
    if blocks is None:
        return
    if not isinstance(blocks, list) or not blocks:
        raise SpecError("grid.blocks", blocks, "a non-empty list of mappings")
    for index, block in enumerate(blocks):
        path = f"grid.blocks[{index}]"
        if not isinstance(block, Mapping):
            raise SpecError(path, block, "a mapping of trial keys to values or lists")
        for key, value in block.items():
            if key not in TRIAL_KEYS:
                raise SpecError(f"{path}.{key}", value, GRID_KEY_ALLOWED + did_you_mean(key, TRIAL_KEYS))
            if isinstance(value, list):
                _check_axis(value, f"{path}.{key}")
            elif not isinstance(value, SCALAR):
                raise SpecError(f"{path}.{key}", value, "a single value or a non-empty list")
            _check_once(doc, key, f"{path}.{key}", value, in_block=True)


def _check_resources(resources: Any) -> dict[str, float]:
    if resources is None:
        resources = {}
    if not isinstance(resources, Mapping):
        raise SpecError("resources", resources, "a mapping with keys cpu, gpu")
    for key, value in resources.items():
        if key not in RESOURCE_DEFAULTS:
            raise SpecError(f"resources.{key}", value, "keys cpu, gpu")
    cpu = resources.get("cpu", RESOURCE_DEFAULTS["cpu"])
    gpu = resources.get("gpu", RESOURCE_DEFAULTS["gpu"])
    if not is_number(cpu) or cpu < 0:
        raise SpecError("resources.cpu", cpu, "a number >= 0")
    if not is_number(gpu) or gpu < 0 or (gpu > 1 and gpu != int(gpu)):
        raise SpecError("resources.gpu", gpu, "a fraction in [0, 1] or a whole number of GPUs")
    return {"cpu": float(cpu), "gpu": float(gpu) if gpu <= 1 else int(gpu)}


def _check_axis(values: list[Any], path: str) -> None:
    if not values:
        raise SpecError(path, values, "a non-empty list")
    for i, value in enumerate(values):
        if not isinstance(value, SCALAR):
            raise SpecError(f"{path}[{i}]", value, "a single value (no nested lists or mappings)")
        for j in range(i):
            if _distinct(values[j]) == _distinct(value):
                raise SpecError(f"{path}[{i}]", value, f"distinct values ({values[j]!r} is already at {path}[{j}])")


def _check_once(doc: dict[str, Any], key: str, path: str, value: Any, in_block: bool) -> None:
    """A key is set at top level, as a shared axis, or in blocks: never two of these."""
    if key in doc["shared"]:
        raise SpecError(path, value, f"a key set in one place only ({key} is also set at top level)")
    if in_block and key in doc["axes"]:
        raise SpecError(path, value, f"a key set in one place only ({key} is also a shared axis grid.{key})")


# -- expansion -----------------------------------------------------------------------------
def _expand(doc: dict[str, Any]) -> list[TrialConfig]:
    """The union over blocks of block x shared axes, with fixed values dropped, deduplicated."""
    blocks = doc["blocks"] if doc["blocks"] is not None else [{}]
    shared_axes = [(key, values, f"grid.{key}") for key, values in doc["axes"].items()]
    trials: list[TrialConfig] = []
    seen: set[TrialConfig] = set()
    seen_raw: set[frozenset[tuple[str, Any]]] = set()  # skips re-validating dropped-axis copies
    for index, block in enumerate(blocks):
        prefix = f"grid.blocks[{index}]"
        block_axes = [(key, v, f"{prefix}.{key}") for key, v in block.items() if isinstance(v, list)]
        fixed = {key: v for key, v in block.items() if not isinstance(v, list)}
        axes = block_axes + shared_axes
        for combo in itertools.product(*(range(len(values)) for _, values, _ in axes)):
            raw = {**doc["shared"], **fixed}
            origins = {key: f"{prefix}.{key}" for key in fixed}
            for (key, values, path), i in zip(axes, combo):
                raw[key] = values[i]
                origins[key] = f"{path}[{i}]"
            raw = _drop_fixed(raw)
            raw_key = frozenset((key, _distinct(value)) for key, value in raw.items())
            if raw_key in seen_raw:
                continue
            seen_raw.add(raw_key)
            trial = _build(raw, origins)
            if trial not in seen:
                seen.add(trial)
                trials.append(trial)
    return trials


def _check_models(trials: list[TrialConfig]) -> None:
    """Every model must take its dataset's inputs: each (dataset, model, width, depth) is
    built on the meta device and run once, so ``model: wrn`` on MNIST-1D fails here, not
    in a Ray worker. Plug-in datasets are checked when their trial loads them."""
    from harness.data import INPUTS
    from harness.models import check_fits

    seen: set[tuple[Any, ...]] = set()
    for cfg in trials:
        key = (cfg.dataset, cfg.model, cfg.width, cfg.depth)
        if cfg.dataset not in INPUTS or key in seen:
            continue
        seen.add(key)
        shape, classes = INPUTS[cfg.dataset]
        try:
            check_fits(cfg.model, shape, classes, width=cfg.width, depth=cfg.depth)
        except ConfigError as err:
            raise SpecError(err.field, err.value, f"{err.allowed} [dataset {cfg.dataset}]") from None


def _drop_fixed(raw: dict[str, Any]) -> dict[str, Any]:
    """Remove rho/lam where the optimizer fixes them, so those axes add no copies."""
    from harness.optim import OPTIMIZERS

    optimizer = raw.get("optimizer", TrialConfig.optimizer)
    entry = OPTIMIZERS.get(optimizer) if isinstance(optimizer, str) else None
    if entry is not None and entry.lam == "none":  # sgd: no ascent, no rho or lam
        return {k: v for k, v in raw.items() if k not in ("rho", "lam")}
    if entry is not None and isinstance(entry.lam, float):  # sam, usam fix lam
        return {k: v for k, v in raw.items() if k != "lam"}
    return raw


def _build(raw: dict[str, Any], origins: Mapping[str, str]) -> TrialConfig:
    """Validate one trial; a ConfigError is re-raised naming the value's path in the spec."""
    try:
        return TrialConfig.from_dict(raw)
    except ConfigError as err:
        raise SpecError(origins.get(err.field, err.field), err.value, err.allowed) from None


# -- output --------------------------------------------------------------------------------
def _dump(doc: dict[str, Any]) -> str:
    """Canonical YAML: spec keys and trial keys in a fixed order, grid order kept (it is the
    trial order), sugar flattened, defaults of the spec keys filled."""
    out: dict[str, Any] = {"name": doc["name"]}
    if doc["description"] is not None:
        out["description"] = doc["description"]
    out.update((key, doc["shared"][key]) for key in TRIAL_KEYS if key in doc["shared"])
    grid = dict(doc["axes"])
    if doc["blocks"] is not None:
        grid["blocks"] = [dict(block) for block in doc["blocks"]]
    if grid:
        out["grid"] = grid
    if doc["tune"] is not None:
        out["tune"] = doc["tune"]
    out["resources"] = doc["resources"]
    out["max_failures"] = doc["max_failures"]
    out["max_concurrent"] = doc["max_concurrent"]
    return dump_yaml(out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _distinct(value: Any) -> tuple[bool, Any]:
    """Equality key that keeps True apart from 1 (Python says they are equal)."""
    return isinstance(value, bool), value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

