"""MLflow adapter: the only module that imports mlflow.

The job driver owns one MLflow run per experiment (:class:`ExperimentRun`); training workers log
their per-epoch metrics into it through :func:`log_epoch_metrics`. A run that does not finish
cleanly ends FAILED with the reason in the ``flywheel.failure_reason`` tag, never RUNNING.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import mlflow
import mlflow.artifacts
import mlflow.models
import mlflow.pytorch
import numpy as np
from mlflow import MlflowClient
from mlflow.data.numpy_dataset import from_numpy
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from flywheel.errors import PlatformError

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]

TAG_JOB_ID = "flywheel.job_id"
TAG_TEAM = "flywheel.team"
TAG_SPEC_SHA256 = "flywheel.spec_sha256"
TAG_FAILURE_REASON = "flywheel.failure_reason"
TAG_RESUMED_FROM_EPOCH = "flywheel.resumed_from_epoch"
TAG_SEARCH_ID = "flywheel.search_id"
TAG_SEARCH_STAGE = "flywheel.stage"
TAG_TRIAL_STATE = "flywheel.trial_state"
TAG_SNAPSHOT = "flywheel.snapshot"
#: Model version tag: the artifact path, in the version's run, of its training profile.
TAG_PROFILE = "flywheel.profile"
TAG_SNAPSHOT_URL = "flywheel.snapshot_url"
#: ``<model>/<version>`` a retraining started from, and the fingerprint of its feedback set.
TAG_RETRAIN_OF = "flywheel.retrain_of"
TAG_FEEDBACK_SET = "flywheel.feedback_set"

_MAX_TAG_CHARS = 5000
_PARAMS_PER_BATCH = 100


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version in the MLflow Model Registry."""

    name: str
    version: str
    model_uri: str


@dataclass(frozen=True)
class SnapshotUse:
    """A run that trained on a data snapshot."""

    run_id: str
    run_name: str
    experiment: str
    status: str
    start_time_ms: int
    fingerprint: str
    url: str
    team: str | None  # the run's flywheel.team tag (None: a run started outside an experiment)


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
        source: str,
        context: str,
    ) -> None:
        """Record a dataset (source URL and digest) as one of the run's inputs."""
        with warnings.catch_warnings():
            # MLflow registers the local artifact source twice and warns that a local path is
            # ambiguous between the two; both are the same class of source.
            warnings.filterwarnings("ignore", message="The specified dataset source")
            dataset = from_numpy(features, source=source, targets=targets, name=name, digest=digest)
        mlflow.log_input(dataset, context=context)

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


def snapshot_uses(tracking_uri: str, experiment: str) -> list[SnapshotUse]:
    """Runs of the MLflow experiment ``experiment`` (or ``<team>/<experiment>``) with a snapshot.

    Newest first. Names are matched here rather than in a filter string, so that any name is
    safe to pass.
    """
    client = MlflowClient(tracking_uri)
    matching = {
        e.experiment_id: e.name
        for e in client.search_experiments()
        if e.name == experiment or e.name.endswith(f"/{experiment}")
    }
    if not matching:
        return []
    runs = client.search_runs(
        list(matching),
        filter_string=f"tags.`{TAG_SNAPSHOT}` LIKE '%'",
        order_by=["attributes.start_time DESC"],
    )
    return [
        SnapshotUse(
            run_id=r.info.run_id,
            run_name=r.info.run_name or r.info.run_id,
            experiment=matching[r.info.experiment_id],
            status=r.info.status,
            start_time_ms=int(r.info.start_time or 0),
            fingerprint=r.data.tags[TAG_SNAPSHOT],
            url=r.data.tags.get(TAG_SNAPSHOT_URL, ""),
            team=r.data.tags.get(TAG_TEAM),
        )
        for r in runs
    ]


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


@dataclass(frozen=True)
class JobRun:
    """An experiment's own MLflow run (not a trial's), for links to MLflow's UI."""

    run_id: str
    experiment_id: str
    status: str
    start_time_ms: int


def job_runs(tracking_uri: str, job_id: str) -> list[JobRun]:
    """The runs a job's driver opened (trials' child runs left out), oldest first."""
    client = MlflowClient(tracking_uri)
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return []
    runs = client.search_runs(
        experiment_ids, filter_string=f"tags.`{TAG_JOB_ID}` = '{job_id}'", max_results=100
    )
    own = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return sorted(
        (JobRun(r.info.run_id, r.info.experiment_id, r.info.status, r.info.start_time or 0)
         for r in own),
        key=lambda r: r.start_time_ms,
    )  # fmt: skip


def version_registered_by_job(tracking_uri: str, job_id: str, model: str) -> str | None:
    """The newest version of ``model`` that a run of the job's driver registered; None if none.

    Raises PlatformError when MLflow does not answer.
    """
    client = MlflowClient(tracking_uri)
    versions: list[int] = []
    try:
        for run in job_runs(tracking_uri, job_id):
            found = client.search_model_versions(f"name = '{model}' and run_id = '{run.run_id}'")
            versions.extend(int(v.version) for v in found)
    except (MlflowException, OSError) as e:
        raise PlatformError(f"MLflow did not say which version job {job_id} registered: {e}") from e
    return str(max(versions)) if versions else None


def end_runs_of_job(tracking_uri: str, job_id: str, reason: str) -> int:
    """End as KILLED every run a vanished job left RUNNING (its own and its trials'); returns
    how many. The control plane calls it when the cluster no longer knows the job."""
    client = MlflowClient(tracking_uri)
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return 0
    running = client.search_runs(
        experiment_ids,
        filter_string=f"tags.`{TAG_JOB_ID}` = '{job_id}' and attributes.status = 'RUNNING'",
    )
    for run in running:
        client.set_tag(run.info.run_id, TAG_FAILURE_REASON, reason)
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(running)


TAG_ROLLOUT_DECISION = "flywheel.rollout.decision"
TAG_ROLLOUT_REASON = "flywheel.rollout.reason"
TAG_SERVE_SPEC = "flywheel.serve_spec"
#: MLflow experiment of every rollout's run, one run per rollout action.
ROLLOUT_EXPERIMENT = "flywheel/rollouts"


@dataclass(frozen=True)
class TensorInfo:
    """One input or output tensor of a model signature: name, numpy dtype, shape (-1: any)."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ServingModel:
    """A registered model version loaded for serving, with its signature."""

    module: Any
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


def load_serving_model(tracking_uri: str, model_uri: str) -> ServingModel:
    """Load a PyTorch model from the registry with the tensors of its signature."""
    mlflow.set_tracking_uri(tracking_uri)
    module = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    signature = mlflow.models.get_model_info(model_uri).signature
    inputs = _tensors(signature.inputs if signature else None, "input")
    outputs = _tensors(signature.outputs if signature else None, "output")
    return ServingModel(module, inputs, outputs)


def resolve_model_version(
    tracking_uri: str, name: str, version: str | None = None, alias: str | None = None
) -> str | None:
    """The version called ``version`` or ``alias`` (or the latest) of ``name``; None if absent."""
    client = MlflowClient(tracking_uri)
    try:
        if version is not None:
            return str(client.get_model_version(name, version).version)
        if alias is not None:
            return str(client.get_model_version_by_alias(name, alias).version)
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    return str(max(int(v.version) for v in versions)) if versions else None


@dataclass(frozen=True)
class ModelOrigin:
    """Where a registered model's latest version came from: its run's team and job."""

    version: str
    team: str | None  # None: registered outside an experiment
    job_id: str | None


def model_origin(tracking_uri: str, name: str) -> ModelOrigin | None:
    """The latest version of ``name`` with its run's ``flywheel.team`` and ``flywheel.job_id``
    tags; None when the model is unknown."""
    client = MlflowClient(tracking_uri)
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    if not versions:
        return None
    latest = max(versions, key=lambda v: int(v.version))
    tags: dict[str, str] = {}
    if latest.run_id:
        try:
            tags = client.get_run(latest.run_id).data.tags
        except MlflowException:
            tags = {}
    team, job_id = tags.get(TAG_TEAM) or None, tags.get(TAG_JOB_ID) or None
    return ModelOrigin(str(latest.version), team, job_id)


def model_team(tracking_uri: str, name: str) -> str | None:
    """The team that owns registered model ``name``: the ``flywheel.team`` tag of the run that
    produced its latest version. None when the model is unknown or was registered outside an
    experiment (then only the admin may serve it)."""
    origin = model_origin(tracking_uri, name)
    return origin.team if origin is not None else None


def set_alias(tracking_uri: str, name: str, alias: str, version: str) -> None:
    """Point ``alias`` of model ``name`` at ``version``."""
    MlflowClient(tracking_uri).set_registered_model_alias(name, alias, version)


def delete_alias(tracking_uri: str, name: str, alias: str) -> None:
    """Remove ``alias`` from model ``name``; nothing happens if it is not set."""
    try:
        MlflowClient(tracking_uri).delete_registered_model_alias(name, alias)
    except MlflowException:
        return


def model_version_tag(tracking_uri: str, name: str, version: str, key: str) -> str | None:
    """The tag ``key`` of a model version, or None."""
    tags = MlflowClient(tracking_uri).get_model_version(name, version).tags or {}
    value = tags.get(key)
    return str(value) if value is not None else None


def version_artifact_dict(
    tracking_uri: str, name: str, version: str, tag: str
) -> dict[str, Any] | None:
    """The JSON artifact that the version tag ``tag`` names in the version's run; None if none."""
    client = MlflowClient(tracking_uri)
    try:
        model_version = client.get_model_version(name, version)
    except MlflowException:
        return None
    path = (model_version.tags or {}).get(tag)
    if not path or not model_version.run_id:
        return None
    mlflow.set_tracking_uri(tracking_uri)
    try:
        data: dict[str, Any] = mlflow.artifacts.load_dict(f"runs:/{model_version.run_id}/{path}")
    except (MlflowException, OSError):
        return None
    return data


@dataclass(frozen=True)
class VersionRecord:
    """What MLflow holds about a model version and the run that trained it."""

    params: dict[str, str]
    metrics: dict[str, float]
    run_tags: dict[str, str]
    version_tags: dict[str, str]
    challenger_modes: tuple[str, ...]  # rollout modes it was a challenger in


def version_record(tracking_uri: str, name: str, version: str) -> VersionRecord:
    """Params, metrics and tags of the version's run, its own tags, and its rollouts."""
    client = MlflowClient(tracking_uri)
    model_version = client.get_model_version(name, version)
    run = client.get_run(model_version.run_id) if model_version.run_id else None
    modes: list[str] = []
    rollouts = client.get_experiment_by_name(ROLLOUT_EXPERIMENT)
    if rollouts is not None:
        for r in client.search_runs([rollouts.experiment_id], max_results=1000):
            p = r.data.params
            if p.get("model") == name and version in (p.get("challenger"), p.get("version")):
                modes.append(p.get("mode", ""))
    return VersionRecord(
        params=dict(run.data.params) if run else {},
        metrics=dict(run.data.metrics) if run else {},
        run_tags=dict(run.data.tags) if run else {},
        version_tags=dict(model_version.tags or {}),
        challenger_modes=tuple(m for m in modes if m),
    )


def log_version_artifact(
    tracking_uri: str, name: str, version: str, data: dict[str, Any], artifact_file: str
) -> None:
    """Store a JSON document as an artifact of the run that trained the version."""
    client = MlflowClient(tracking_uri)
    run_id = client.get_model_version(name, version).run_id
    if run_id:
        client.log_dict(run_id, data, artifact_file)


def set_model_version_tag(
    tracking_uri: str, version: RegisteredVersion, key: str, value: str
) -> None:
    """Set the tag ``key`` of a model version."""
    MlflowClient(tracking_uri).set_model_version_tag(version.name, version.version, key, value)


class RolloutRun:
    """The MLflow run that records one rollout action: its plan, each step, the decision."""

    def __init__(self, tracking_uri: str, run_name: str, params: dict[str, Any]) -> None:
        self._client = MlflowClient(tracking_uri)
        experiment_id = ensure_experiment(tracking_uri, ROLLOUT_EXPERIMENT)
        self.run_id: str = self._client.create_run(experiment_id, run_name=run_name).info.run_id
        items = [Param(k, str(v)[:_MAX_TAG_CHARS]) for k, v in sorted(params.items())]
        for start in range(0, len(items), _PARAMS_PER_BATCH):
            self._client.log_batch(self.run_id, params=items[start : start + _PARAMS_PER_BATCH])

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        """Record what was observed during one step."""
        now_ms = int(time.time() * 1000)
        batch = [Metric(k, float(v), now_ms, step) for k, v in sorted(metrics.items())]
        self._client.log_batch(self.run_id, metrics=batch)

    def finish(self, decision: str, reason: str, status: RunStatus = "FINISHED") -> None:
        """Record the decision and end the run."""
        self._client.set_tag(self.run_id, TAG_ROLLOUT_DECISION, decision)
        self._client.set_tag(self.run_id, TAG_ROLLOUT_REASON, reason[-_MAX_TAG_CHARS:])
        self._client.set_terminated(self.run_id, status=status)


def ensure_experiment(tracking_uri: str, name: str) -> str:
    """The id of the MLflow experiment ``name``, created when missing (by whoever asks: its
    creator gets MANAGE on it)."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:  # created meanwhile by another process
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def _tensors(schema: Any, prefix: str) -> tuple[TensorInfo, ...]:
    """Tensor specs of a signature schema; unnamed tensors are called ``<prefix>-<index>``."""
    if schema is None or not schema.is_tensor_spec():
        return ()
    return tuple(
        TensorInfo(spec.name or f"{prefix}-{i}", str(spec.type), tuple(spec.shape))
        for i, spec in enumerate(schema.inputs)
    )
