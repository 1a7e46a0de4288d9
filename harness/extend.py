"""``sambench run SPEC --extend``: grow a recorded sweep instead of starting a new one.

A trial's id derives from the sweep name and its full config, so a trial whose config is
unchanged keeps its id and its recorded rows are reused as they are. Extending may only
*add* trials: a change that would drop a recorded trial from the grid (``epochs: 3 -> 5``
changes every trial) is refused, because the folder would then hold results the spec no
longer describes. Spec keys that no trial config contains (``description``,
``resources``, ``max_failures``, ``max_concurrent``) change nothing that was recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import store
from harness.spec import Spec, load_yaml

HARMLESS = ("description", "resources", "max_failures", "max_concurrent")
_UNSET = object()


class ExtendError(ValueError):
    """An extension that is refused; the message is one line saying why."""


@dataclass(frozen=True)
class Extension:
    """What ``--extend`` will do: the spec changes, the trials kept and the trials to run."""

    name: str
    changes: list[tuple[str, Any, Any]]   # (dotted path, stored value, new value)
    kept: list[dict]                      # manifest entries already recorded
    new: list[dict]                       # manifest entries to run
    manifest: dict[str, Any]              # the manifest to write

    def summary(self) -> str:
        lines = [f"extend {self.name}: " + ("the spec is unchanged" if not self.changes else "spec changes")]
        lines += [f"  {path}: {_show(old)} -> {_show(new)}" for path, old, new in self.changes]
        lines.append(f"{len(self.kept) + len(self.new)} trials: {len(self.kept)} recorded and kept, "
                     f"{len(self.new)} new to run")
        return "\n".join(lines)


def spec_changes(old_text: str, new_text: str) -> list[tuple[str, Any, Any]]:
    """The differences between two canonical spec texts, as (dotted path, old, new);
    grid blocks are compared item by item (``grid.blocks[1].rho``)."""
    old, new = _flatten(load_yaml(old_text, "spec.yaml")), _flatten(load_yaml(new_text, "spec"))
    return [(path, old.get(path, _UNSET), new.get(path, _UNSET))
            for path in list(old) + [p for p in new if p not in old]
            if old.get(path, _UNSET) != new.get(path, _UNSET)]


def plan_extension(sweep_dir: str | Path, spec: Spec) -> Extension:
    """Check that ``spec`` only adds trials to the sweep in ``sweep_dir`` and plan the run;
    an ``ExtendError`` says in one line why not."""
    sweep_dir = Path(sweep_dir)
    manifest = store.read_manifest(sweep_dir)
    old_text, _ = store.read_spec(sweep_dir)
    changes = spec_changes(old_text, spec.text)
    recorded = store.completed_trial_ids(sweep_dir, include_errors=True)
    unfinished = [t for t in manifest["trials"] if t["trial_id"] not in recorded]
    if unfinished:
        raise ExtendError(f"{len(unfinished)} of the {len(manifest['trials'])} trials of {sweep_dir} are not "
                          f"recorded yet; finish them first with `sambench resume {sweep_dir}`")
    entries = [{"trial_id": store.config_id(spec.name, cfg), "trial": cfg.to_dict()} for cfg in spec.trials]
    ids = {entry["trial_id"] for entry in entries}
    dropped = [t for t in manifest["trials"] if t["trial_id"] not in ids]
    if dropped:
        meaning = [f"{path}: {_show(old)} -> {_show(new)}" for path, old, new in changes
                   if path.split(".")[0].split("[")[0] not in HARMLESS]
        raise ExtendError(f"{len(dropped)} recorded trials of {sweep_dir} are not in the new spec "
                          f"(changed: {'; '.join(meaning) or 'the grid'}); --extend only adds trials: "
                          "keep their settings or choose another sweep name")
    new = [entry for entry in entries if entry["trial_id"] not in recorded]
    kept = [entry for entry in entries if entry["trial_id"] in recorded]
    updated = {**manifest, "spec_hash": spec.spec_hash, "resources": spec.resources,
               "max_failures": spec.max_failures, "max_concurrent": spec.max_concurrent, "trials": entries}
    return Extension(spec.name, changes, kept, new, updated)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat |= _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return flat
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        flat = {}
        for i, item in enumerate(value):
            flat |= _flatten(item, f"{prefix}[{i}]")
        return flat
    return {prefix: value}


def _show(value: Any) -> str:
    return "(unset)" if value is _UNSET else repr(value)
