"""The control plane's experiment backend on Kubernetes: each admitted plan becomes a RayJob.

:class:`KubernetesExperimentBackend` is the :class:`~flywheel.backends.base.ExperimentBackend`
that the control plane uses when ``FLYWHEEL_BACKEND=kubernetes``. It renders the plan into a
RayJob in its team's namespace, with its team's Kueue queue and priority labels and the grace
period and TTL of the settings. It uploads the code bundle as a zip next to the stored bundle,
because Ray reads remote working directories as zips. Then it reads the job's state back
through :class:`~flywheel.k8s.backend.KubeRayApi`.

It lives in the server because it joins two independent packages: the backend protocol
(:mod:`flywheel.backends`) and the Kubernetes rendering and adapter (:mod:`flywheel.k8s`).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flywheel.backends.base import JobInfo, JobState
from flywheel.errors import JobError, JobNotFoundError, PlatformError
from flywheel.k8s.backend import Document, KubeRayApi, KubernetesBackend
from flywheel.k8s.kueue import team_namespace, teams_to_objects
from flywheel.k8s.manifests import require_valid
from flywheel.k8s.objects import EXPERIMENT_LABEL, JOB_LABEL, STOPPED_LABEL, TEAM_LABEL
from flywheel.k8s.rayjob import K8sTarget, bundle_zip_url, plan_to_rayjob, rayjob_name
from flywheel.k8s.status import JobState as K8sJobState
from flywheel.k8s.status import observation_from_documents, reconcile
from flywheel.plans import JobPlan
from flywheel.settings import Settings
from flywheel.specs.teams import Resources, TeamsSpec
from flywheel.storage.objects import write_bytes

#: What the control plane's queue sees of each Kubernetes state: Kueue's waiting and a
#: preemption (Kueue admits it again later) are both "not running yet".
_STATES: dict[K8sJobState, JobState] = {
    K8sJobState.QUEUED: "PENDING",
    K8sJobState.ADMITTED: "PENDING",
    K8sJobState.PREEMPTED: "PENDING",
    K8sJobState.RUNNING: "RUNNING",
    K8sJobState.SUCCEEDED: "SUCCEEDED",
    K8sJobState.FAILED: "FAILED",
    K8sJobState.STOPPED: "STOPPED",
}

Upload = Callable[[str, bytes], object]


def target_from_settings(settings: Settings) -> K8sTarget:
    """The RayJobs' target from the control plane's settings (what the Helm chart passes)."""
    defaults = K8sTarget()
    try:
        return K8sTarget(
            image=settings.job_image or defaults.image,
            storage_root=settings.storage_root,
            tracking_uri=settings.tracking_uri,
            s3_secret=settings.job_s3_secret or defaults.s3_secret,
            ttl_s=settings.job_ttl_s,
            grace_period_s=settings.job_grace_period_s,
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise PlatformError(
            f"FLYWHEEL_{str(first['loc'][0]).upper()} {first['input']!r} cannot be used on "
            f"Kubernetes: {first['msg']}"
        ) from None


class KubernetesExperimentBackend:
    """Experiments as RayJobs admitted by Kueue, in the teams' namespaces."""

    def __init__(
        self, api: KubeRayApi, teams: TeamsSpec, target: K8sTarget, upload: Upload = write_bytes
    ) -> None:
        self._api = api
        self._jobs = KubernetesBackend(api)
        self._teams = teams
        self._target = target
        self._upload = upload

    def submit(self, plan: JobPlan, bundle_dir: Path) -> str:
        """Upload the bundle as a zip, then create the suspended RayJob for Kueue to admit."""
        try:
            priority = self._teams.team(plan.spec.team).priority
        except KeyError:
            raise JobError(f"team '{plan.spec.team}' is not in the teams file") from None
        rayjob = plan_to_rayjob(plan, priority, self._target)
        require_valid([rayjob], context=teams_to_objects(self._teams))
        self._upload(bundle_zip_url(plan), zip_folder(bundle_dir))
        self._jobs.submit(rayjob)
        return plan.job_id

    def submit_command(self, entrypoint: str, metadata: dict[str, str]) -> str:
        raise JobError("commands run as jobs only on the local backend; not on Kubernetes")

    def list(self) -> list[JobInfo]:
        """Jobs flywheel submitted in every team's namespace, newest first."""
        infos = [
            _to_info(document, self._state(document))
            for team in self._teams.teams
            for document in self._api.list_rayjobs(team_namespace(team.name))
        ]
        return sorted(infos, key=lambda j: j.start_time_ms or 0, reverse=True)

    def get(self, job_id: str) -> JobInfo:
        document = self._find(job_id)
        return _to_info(document, self._state(document))

    def logs(self, job_id: str) -> str:
        """Where the logs are: the submitter Job follows the driver's log (K8sJobMode)."""
        namespace = self._find(job_id)["metadata"]["namespace"]
        return f"kubectl logs -n {namespace} job/{rayjob_name(job_id)}\n"

    async def tail(self, job_id: str) -> AsyncIterator[str]:
        yield self.logs(job_id)

    def stop(self, job_id: str) -> bool:
        """Stop the job for good: label it stopped and suspend it (KubeRay deletes its pods,
        which get their grace period). True if it was still going."""
        document = self._find(job_id)
        if _STATES[self._state(document)] in ("SUCCEEDED", "FAILED", "STOPPED"):
            return False
        self._api.stop_rayjob(document["metadata"]["namespace"], rayjob_name(job_id))
        return True

    def capacity(self) -> Resources:
        """What the teams file grants in all: Kueue enforces the quotas, not the nodes."""
        teams = self._teams.teams
        return Resources(
            cpu=sum(t.quota.cpu for t in teams),
            gpu=sum(t.quota.gpu for t in teams),
            memory_gib=sum(t.quota.memory_gib for t in teams),
        )

    def _find(self, job_id: str) -> Document:
        name = rayjob_name(job_id)
        for team in self._teams.teams:
            found = self._api.get_rayjob(team_namespace(team.name), name)
            if found is not None:
                return found
        raise JobNotFoundError(job_id)

    def _state(self, document: Document) -> K8sJobState:
        labels = document.get("metadata", {}).get("labels") or {}
        if labels.get(STOPPED_LABEL) == "true":
            return K8sJobState.STOPPED
        meta = document["metadata"]
        workload = self._api.workload_of(meta["namespace"], meta["name"])
        return reconcile(observation_from_documents(document, workload)).state


def zip_folder(folder: Path) -> bytes:
    """``folder`` as a zip with one top-level directory, the layout Ray expects of a remote
    working_dir."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"bundle/{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()


def _to_info(document: Document, state: K8sJobState) -> JobInfo:
    labels = document.get("metadata", {}).get("labels") or {}
    status: dict[str, Any] = document.get("status") or {}
    return JobInfo(
        job_id=labels.get(JOB_LABEL, document["metadata"]["name"]),
        state=_STATES[state],
        team=labels.get(TEAM_LABEL, ""),
        experiment=labels.get(EXPERIMENT_LABEL, ""),
        spec_sha256="",
        bundle_url="",
        message=str(status.get("message", "")),
        start_time_ms=_ms(status.get("startTime")),
        end_time_ms=_ms(status.get("endTime")),
    )


def _ms(timestamp: object) -> int | None:
    """An RFC 3339 time from the API server in ms, or None (lenient: it is read back)."""
    if not isinstance(timestamp, str):
        return None
    try:
        return int(datetime.fromisoformat(timestamp).timestamp() * 1000)
    except ValueError:
        return None
