"""The trial keys as a user reads them: name, default, allowed values and meaning.

Generated from ``TrialConfig`` (field names, defaults, type hints and the trailing comment
of each field) and from the registries (every name a user can type), so a key or a
registry entry added anywhere shows up in ``sambench train --help`` and in
docs/configuration.md without editing this file. ``python -m harness.config_doc`` prints
the Markdown page; a test keeps docs/configuration.md equal to it.
"""

from __future__ import annotations

import inspect
import re
import sys
from dataclasses import MISSING, fields
from typing import Any, Callable, get_args, get_type_hints

from harness.config import (DEFAULT_EPOCHS, DEFAULT_LR, DEVICES, IMPORTANCE_PROXIES, LAM_SCHEDULE_UNITS,
                            LR_SCHEDULES, SPECTRA, TrialConfig)


def _names(loader: Callable[[], Any]) -> Callable[[], str]:
    return lambda: ", ".join(loader())


def _datasets() -> Any:
    from harness.data import DATASETS
    return DATASETS


def _models() -> Any:
    from harness.models import MODELS
    return MODELS


def _optimizers() -> Any:
    from harness.optim import OPTIMIZERS
    return OPTIMIZERS


def _samplers() -> Any:
    from harness.samplers import SAMPLERS
    return SAMPLERS


def _bn_policies() -> Any:
    from harness.optim import BN_POLICIES
    return BN_POLICIES


def _sharpness_methods() -> Any:
    from harness.sharpness import SHARPNESS_METHODS
    return SHARPNESS_METHODS


def _step_rules() -> Any:
    from harness.theory import STEP_RULE_NAMES
    return STEP_RULE_NAMES


def _precisions() -> Any:
    from harness.precision import PRECISIONS
    return PRECISIONS


def _lam() -> str:
    from harness.optim import LAM_SCHEDULES
    return "a number in [0, 1], " + ", ".join(LAM_SCHEDULES) + " (unified only), or null"


# Keys whose allowed values are names from a registry or a fixed list.
CHOICES: dict[str, Callable[[], str]] = {
    "dataset": _names(_datasets), "model": _names(_models), "optimizer": _names(_optimizers),
    "sampler": _names(_samplers), "bn_policy": _names(_bn_policies),
    "sharpness_method": _names(_sharpness_methods), "lr_schedule": lambda: ", ".join(LR_SCHEDULES),
    "device": lambda: ", ".join(DEVICES), "importance_proxy": lambda: ", ".join(IMPORTANCE_PROXIES),
    "spectrum": lambda: ", ".join(SPECTRA), "step_rule": lambda: ", ".join(_step_rules()) + ", or null",
    "lam": _lam, "precision": lambda: ", ".join(_precisions()),
    "lam_schedule_unit": lambda: ", ".join(LAM_SCHEDULE_UNITS),
}
# Numeric ranges that TrialConfig.validated enforces beyond the type.
RANGES = {
    "cond": "a number >= 1", "momentum": "a number in [0, 1)", "importance_mix": "a number in [0, 1]",
    "rho": "a number >= 0 (0 or null for sgd)", "lr": "a positive number, or null",
    "seed": "an integer >= 0", "problem_seed": "an integer >= 0", "sharpness_every": "an integer >= 0 (0: never)",
    "weight_decay": "a number >= 0", "reg": "a number >= 0", "val_fraction": "a number in [0, 1) (0: no split)",
    "label_smoothing": "a number in [0, 1)", "warmup_epochs": "a number >= 0", "grad_clip": "a positive number, or null",
}
# Defaults that depend on other keys, as TrialConfig.validated fills them.
DERIVED_DEFAULTS = {
    "epochs": f"{DEFAULT_EPOCHS} (unless iterations is set)",
    "lr": f"{DEFAULT_LR:g} (unless a step_rule computes it)",
    "rho": "0 for sgd; the SAM family's default radius otherwise",
    "lam": "set by the optimizer (sam 1, usam 0, the other variants 1; unified needs it)",
    "importance_proxy": "loss for neural nets; null for synthetic problems",
    "importance_mix": "0.1 for neural nets; null for synthetic problems",
    "importance_refresh": "1 for neural nets; null for synthetic problems",
    "eval_every": "1 epoch; n_samples iterations for synthetic problems",
}
_COMMENT = re.compile(r"^\s+(\w+)\s*:[^=]*=.*?#\s*(.+?)\s*$")


def key_table() -> list[tuple[str, str, str, str]]:
    """(key, default, allowed values, meaning) for every TrialConfig field, in order."""
    hints = get_type_hints(TrialConfig)
    meanings = _field_comments()
    rows = []
    for f in fields(TrialConfig):
        default = DERIVED_DEFAULTS.get(f.name) or _yaml(None if f.default is MISSING else f.default)
        allowed = CHOICES[f.name]() if f.name in CHOICES else RANGES.get(f.name) or _from_type(hints[f.name])
        rows.append((f.name, default, allowed, meanings.get(f.name, "")))
    return rows


def _field_comments() -> dict[str, str]:
    """The trailing ``# comment`` of each field line in TrialConfig's source."""
    try:
        source = inspect.getsource(TrialConfig)
    except (OSError, TypeError):  # no source (a frozen install): the table loses its meanings only
        return {}
    return {m.group(1): m.group(2) for line in source.splitlines() if (m := _COMMENT.match(line))}


def _from_type(hint: Any) -> str:
    types = [t for t in (get_args(hint) or (hint,)) if t is not type(None)]
    optional = len(types) < len(get_args(hint) or (hint,))
    words = {bool: "true or false", int: "an integer >= 1", float: "a number", str: "text"}
    text = " or ".join(words.get(t, getattr(t, "__name__", str(t))) for t in types)
    return text + (", or null" if optional else "")


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def help_text() -> str:
    """The key list of ``sambench train --help``."""
    rows = key_table()
    width = max(len(key) for key, *_ in rows)
    lines = ["trial config keys (YAML file or --set KEY=VALUE), with default and allowed values:"]
    for key, default, allowed, meaning in rows:
        lines.append(f"  {key:<{width}}  default {default}; allowed: {allowed}")
        if meaning:
            lines.append(f"  {'':<{width}}  {meaning}")
    lines.append("full reference: docs/configuration.md")
    return "\n".join(lines)


def markdown() -> str:
    """docs/configuration.md."""
    head = """# Configuration: the trial keys

<!-- Generated by `python -m harness.config_doc > docs/configuration.md`; a test keeps it in sync. -->

Every trial is one `TrialConfig`. Its keys are what you write in a trial YAML file for
`sambench train FILE`, in `--set KEY=VALUE`, at the top level of a sweep spec, and under a
spec's `grid`. `sambench train` with no arguments runs the defaults below: digits, an MLP
and SAM for a few epochs. Committed specs name their settings explicitly rather than
relying on these defaults. `sambench train --help` prints the same list.

Every value is checked before any work starts: a wrong key, type, range or name fails in
one line naming the key, the value and what is allowed (exit code 2).

| key | default | allowed | meaning |
|---|---|---|---|
"""
    body = "".join(f"| `{key}` | {default} | {allowed} | {meaning} |\n" for key, default, allowed, meaning in
                   (tuple(cell.replace("|", "\\|") for cell in row) for row in key_table()))
    return head + body


if __name__ == "__main__":
    sys.stdout.write(markdown())
