"""Experiment trackers: every evaluation record of every trial, with its step, and the
trial config as hyperparameters, sent to TensorBoard, MLflow or Weights & Biases.

One file per tracker, each a small class with ``start`` (a trial begins: its config),
``log`` (one record at one step) and ``finish`` (its status). They know nothing of Ray:
sweep.py's ``TrackerCallback`` feeds them from the driver, the one process that sees every
record (Ray Tune's own logger callbacks log one Tune result per step, while sambench sends
several records per result, each with its own epoch). Trackers are optional extras: asking
for one that is not installed is a one-line error naming the extra. A tracker that fails
(no disk, a bad URI) is switched off with one line on stderr and one in
``<sweep>/trackers/errors.log``; the trial and its Parquet results go on untouched.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Mapping, Protocol

from harness.errors import ConfigError

# tracker name -> (module in this package, the package it needs)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("harness.trackers.tensorboard", "tensorboard"),
    "mlflow": ("harness.trackers.mlflow", "mlflow"),
    "wandb": ("harness.trackers.wandb", "wandb"),
}
EXTRA = "pip install 'sambench[trackers]'"


class Tracker(Protocol):
    """What a tracker implements; ``folder`` is ``<sweep>/trackers``, ``sweep`` its name."""

    def start(self, trial_id: str, config: Mapping[str, Any]) -> None: ...
    def log(self, trial_id: str, record: Mapping[str, Any], step: int) -> None: ...
    def finish(self, trial_id: str, status: str) -> None: ...
    # optional: close(self) -> None, called once when the run ends


def require(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Check the names and that each tracker's package is installed (one-line errors)."""
    for name in names:
        if name not in TRACKERS:
            raise ConfigError("--tracker", name, ", ".join(TRACKERS))
        if importlib.util.find_spec(TRACKERS[name][1]) is None:
            raise ConfigError("--tracker", name, f"an installed tracker: {name} needs the "
                              f"{TRACKERS[name][1]} package ({EXTRA})")
    return tuple(dict.fromkeys(names))


def step_of(config: Mapping[str, Any], record: Mapping[str, Any]) -> int:
    """The x-axis of a record: the epoch for epoch-based trials, else the iteration."""
    if config.get("epochs") is not None and record.get("epoch") is not None:
        return int(round(record["epoch"]))
    return int(record["iteration"])


def metrics_of(record: Mapping[str, Any]) -> dict[str, float]:
    """The measured numbers of a record (nulls are not sent)."""
    return {k: float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "trial_id"}


class Trackers:
    """Several trackers behind one guard: a tracker's first error switches it off and is
    recorded once; nothing it raises reaches the caller."""

    def __init__(self, names: tuple[str, ...] | list[str], folder: str | Path, sweep: str) -> None:
        self.folder, self.sweep = Path(folder), sweep
        self.active: dict[str, Tracker] = {}
        self.configs: dict[str, Mapping[str, Any]] = {}
        for name in require(names):
            self._guard(name, lambda name=name: self.active.__setitem__(name, self._build(name)))

    def _build(self, name: str) -> Tracker:
        module = importlib.import_module(TRACKERS[name][0])
        return module.TRACKER(self.folder / name, self.sweep)

    def start(self, trial_id: str, config: Mapping[str, Any]) -> None:
        self.configs[trial_id] = dict(config)
        for name, tracker in list(self.active.items()):
            self._guard(name, lambda t=tracker: t.start(trial_id, config))

    def log(self, trial_id: str, records: list[Mapping[str, Any]]) -> None:
        config = self.configs.get(trial_id, {})
        for name, tracker in list(self.active.items()):
            for record in records:
                if not self._guard(name, lambda t=tracker, r=record: t.log(trial_id, r, step_of(config, r))):
                    break

    def finish(self, trial_id: str, status: str) -> None:
        for name, tracker in list(self.active.items()):
            self._guard(name, lambda t=tracker: t.finish(trial_id, status))
        self.configs.pop(trial_id, None)

    def close(self) -> None:
        """The run is over: trackers that buffer (W&B's service) flush and stop."""
        for name, tracker in list(self.active.items()):
            if hasattr(tracker, "close"):
                self._guard(name, tracker.close)

    def _guard(self, name: str, call) -> bool:
        try:
            call()
            return True
        except Exception as error:  # a tracker never takes a trial or its Parquet rows down
            self.active.pop(name, None)
            line = f"tracker {name} failed and is off for this run ({type(error).__name__}: " \
                   f"{' '.join(str(error).split())[:300]}); Parquet results are unaffected"
            print(f"sambench: {line}", file=sys.stderr, flush=True)
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                with open(self.folder / "errors.log", "a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
            except OSError:
                pass  # the disk may be what failed; stderr has the line
            return False
