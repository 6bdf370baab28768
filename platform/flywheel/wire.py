"""Bodies of the control plane API (``/api/v1``), shared by the server and the client.

Pure pydantic. The server builds them; the client parses them leniently (unknown fields are
ignored), so that a newer server does not break an older client.
"""

from __future__ import annotations

from typing import Any

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
    role: str = Field(description="champion, canary, shadow or progressive.")
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


class RetrainView(WireModel):
    """A retraining the control plane queued: the experiment and the production examples it adds."""

    experiment: ExperimentView = Field(description="The queued retraining experiment.")
    feedback: FeedbackSet = Field(description="The fed-back requests added to its training data.")


class RunLink(WireModel):
    """An experiment's MLflow run, with its page in MLflow's UI."""

    run_id: str = Field(description="MLflow run id.")
    status: str = Field(description="RUNNING, FINISHED, FAILED or KILLED.")
    url: str | None = Field(description="The run's page in MLflow's UI (none: no UI server).")
