"""RayJob and Kueue Workload status, read back and reconciled into flywheel's job states.

Two controllers speak here: KubeRay writes a RayJob's ``status`` (``jobDeploymentStatus``: the
cluster's lifecycle; ``jobStatus``: the Ray job's), and Kueue suspends or releases it
(``spec.suspend``) and records why on the RayJob's Workload (conditions ``Admitted``,
``Evicted`` with reason ``Preempted``...). :func:`reconcile` turns one observation of both into
one flywheel state. Documents from the API server are parsed leniently: a newer KubeRay or
Kueue that adds fields or states does not break us. Pure.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class JobState(StrEnum):
    """What the control plane records for an experiment's job on Kubernetes."""

    QUEUED = "QUEUED"  # waiting for Kueue to admit it (suspended, never started)
    ADMITTED = "ADMITTED"  # admitted: its Ray cluster is starting, the driver not yet running
    RUNNING = "RUNNING"
    PREEMPTED = "PREEMPTED"  # evicted by Kueue after admission; resumable
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED})

#: KubeRay's ``jobDeploymentStatus`` values (ray-operator/apis/ray/v1/rayjob_types.go, v1.7.0).
_DEPLOYMENT_FAILED = frozenset({"Failed", "ValidationFailed"})
_DEPLOYMENT_SUSPENDED = frozenset({"Suspending", "Suspended"})
#: Ray's terminal job statuses, as KubeRay copies them into ``jobStatus``.
_JOB_TERMINAL = {
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "STOPPED": JobState.STOPPED,
}


class Lenient(BaseModel):
    """Base of documents read back from the API server: unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class RayJobStatus(Lenient):
    """The parts of a RayJob's ``status`` flywheel reads."""

    job_deployment_status: str = Field(default="", alias="jobDeploymentStatus")
    job_status: str = Field(default="", alias="jobStatus")
    job_id: str = Field(default="", alias="jobId")
    reason: str = Field(default="")
    message: str = Field(default="")


class Condition(Lenient):
    """One status condition of a Kueue Workload."""

    type: str
    status: str = "Unknown"
    reason: str = ""
    message: str = ""

    @property
    def true(self) -> bool:
        """Whether the condition holds."""
        return self.status == "True"


class WorkloadStatus(Lenient):
    """The conditions of the Kueue Workload that stands for a RayJob."""

    conditions: list[Condition] = Field(default_factory=list)

    def condition(self, kind: str) -> Condition | None:
        """The condition of type ``kind``, if Kueue has set it."""
        return next((c for c in self.conditions if c.type == kind), None)


class Observation(Lenient):
    """One look at a RayJob and its Workload, as the backend read them."""

    suspended: bool = Field(description="The RayJob's spec.suspend: Kueue holds it back.")
    status: RayJobStatus = Field(description="The RayJob's status.")
    workload: WorkloadStatus | None = Field(
        default=None, description="Its Kueue Workload's status; None before Kueue made one."
    )


class Reconciled(Lenient):
    """A job's state, and in words why (for the control plane's state history)."""

    state: JobState
    reason: str


def observation_from_documents(
    rayjob: dict[str, Any], workload: dict[str, Any] | None
) -> Observation:
    """Parse a RayJob and its Workload as the API server returns them, leniently."""
    return Observation(
        suspended=bool((rayjob.get("spec") or {}).get("suspend", False)),
        status=RayJobStatus.model_validate(rayjob.get("status") or {}),
        workload=WorkloadStatus.model_validate(workload.get("status") or {}) if workload else None,
    )


def reconcile(seen: Observation, previous: JobState | None = None) -> Reconciled:
    """The flywheel state of a job from one observation, and the state it was in before.

    Terminal Ray job states win; then a failed deployment; then Kueue's eviction (a job that was
    admitted and is suspended again was preempted); then queued, admitted and running.
    """
    status = seen.status
    if status.job_status in _JOB_TERMINAL:
        return Reconciled(
            state=_JOB_TERMINAL[status.job_status], reason=_why(status.job_status, status)
        )
    if status.job_deployment_status in _DEPLOYMENT_FAILED:
        return Reconciled(state=JobState.FAILED, reason=_why(status.job_deployment_status, status))
    evicted = seen.workload.condition("Evicted") if seen.workload else None
    if evicted is not None and evicted.true:
        return Reconciled(state=JobState.PREEMPTED, reason=f"Kueue: {evicted.reason or 'evicted'}")
    if seen.suspended or status.job_deployment_status in _DEPLOYMENT_SUSPENDED:
        was_admitted = previous in (JobState.ADMITTED, JobState.RUNNING, JobState.PREEMPTED)
        if was_admitted:
            return Reconciled(state=JobState.PREEMPTED, reason="suspended after admission")
        return Reconciled(state=JobState.QUEUED, reason="waiting for Kueue to admit it")
    if status.job_deployment_status == "Running" and status.job_status == "RUNNING":
        return Reconciled(state=JobState.RUNNING, reason="the job driver runs")
    return Reconciled(state=JobState.ADMITTED, reason=_admitted_reason(seen))


def _why(state: str, status: RayJobStatus) -> str:
    parts = [state, status.reason, status.message]
    return ": ".join(p for p in parts if p)


def _admitted_reason(seen: Observation) -> str:
    admitted = seen.workload.condition("Admitted") if seen.workload else None
    if admitted is not None and admitted.true:
        return f"admitted by Kueue; Ray cluster {seen.status.job_deployment_status or 'starting'}"
    return f"not suspended; Ray cluster {seen.status.job_deployment_status or 'starting'}"
