"""Weights & Biases: one run per trial (grouped by sweep), the config as the run config,
every record logged at its step. Offline unless $WANDB_MODE says otherwise: the run
folders land in ``<sweep>/trackers/wandb/`` for a later ``wandb sync``. The project is
$WANDB_PROJECT, else "sambench"."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from harness.trackers import metrics_of


class WandbTracker:
    def __init__(self, folder: Path, sweep: str) -> None:
        import wandb

        self.wandb, self.folder, self.sweep = wandb, folder, sweep
        self.runs: dict[str, Any] = {}

    def start(self, trial_id: str, config: Mapping[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.runs[trial_id] = self.wandb.init(
            project=os.environ.get("WANDB_PROJECT", "sambench"), group=self.sweep, name=trial_id, id=trial_id,
            config=dict(config), dir=str(self.folder), mode=os.environ.get("WANDB_MODE", "offline"),
            reinit="create_new", settings=self.wandb.Settings(silent=True, console="off"),
        )

    def log(self, trial_id: str, record: Mapping[str, Any], step: int) -> None:
        self.runs[trial_id].log(metrics_of(record), step=step)

    def finish(self, trial_id: str, status: str) -> None:
        self.runs.pop(trial_id).finish(exit_code=1 if status == "error" else 0)

    def close(self) -> None:
        """Stop W&B's background service, which writes the run logs out."""
        self.wandb.teardown()


TRACKER = WandbTracker
