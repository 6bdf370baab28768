"""MLflow adapter: the only module that imports mlflow.

The job driver owns one MLflow run per experiment (:class:`ExperimentRun`); training workers log
their per-epoch metrics into it through :func:`log_epoch_metrics`. A run that does not finish
cleanly ends FAILED with the reason in the ``flywheel.failure_reason`` tag, never RUNNING.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import mlflow
import mlflow.pytorch
import numpy as np
from mlflow import MlflowClient
from mlflow.data.numpy_dataset import from_numpy
from mlflow.entities import Metric, Param
from mlflow.models import infer_signature

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]

TAG_JOB_ID = "flywheel.job_id"
TAG_TEAM = "flywheel.team"
TAG_SPEC_SHA256 = "flywheel.spec_sha256"
TAG_FAILURE_REASON = "flywheel.failure_reason"
TAG_RESUMED_FROM_EPOCH = "flywheel.resumed_from_epoch"
TAG_SEARCH_ID = "flywheel.search_id"
TAG_SEARCH_STAGE = "flywheel.stage"
TAG_TRIAL_STATE = "flywheel.trial_state"

_MAX_TAG_CHARS = 5000
_PARAMS_PER_BATCH = 100


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version in the MLflow Model Registry."""

    name: str
    version: str
    model_uri: str


class ExperimentRun:
    """The MLflow run of one experiment, driven from the job driver."""

    def __init__(self, tracking_uri: str, experiment: str, run_name: str, tags: dict[str, str]):
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment(experiment)
        self._run = mlflow.start_run(run_name=run_name, tags=tags)
        self.run_id: str = self._run.info.run_id
        self.experiment_id: str = self._run.info.experiment_id
        self.ended = False

    def log_params(self, params: dict[str, Any]) -> None:
        """Log parameters, batched (MLflow accepts at most 100 per call)."""
        items = [Param(k, str(v)) for k, v in sorted(params.items())]
        client = MlflowClient()
        for start in range(0, len(items), _PARAMS_PER_BATCH):
            client.log_batch(self.run_id, params=items[start : start + _PARAMS_PER_BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log metrics at an optional step."""
        mlflow.log_metrics(metrics, step=step)

    def set_tags(self, tags: dict[str, str]) -> None:
        """Set tags on the run."""
        mlflow.set_tags(tags)

    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None:
        """Store a JSON document as an artifact."""
        mlflow.log_dict(data, artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Store a matplotlib figure as an image artifact."""
        mlflow.log_figure(figure, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Store text (such as the spec) as an artifact."""
        mlflow.log_text(text, artifact_file)

    def log_dataset(
        self,
        features: np.ndarray,
        targets: np.ndarray,
        name: str,
        digest: str,
    ) -> None:
        """Record the training dataset and its fingerprint as the run's input."""
        dataset = from_numpy(features, targets=targets, name=name, digest=digest)
        mlflow.log_input(dataset, context="training")

    def log_model(
        self,
        model: Any,
        input_example: np.ndarray,
        output_example: np.ndarray,
        code_paths: list[str],
        pip_requirements: list[str],
        registered_model: str | None,
    ) -> RegisteredVersion | None:
        """Log the final model with signature and input example; register it when named."""
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            signature=infer_signature(input_example, output_example),
            input_example=input_example,
            code_paths=code_paths,
            pip_requirements=pip_requirements,
            registered_model_name=registered_model,
        )
        if registered_model is None or info.registered_model_version is None:
            return None
        version = str(info.registered_model_version)
        return RegisteredVersion(registered_model, version, f"models:/{registered_model}/{version}")

    def end(self, status: RunStatus, reason: str | None = None) -> None:
        """End the run once; a FAILED or KILLED run records why. Later calls do nothing."""
        if self.ended:
            return
        self.ended = True
        if reason:
            mlflow.set_tag(TAG_FAILURE_REASON, reason[-_MAX_TAG_CHARS:])
        mlflow.end_run(status=status)


def log_epoch_metrics(tracking_uri: str, run_id: str, metrics: dict[str, float], step: int) -> None:
    """Log one epoch's metrics into an existing run (used by the rank-0 training worker)."""
    now_ms = int(time.time() * 1000)
    batch = [Metric(k, float(v), now_ms, step) for k, v in sorted(metrics.items())]
    MlflowClient(tracking_uri).log_batch(run_id, metrics=batch)


def set_run_tag(tracking_uri: str, run_id: str, key: str, value: str) -> None:
    """Set one tag on an existing run (used by training workers)."""
    MlflowClient(tracking_uri).set_tag(run_id, key, value)


def start_child_run(
    tracking_uri: str,
    parent: ExperimentRun,
    run_name: str,
    tags: dict[str, str],
    params: dict[str, Any],
) -> str:
    """Open a run nested under ``parent`` (one per search trial); returns its id."""
    client = MlflowClient(tracking_uri)
    run = client.create_run(
        parent.experiment_id,
        run_name=run_name,
        tags={**tags, "mlflow.parentRunId": parent.run_id},
    )
    items = [Param(k, str(v)) for k, v in sorted(params.items())]
    if items:
        client.log_batch(run.info.run_id, params=items)
    return str(run.info.run_id)


def end_child_run(
    tracking_uri: str, run_id: str, status: RunStatus, tags: dict[str, str] | None = None
) -> None:
    """Tag and end a child run."""
    client = MlflowClient(tracking_uri)
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, value[-_MAX_TAG_CHARS:])
    client.set_terminated(run_id, status=status)


def set_model_alias(tracking_uri: str, version: RegisteredVersion, alias: str) -> None:
    """Point ``alias`` of a registered model at ``version``."""
    MlflowClient(tracking_uri).set_registered_model_alias(version.name, alias, version.version)


def end_stale_runs(tracking_uri: str, parent: ExperimentRun, search_id: str) -> None:
    """End as KILLED the runs of an interrupted search that were left RUNNING.

    The earlier jobs' own runs may have ended (KILLED by ``flywheel stop``) while their trials'
    runs did not: every RUNNING run under any earlier run of the search is ended.
    """
    client = MlflowClient(tracking_uri)
    earlier = client.search_runs(
        [parent.experiment_id], filter_string=f"tags.`{TAG_SEARCH_ID}` = '{search_id}'"
    )
    earlier_ids = {r.info.run_id for r in earlier if r.info.run_id != parent.run_id}
    running = client.search_runs(
        [parent.experiment_id], filter_string="attributes.status = 'RUNNING'"
    )
    for run in running:
        own = run.info.run_id in earlier_ids
        if own or run.data.tags.get("mlflow.parentRunId") in earlier_ids:
            client.set_tag(run.info.run_id, TAG_FAILURE_REASON, "its job ended before it did")
            client.set_terminated(run.info.run_id, status="KILLED")
