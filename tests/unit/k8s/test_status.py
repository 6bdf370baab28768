"""Reconciling real RayJob and Kueue Workload status documents into flywheel's job states.

Where the documents come from:
- SUSPENDED_BY_KUEUE is the status shown in Ray's guide "Gang Scheduling with RayJob and Kueue"
  (docs.ray.io/en/latest/cluster/kubernetes/examples/rayjob-kueue-gang-scheduling.html), as
  `kubectl get rayjob -o yaml` printed it while Kueue held the job back.
- The other RayJob statuses use the values KubeRay's controller writes
  (ray-operator/apis/ray/v1/rayjob_types.go and controllers/ray/rayjob_controller.go, v1.7.0):
  jobDeploymentStatus Initializing/Running/Complete/Failed/Suspending/Suspended, jobStatus
  copied from Ray (PENDING/RUNNING/SUCCEEDED/FAILED/STOPPED), reason DeadlineExceeded.
  SUCCEEDED with Complete is the pair KubeRay's RayJob docs show for a finished job.
- Workload conditions use Kueue's condition types and reasons (apis/kueue/v1beta2,
  workload_types.go, v0.19): Admitted, QuotaReserved, Evicted with reason Preempted, and
  Preempted with reason InClusterQueue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel.errors import JobNotFoundError
from flywheel.k8s.backend import InMemoryKubeRayApi, KubernetesBackend
from flywheel.k8s.manifests import experiment_to_rayjob
from flywheel.k8s.rayjob import K8sTarget
from flywheel.k8s.status import JobState, observation_from_documents, reconcile
from flywheel.settings import Settings
from flywheel.specs.loading import load_spec
from flywheel.specs.teams import load_teams

from .conftest import REPO

SUSPENDED_BY_KUEUE = yaml.safe_load("""\
apiVersion: ray.io/v1
kind: RayJob
metadata:
  name: pytorch-text-classifier-rj4sg
  labels:
    kueue.x-k8s.io/queue-name: user-queue
spec:
  suspend: true
status:
  jobDeploymentStatus: Suspended  # RayJob suspended
  jobId: pytorch-text-classifier-rj4sg-pj9hx
  jobStatus: PENDING
""")

INITIALIZING = {"jobDeploymentStatus": "Initializing", "jobId": "j-1", "jobStatus": ""}
RUNNING = {"jobDeploymentStatus": "Running", "jobId": "j-1", "jobStatus": "RUNNING",
           "rayClusterName": "j-1-raycluster-x2lqk"}  # fmt: skip
SUCCEEDED = {"jobDeploymentStatus": "Complete", "jobId": "j-1", "jobStatus": "SUCCEEDED",
             "message": "Job finished successfully.", "succeeded": 1}  # fmt: skip
STOPPED = {"jobDeploymentStatus": "Complete", "jobId": "j-1", "jobStatus": "STOPPED"}
FAILED_RAY = {"jobDeploymentStatus": "Complete", "jobStatus": "FAILED",
              "message": "Job entrypoint command failed with exit code 1", "failed": 1}  # fmt: skip
DEADLINE = {"jobDeploymentStatus": "Failed", "jobStatus": "RUNNING", "reason": "DeadlineExceeded",
            "message": "The RayJob has passed the activeDeadlineSeconds."}  # fmt: skip
SUSPENDING = {"jobDeploymentStatus": "Suspending", "jobId": "j-1", "jobStatus": "RUNNING"}
NEWER_KUBERAY = {**RUNNING, "someFieldFromTheFuture": {"x": 1}}


def workload(*conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "status": {
            "conditions": [
                {"type": t, "status": s, "reason": r, "message": "", "lastTransitionTime":
                 "2026-11-30T09:00:00Z"} for t, s, r in conditions
            ]
        },
    }  # fmt: skip


ADMITTED = workload(("QuotaReserved", "True", "QuotaReserved"), ("Admitted", "True", "Admitted"))
PREEMPTED = workload(
    ("QuotaReserved", "False", "Pending"),
    ("Admitted", "False", "NoReservation"),
    ("Evicted", "True", "Preempted"),
    ("Preempted", "True", "InClusterQueue"),
)


def rayjob(status: dict[str, Any], suspend: bool = False) -> dict[str, Any]:
    return {"spec": {"suspend": suspend}, "status": status}


@pytest.mark.parametrize(
    ("document", "work", "previous", "state"),
    [
        (SUSPENDED_BY_KUEUE, None, None, JobState.QUEUED),
        (rayjob({}, suspend=True), None, None, JobState.QUEUED),
        (rayjob(INITIALIZING), ADMITTED, JobState.QUEUED, JobState.ADMITTED),
        (rayjob(RUNNING), ADMITTED, JobState.ADMITTED, JobState.RUNNING),
        (rayjob(NEWER_KUBERAY), ADMITTED, JobState.ADMITTED, JobState.RUNNING),
        (rayjob(SUSPENDING, suspend=True), PREEMPTED, JobState.RUNNING, JobState.PREEMPTED),
        (SUSPENDED_BY_KUEUE, None, JobState.RUNNING, JobState.PREEMPTED),
        (rayjob(SUCCEEDED), ADMITTED, JobState.RUNNING, JobState.SUCCEEDED),
        (rayjob(STOPPED), ADMITTED, JobState.RUNNING, JobState.STOPPED),
        (rayjob(FAILED_RAY), ADMITTED, JobState.RUNNING, JobState.FAILED),
        (rayjob(DEADLINE), ADMITTED, JobState.RUNNING, JobState.FAILED),
    ],
)
def test_documents_reconcile_into_states(
    document: dict[str, Any],
    work: dict[str, Any] | None,
    previous: JobState | None,
    state: JobState,
) -> None:
    assert reconcile(observation_from_documents(document, work), previous).state == state


def test_an_eviction_names_kueue_s_reason() -> None:
    result = reconcile(observation_from_documents(rayjob(SUSPENDING, True), PREEMPTED))
    assert result.reason == "Kueue: Preempted"


def test_a_failure_carries_kuberay_s_reason_and_message() -> None:
    result = reconcile(observation_from_documents(rayjob(DEADLINE), None))
    assert result.reason == (
        "Failed: DeadlineExceeded: The RayJob has passed the activeDeadlineSeconds."
    )


def test_the_backend_follows_a_job_through_kueue_and_kuberay() -> None:
    api = InMemoryKubeRayApi()
    backend = KubernetesBackend(api)
    spec = load_spec(REPO / "experiments/digits/train.yaml")
    teams = load_teams(REPO / "cluster/teams.yaml")
    job = experiment_to_rayjob(
        spec, "train.yaml", b"", teams, K8sTarget(), Settings(home=Path("/x")), "vision-d-1"
    )
    ns = "flywheel-team-vision"

    name = backend.submit(job)
    history = [backend.state(ns, name).state]
    api.patch_rayjob_suspend(ns, name, False)  # Kueue admits it
    api.set_workload(ns, name, ADMITTED)
    api.set_status(ns, name, INITIALIZING)
    history.append(backend.state(ns, name, history[-1]).state)
    api.set_status(ns, name, RUNNING)
    history.append(backend.state(ns, name, history[-1]).state)
    api.set_workload(ns, name, PREEMPTED)  # a higher priority job took the quota
    backend.suspend(ns, name)
    api.set_status(ns, name, SUSPENDING)
    history.append(backend.state(ns, name, history[-1]).state)
    api.set_workload(ns, name, ADMITTED)  # quota is back
    backend.resume(ns, name)
    api.set_status(ns, name, INITIALIZING)
    history.append(backend.state(ns, name, history[-1]).state)
    api.set_status(ns, name, SUCCEEDED)
    history.append(backend.state(ns, name, history[-1]).state)

    assert history == [
        JobState.QUEUED, JobState.ADMITTED, JobState.RUNNING, JobState.PREEMPTED,
        JobState.ADMITTED, JobState.SUCCEEDED,
    ]  # fmt: skip
    assert api.get_rayjob(ns, name)["spec"]["shutdownAfterJobFinishes"] is True  # type: ignore[index]
    assert backend.delete(ns, name) is True
    assert backend.delete(ns, name) is False
    with pytest.raises(JobNotFoundError):
        backend.state(ns, name)
