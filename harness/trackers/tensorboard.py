"""TensorBoard: one event folder per trial under ``<sweep>/trackers/tensorboard/``, every
record as scalars at its step, the config through TensorBoard's hparams plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from harness.trackers import metrics_of


class TensorBoardTracker:
    def __init__(self, folder: Path, sweep: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder, self.writer_cls = folder, SummaryWriter
        self.writers: dict[str, Any] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self.last: dict[str, dict[str, float]] = {}

    def start(self, trial_id: str, config: Mapping[str, Any]) -> None:
        self.writers[trial_id] = self.writer_cls(log_dir=str(self.folder / trial_id))
        # hparams takes numbers, text and bools; a null becomes the text "null"
        self.configs[trial_id] = {k: ("null" if v is None else v) for k, v in config.items()}

    def log(self, trial_id: str, record: Mapping[str, Any], step: int) -> None:
        writer = self.writers[trial_id]
        metrics = metrics_of(record)
        for key, value in metrics.items():
            writer.add_scalar(key, value, global_step=step)
        self.last[trial_id] = metrics

    def finish(self, trial_id: str, status: str) -> None:
        writer = self.writers.pop(trial_id)
        final = {f"final/{k}": v for k, v in self.last.pop(trial_id, {}).items()}
        writer.add_hparams(self.configs.pop(trial_id), final or {"final/none": 0.0}, run_name=".")
        writer.close()


TRACKER = TensorBoardTracker
