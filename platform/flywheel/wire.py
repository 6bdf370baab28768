"""Bodies of the control plane API (``/api/v1``), shared by the server and the client.

Pure pydantic. The server builds them; the client parses them leniently (unknown fields are
ignored), so that a newer server does not break an older client.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flywheel.plans import FeedbackSet
from flywheel.serving.stats import VersionStats
from flywheel.specs.serving import RolloutMode
from flywheel.specs.teams import Resources


class WireModel(BaseModel):
    """Lenient on reading: fields a newer server adds are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class ProblemView(WireModel):
    """One problem of a refused spec."""

    file: str = Field(description="File, relative to the uploaded folder.")
    line: int | None = Field(description="Line in the file, when known.")
    path: str = Field(description="Dotted field path.")
    message: str = Field(description="What is wrong and what to do.")


class ErrorBody(WireModel):
    """Every error answer: one line a user can act on."""

    error: str = Field(description="What went wrong and what to do.")
    kind: str = Field(default="FlywheelError", description="Name of the flywheel error class.")
    problems: list[ProblemView] = Field(
        default_factory=list, description="Every problem of a refused spec."
    )


class TransitionView(WireModel):
    """One state change of an experiment."""

    from_state: str | None = Field(description="State before (none for the submission).")
    to_state: str = Field(description="State after.")
    reason: str = Field(description="Why it changed.")
    at_s: float = Field(description="When, in epoch seconds.")


class ExperimentView(WireModel):
    """An experiment as the control plane keeps it."""

    id: str = Field(description="Experiment id (also its first Ray job's submission id).")
    team: str = Field(description="Team of the token that submitted it.")
    name: str = Field(description="Name from its spec.")
    state: str = Field(description="QUEUED, ADMITTED, RUNNING, PREEMPTING, PREEMPTED, ...")
    priority: int = Field(description="Priority value; higher is admitted first.")
    submitted_at_s: float = Field(description="Submission time, epoch seconds.")
    demand: Resources = Field(description="Peak demand of its plan.")
    attempt: int = Field(description="Ray jobs started so far (resumes after preemption add one).")
    ray_job_id: str | None = Field(description="Submission id of its current Ray job.")
    gpu_minutes_lost: float = Field(description="GPU-minutes of work lost to preemption.")
    last_save_s: float | None = Field(
        default=None,
        description="When its running job last saved work it resumes from (a checkpoint or a "
        "finished trial), epoch seconds; preemption prefers victims that lose the least.",
    )
    message: str = Field(description="Last message from the cluster, if any.")
    transitions: list[TransitionView] = Field(
        default_factory=list, description="State history, oldest first."
    )

    @property
    def finished(self) -> bool:
        return self.state in ("SUCCEEDED", "FAILED", "STOPPED")


class TeamUsage(WireModel):
    """A team's usage against its quota."""

    name: str = Field(description="Team name.")
    priority: int = Field(description="Priority value of its experiments.")
    quota: Resources = Field(description="Nominal quota.")
    borrowing_limit: Resources = Field(description="Most it may borrow beyond its quota.")
    usage: Resources = Field(description="What its admitted experiments hold now.")
    admitted: int = Field(description="Experiments holding resources.")
    queued: int = Field(description="Experiments waiting for admission.")
    max_concurrent_experiments: int = Field(description="Cap on admitted experiments.")
    gpu_minutes_lost: float = Field(description="GPU-minutes lost to preemption, all time.")


class QueueEntry(WireModel):
    """One waiting experiment and why it waits."""

    experiment: str = Field(description="Experiment id.")
    team: str = Field(description="Its team.")
    name: str = Field(description="Its name.")
    state: str = Field(description="QUEUED or PREEMPTED.")
    priority: int = Field(description="Priority value.")
    position: int = Field(description="1-based position in its team's queue.")
    reason: str = Field(description="Which quota, who holds it, what would admit it.")
    blocking_resource: str | None = Field(description="cpu, gpu, memory_gib, or none.")
    holders: list[str] = Field(description="Experiments holding the contended quota.")


class QueueView(WireModel):
    """The admission queue and every team's usage."""

    capacity: Resources = Field(description="What the cluster offers.")
    waiting: list[QueueEntry] = Field(description="Waiting experiments, in admission order.")
    teams: list[TeamUsage] = Field(description="Usage against quota per team.")


class Explanation(WireModel):
    """Why one experiment waits (or that it does not)."""

    experiment: str = Field(description="Experiment id.")
    state: str = Field(description="Its state.")
    waiting: bool = Field(description="Whether it waits for admission.")
    position: int | None = Field(description="1-based position in its team's queue.")
    reason: str = Field(description="Why it waits, or what it does.")
    blocking_resource: str | None = Field(description="cpu, gpu, memory_gib, or none.")
    holders: list[str] = Field(description="Experiments holding the contended quota.")
    estimate_s: float | None = Field(
        description="Seconds until admission expected from the holders' expected durations; "
        "none when that cannot be told."
    )
    estimate_reason: str = Field(
        default="", description="What the estimate rests on, or why there is none."
    )


class TokenCreated(WireModel):
    """A new token: shown once, only its hash is kept."""

    team: str = Field(description="Team the token acts for.")
    token: str = Field(description="The token; store it now, it cannot be shown again.")


class WhoAmI(WireModel):
    """Who the token belongs to."""

    team: str | None = Field(description="Team of the token; none for the admin.")
    admin: bool = Field(description="Whether the token is the admin's.")


class MlflowAccess(WireModel):
    """How the caller reaches MLflow as its team (the admin token: as the admin)."""

    tracking_uri: str = Field(description="MLflow tracking URI.")
    username: str | None = Field(
        default=None, description="MLflow user name; none when MLflow runs without authentication."
    )
    password: str | None = Field(
        default=None, description="Its password (keep it as secret as the token that got it)."
    )


class InferenceOutput(BaseModel):
    """One output tensor of an OIP v2 answer (fields the protocol may add are kept)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(description="Output name.")
    datatype: str = Field(description="OIP v2 datatype, e.g. FP32.")
    shape: list[int] = Field(description="Tensor shape.")
    data: list[Any] = Field(default_factory=list, description="Row-major values.")


class InferenceAnswer(BaseModel):
    """An OIP v2 inference answer from the model gateway (fields it may add are kept)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    model_name: str = Field(description="The model that answered.")
    model_version: str = Field(description="The version that answered.")
    id: str | None = Field(default=None, description="The request's id, echoed.")
    outputs: list[InferenceOutput] = Field(default_factory=list, description="Output tensors.")


class FeedbackAnswer(WireModel):
    """What the gateway recorded for a reported label."""

    id: str = Field(description="The answered request's id.")
    model_version: str = Field(description="The version that answered it.")
    correct: bool | None = Field(
        default=None, description="Whether its prediction was right; none if it had no class."
    )


class ServeResult(WireModel):
    """What a serving operation left: the model's champion and challenger, and how long it took."""

    action: str = Field(description="The operation: deploy, start canary, promote, ...")
    model: str = Field(description="Registered model name.")
    generation: int = Field(description="Generation of the serving document after it.")
    champion: str | None = Field(description="Champion version (None: not served).")
    challenger: str | None = Field(description="Challenger version, when there is one.")
    mode: RolloutMode | None = Field(description="The challenger's mode.")
    challenger_percent: float = Field(description="Traffic share of the challenger, in %.")
    elapsed_s: float = Field(description="Seconds the operation took.")
    decision: str | None = Field(
        default=None, description="A progressive rollout's end: promote or rollback."
    )
    reason: str | None = Field(default=None, description="Why the rollout ended so.")

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(v for v in (self.champion, self.challenger) if v is not None)


class ServedVersion(WireModel):
    """One served version: its role, traffic share, replicas and what was observed of it."""

    model: str = Field(description="Registered model name.")
    version: str = Field(description="Model version.")
    role: str = Field(
        description="champion, challenger (a canary or progressive rollout) or shadow."
    )
    traffic_percent: float = Field(description="Share of the model's requests it answers, in %.")
    replicas: int = Field(description="Running ingress replicas of the model.")
    stats: VersionStats = Field(description="Requests, latency and accuracy observed.")


class RolloutStep(WireModel):
    """One judgement of a progressive rollout's current step."""

    ended: bool = Field(description="True when the rollout ended (or none runs).")
    result: ServeResult | None = Field(description="The final result, once it ended.")


class ClusterView(WireModel):
    """Facts only the cluster knows, for clients."""

    serve_url: str = Field(description="Base URL of the model gateway (OIP v2).")
    tracking_uri: str = Field(description="MLflow tracking URI.")
    storage_root: str = Field(description="The cluster's default storage root.")


class FeatureScore(WireModel):
    """How far one feature drifted from its training profile."""

    name: str = Field(description="Feature (`x<i>` raw value, `p<i>` projection component).")
    psi: float = Field(description="Population stability index against the training bins.")
    ks_statistic: float = Field(description="Two-sample Kolmogorov-Smirnov statistic.")
    ks_p_value: float = Field(description="Its p-value (before the Bonferroni correction).")
    drifted: bool = Field(description="PSI above the threshold, or KS significant.")


class VersionReport(WireModel):
    """What the monitor observed of one version in the window."""

    version: str = Field(description="Model version.")
    requests: int = Field(description="Logged requests of the version in the window.")
    errors: int = Field(description="Of those, failed.")
    error_rate: float | None = Field(description="errors / requests; null without requests.")
    latency_p50_ms: float | None = Field(description="Median latency of answered requests.")
    latency_p95_ms: float | None = Field(description="95th percentile latency.")
    feedback: int = Field(description="Feedback records with a prediction to compare.")
    online_accuracy: float | None = Field(description="Share of feedback the version got right.")
    profiled: bool = Field(description="Whether the version has a training profile.")
    drift: bool = Field(description="The version's verdict.")
    enough_requests: bool = Field(description="Whether the window was large enough to judge.")
    reasons: list[str] = Field(description="Why it drifted, one line per test.")
    multivariate_p_value: float | None = Field(description="MMD test on the projection.")
    prediction_p_value: float | None = Field(description="Prediction distribution test.")
    features: list[FeatureScore] = Field(description="Per-feature scores.")


class AlertState(WireModel):
    """The drift alert of a model, stored under the storage root between checks."""

    active: bool = Field(default=False, description="Whether drift is alerted now.")
    since_s: float | None = Field(default=None, description="When the alert was raised.")
    reasons: list[str] = Field(default_factory=list, description="Why, as of the last check.")
    checked_s: float | None = Field(default=None, description="Time of the last check.")


class MonitorReport(WireModel):
    """One monitor check of a model (`flywheel monitor`): every field is plain data."""

    model: str = Field(description="Registered model name.")
    drift: bool = Field(description="Overall verdict for the window: any version drifted.")
    requests: int = Field(description="Logged requests in the window.")
    window_start_s: float | None = Field(description="Time of the first request (epoch s).")
    window_end_s: float | None = Field(description="Time of the last request (epoch s).")
    features: list[FeatureScore] = Field(description="Per-feature scores of the busiest version.")
    versions: list[VersionReport] = Field(description="One entry per version in the window.")
    alert: AlertState | None = Field(default=None, description="Alert state after this check.")
    retraining: str | None = Field(
        default=None,
        description="The retraining experiment this check queued (a raised alert of a model "
        "whose serve section sets `monitor.retrain_on_alert`), if any.",
    )


class ColumnInfo(WireModel):
    """One Parquet column of a data snapshot."""

    name: str = Field(description="Column name.")
    type: str = Field(description="Arrow type, as Arrow prints it.")


class SnapshotPart(WireModel):
    """One Parquet file of a data snapshot (train or validation)."""

    name: str = Field(description="`train` or `validation`.")
    file: str = Field(description="File name inside the snapshot folder.")
    rows: int = Field(description="Number of examples.")
    size_bytes: int = Field(description="Size of the Parquet file, in bytes.")


class SnapshotManifest(WireModel):
    """What a data snapshot holds: its fingerprint, source, schema and parts (its manifest.json
    under the storage root, read leniently)."""

    fingerprint: str = Field(description="sha256 of the train and validation data (the address).")
    source: str = Field(description="Where the data came from, e.g. `task.load_data`.")
    created_at: str = Field(description="When the snapshot was first written (ISO 8601, UTC).")
    feature_shape: list[int] = Field(description="Shape of one example's features.")
    target_shape: list[int] = Field(description="Shape of one example's target.")
    columns: list[ColumnInfo] = Field(description="Parquet schema shared by the parts.")
    parts: list[SnapshotPart] = Field(description="The train and validation files.")

    @property
    def size_bytes(self) -> int:
        """Total size of the Parquet files."""
        return sum(part.size_bytes for part in self.parts)


class SnapshotRun(WireModel):
    """A run that trained on a data snapshot."""

    run_id: str = Field(description="MLflow run id.")
    run_name: str = Field(description="MLflow run name.")
    experiment: str = Field(description="MLflow experiment name.")
    status: str = Field(description="MLflow run status: RUNNING, FINISHED, FAILED, KILLED.")
    start_time_ms: int = Field(description="Start of the run, epoch milliseconds.")
    fingerprint: str = Field(description="Fingerprint of the snapshot it trained on.")
    url: str = Field(description="Where the snapshot lives.")


class SnapshotReport(WireModel):
    """A data snapshot of an experiment and the runs that trained on it (newest first)."""

    fingerprint: str = Field(description="sha256 of the snapshot's data.")
    url: str = Field(description="Its folder under the storage root.")
    manifest: SnapshotManifest | None = Field(
        description="Its manifest; none when the storage root no longer holds it."
    )
    runs: list[SnapshotRun] = Field(description="Runs that trained on it, newest first.")


ReadinessStatus = Literal["passed", "failed", "not verifiable"]
RubricGroup = Literal["data", "model", "infrastructure", "monitoring"]


class ReadinessTest(WireModel):
    """One test of the ML Test Score and its verdict."""

    id: str = Field(description="Test id: group and number in the paper, e.g. `infra-1`.")
    group: RubricGroup = Field(description="Rubric group.")
    title: str = Field(description="The test, as the paper names it.")
    status: ReadinessStatus = Field(
        description="passed, failed, or not verifiable by the platform."
    )
    evidence: str = Field(description="What the verdict rests on.")


class ReadinessReport(WireModel):
    """A model version scored against the ML Test Score (`flywheel readiness`)."""

    model: str = Field(description="Registered model name.")
    version: str = Field(description="Model version.")
    tests: list[ReadinessTest] = Field(description="The 28 tests, in the paper's order.")
    group_scores: dict[str, float] = Field(description="Points per group (1 per passed test).")
    score: float = Field(description="The lowest group score, as the paper defines it.")
    verified: int = Field(description="Tests the platform could check.")


class RetrainView(WireModel):
    """A retraining the control plane queued: the experiment and the production examples it adds."""

    experiment: ExperimentView = Field(description="The queued retraining experiment.")
    feedback: FeedbackSet = Field(description="The fed-back requests added to its training data.")


class RunLink(WireModel):
    """An experiment's MLflow run, with its page in MLflow's UI."""

    run_id: str = Field(description="MLflow run id.")
    status: str = Field(description="RUNNING, FINISHED, FAILED or KILLED.")
    url: str | None = Field(description="The run's page in MLflow's UI (none: no UI server).")
