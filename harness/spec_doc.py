"""A spec as a document, before validation: the keys it may hold, the split of its top
level into shared trial settings, grid axes and blocks, and ``--set key=value`` overrides
(their rules are in harness.spec's docstring). ``apply_overrides`` gives ``sambench
train`` the same ``--set`` for a single trial's mapping.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping, Sequence

from harness.config import TrialConfig
from harness.errors import SpecError, did_you_mean
from harness.spec_yaml import load_yaml
from harness.tune_spec import drop_key

SPEC_KEYS = ("name", "grid", "resources", "max_failures", "max_concurrent", "description", "tune", "trackers")
TRIAL_KEYS = tuple(f.name for f in fields(TrialConfig))
SHARPNESS_KEYS = ("every", "samples", "method", "trace")
TOP_KEYS = SPEC_KEYS + ("sharpness",) + TRIAL_KEYS
_TOP_ALLOWED = ", ".join(SPEC_KEYS) + ", sharpness or a trial config key: " + ", ".join(TRIAL_KEYS)
GRID_KEY_ALLOWED = "a trial config key: " + ", ".join(TRIAL_KEYS)
_SET_ALLOWED = "sharpness.KEY, tune.KEY, grid.KEY, grid.blocks, resources.KEY or a key " + _TOP_ALLOWED
_DOTTED_ALLOWED = {
    "grid": "grid.blocks or grid.KEY with KEY " + GRID_KEY_ALLOWED,
    "sharpness": "sharpness.KEY with KEY one of " + ", ".join(SHARPNESS_KEYS),
    "resources": "resources.cpu or resources.gpu",
}
SCALAR = (str, int, float, bool, type(None))


def split_doc(raw: Any) -> dict[str, Any]:
    """Sort the top level into spec keys, shared trial settings and the grid's two parts."""
    if not isinstance(raw, Mapping):
        raise SpecError("spec", raw, "a YAML mapping of spec keys and trial config keys")
    doc: dict[str, Any] = {
        "name": None, "description": None, "shared": {}, "axes": {}, "blocks": None,
        "resources": {}, "max_failures": 0, "max_concurrent": None, "tune": None, "trackers": None,
    }
    for key, value in raw.items():
        if key == "grid":
            doc["axes"], doc["blocks"] = _split_grid(value, "grid")
        elif key in SPEC_KEYS:
            doc[key] = value
        elif key == "sharpness":
            for sub, sub_value in _sharpness_items(value, "sharpness"):
                _set_shared(doc, f"sharpness_{sub}", sub_value, f"sharpness.{sub}")
        elif key in TRIAL_KEYS:
            _set_shared(doc, key, value, key)
        else:
            raise SpecError(str(key), value, _TOP_ALLOWED + did_you_mean(key, TOP_KEYS))
    return doc


def _split_grid(value: Any, path: str) -> tuple[dict[str, Any], Any]:
    if value is None:
        return {}, None
    if isinstance(value, list):
        return {}, value
    if isinstance(value, Mapping):
        axes = {key: axis for key, axis in value.items() if key != "blocks"}
        return axes, value.get("blocks")
    raise SpecError(path, value, "a mapping of trial keys to lists (optionally with blocks), or a list of blocks")


def _sharpness_items(value: Any, path: str) -> list[tuple[str, Any]]:
    if not isinstance(value, Mapping):
        raise SpecError(path, value, "a mapping with keys " + ", ".join(SHARPNESS_KEYS))
    for sub in value:
        if sub not in SHARPNESS_KEYS:
            raise SpecError(f"{path}.{sub}", value[sub], "keys " + ", ".join(SHARPNESS_KEYS))
    return list(value.items())


def _set_shared(doc: dict[str, Any], key: str, value: Any, path: str) -> None:
    if key in doc["shared"]:
        raise SpecError(path, value, f"one value per key ({key} is already set)")
    doc["shared"][key] = value


def _split_override(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError("--set", item, "key=value, e.g. epochs=1, sharpness.every=2, grid.seed=[0,1]")
    try:
        return key, load_yaml(text, f"--set {key}")
    except SpecError:
        raise SpecError(f"--set {key}", text, "a YAML value, e.g. 0.1, sgd, '1/t', [0, 1]") from None


def apply_override(doc: dict[str, Any], item: str) -> None:
    """Apply one ``key=value``; see the module docstring for the rules."""
    key, value = _split_override(item)
    head, _, rest = key.partition(".")
    if not rest and head == "grid":
        doc["axes"], doc["blocks"] = _split_grid(value, "--set grid")
    elif not rest and head in SPEC_KEYS:
        doc[head] = value
    elif not rest and head == "sharpness":
        for sub, sub_value in _sharpness_items(value, "--set sharpness"):
            _pin(doc, f"sharpness_{sub}", sub_value, key)
    elif not rest and head in TRIAL_KEYS:
        _pin(doc, head, value, key)
    elif head == "sharpness" and rest in SHARPNESS_KEYS:
        _pin(doc, f"sharpness_{rest}", value, key)
    elif head == "resources" and "." not in rest:
        if not isinstance(doc["resources"], Mapping):
            raise SpecError("resources", doc["resources"], "a mapping with keys cpu, gpu")
        doc["resources"] = {**doc["resources"], rest: value}
    elif head == "tune" and rest and "." not in rest:  # tune.budget=2, tune.final_seeds=[0]
        doc["tune"] = {**(doc["tune"] if isinstance(doc["tune"], Mapping) else {}), rest: value}
    elif head == "grid" and rest == "blocks":
        doc["blocks"] = value
    elif head == "grid" and rest in TRIAL_KEYS:
        _drop_everywhere(doc, rest)
        doc["axes"][rest] = value
    elif head in _DOTTED_ALLOWED:
        raise SpecError(f"--set {key}", value, _DOTTED_ALLOWED[head])
    else:
        raise SpecError(f"--set {key}", value, _SET_ALLOWED + did_you_mean(key, TOP_KEYS))


def _pin(doc: dict[str, Any], key: str, value: Any, label: str) -> None:
    if not isinstance(value, SCALAR):
        raise SpecError(f"--set {label}", value, f"a single value (use grid.{key}=[...] to sweep it)")
    _drop_everywhere(doc, key)
    doc["shared"][key] = value


def _drop_everywhere(doc: dict[str, Any], key: str) -> None:
    doc["shared"].pop(key, None)
    doc["axes"].pop(key, None)
    doc["tune"] = drop_key(doc["tune"], key)
    if isinstance(doc["blocks"], list):
        doc["blocks"] = [
            {k: v for k, v in block.items() if k != key} if isinstance(block, Mapping) else block
            for block in doc["blocks"]
        ]


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides to one trial's mapping (``sambench train``): flat trial
    keys, or ``sharpness.KEY``; the ``sharpness`` sugar is flattened first so an override
    always wins. Key names are left for ``TrialConfig.from_dict`` to check."""
    flat = {key: value for key, value in raw.items() if key != "sharpness"}
    if "sharpness" in raw:
        for sub, value in _sharpness_items(raw["sharpness"], "sharpness"):
            if f"sharpness_{sub}" in flat:
                raise SpecError(f"sharpness.{sub}", value, f"one value per key (sharpness_{sub} is already set)")
            flat[f"sharpness_{sub}"] = value
    for item in overrides:
        key, value = _split_override(item)
        head, _, rest = key.partition(".")
        if head == "sharpness" and rest in SHARPNESS_KEYS:
            key = f"sharpness_{rest}"
        elif rest:
            raise SpecError(f"--set {key}", value, "a trial config key or sharpness.KEY")
        flat[key] = value
    return flat
