"""MLflow: one run per trial in the experiment named after the sweep, the config as
params, every record as metrics at its step. The tracking URI is $MLFLOW_TRACKING_URI, else
a file store in ``<sweep>/trackers/mlflow/`` (offline; MLflow 3 calls file stores legacy and
needs MLFLOW_ALLOW_FILE_STORE=true for them, which this sets for that case only)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping

from harness.trackers import metrics_of


class MLflowTracker:
    def __init__(self, folder: Path, sweep: str) -> None:
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if uri is None:  # offline: MLflow 3 keeps its file store working only when asked to
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = folder.resolve().as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(sweep)
        self.experiment = found.experiment_id if found else self.client.create_experiment(sweep)
        self.runs: dict[str, str] = {}

    def start(self, trial_id: str, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment, run_name=trial_id, tags={"sambench.trial_id": trial_id})
        self.runs[trial_id] = run.info.run_id
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in config.items()])

    def log(self, trial_id: str, record: Mapping[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in metrics_of(record).items()]
        self.client.log_batch(self.runs[trial_id], metrics=metrics)

    def finish(self, trial_id: str, status: str) -> None:
        self.client.set_terminated(self.runs.pop(trial_id), status="FINISHED" if status != "error" else "FAILED")


TRACKER = MLflowTracker
