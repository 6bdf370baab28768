"""A RayService's status, read back and reconciled into one serving state.

KubeRay writes ``status.activeServiceStatus.applicationStatuses`` (Serve's application and
deployment statuses, copied from the cluster that takes traffic), ``pendingServiceStatus``
while a new cluster is being prepared for a zero-downtime upgrade, and the conditions ``Ready``
and ``UpgradeInProgress`` (ray-operator/apis/ray/v1/rayservice_types.go, v1.7.0). Serve's
application statuses are NOT_STARTED, DEPLOYING, DEPLOY_FAILED, RUNNING, UNHEALTHY and DELETING.
Parsed leniently: a newer KubeRay that adds fields or states does not break us. Two readings:
:func:`reconcile_service`, one state of the whole RayService, and
:func:`rayservice_to_applications`, each application as the serving service waits on it. Pure.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import yaml
from pydantic import Field

from flywheel.k8s.status import Condition, Lenient
from flywheel.serving.state import ApplicationState, DeploymentState

_BROKEN = frozenset({"DEPLOY_FAILED", "UNHEALTHY"})


class ServingState(StrEnum):
    """What the control plane records about the RayService."""

    DEPLOYING = "DEPLOYING"  # the cluster or the applications are starting
    RUNNING = "RUNNING"  # every application runs and KubeRay routes traffic to them
    UPGRADING = "UPGRADING"  # a new cluster is prepared; the old one still serves
    UNHEALTHY = "UNHEALTHY"  # an application failed to deploy or is unhealthy


class DeploymentStatus(Lenient):
    """One Serve deployment of an application."""

    status: str = ""
    message: str = ""


class ApplicationStatus(Lenient):
    """One Serve application, as KubeRay copies it from Serve."""

    status: str = ""
    message: str = ""
    deployments: dict[str, DeploymentStatus] = Field(
        default_factory=dict, alias="serveDeploymentStatuses"
    )


class ClusterServiceStatus(Lenient):
    """The applications of one of the RayService's clusters (active or pending)."""

    applications: dict[str, ApplicationStatus] = Field(
        default_factory=dict, alias="applicationStatuses"
    )
    ray_cluster_name: str = Field(default="", alias="rayClusterName")


class RayServiceStatus(Lenient):
    """The parts of a RayService's ``status`` flywheel reads.

    ``observedGeneration`` is the ``metadata.generation`` of the spec KubeRay last reconciled:
    it sets it after it submitted that spec's ``serveConfigV2`` to Serve and read the
    applications' statuses back (``calculateStatus`` in rayservice_controller.go, v1.7.0).
    """

    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    conditions: list[Condition] = Field(default_factory=list)
    active: ClusterServiceStatus = Field(
        default_factory=ClusterServiceStatus, alias="activeServiceStatus"
    )
    pending: ClusterServiceStatus = Field(
        default_factory=ClusterServiceStatus, alias="pendingServiceStatus"
    )

    def condition(self, kind: str) -> Condition | None:
        """The condition of type ``kind``, if KubeRay has set it."""
        return next((c for c in self.conditions if c.type == kind), None)


class ServingReconciled(Lenient):
    """The RayService's serving state, why, and each application's Serve status."""

    state: ServingState
    reason: str
    applications: dict[str, str]


def reconcile_service(rayservice: dict[str, Any]) -> ServingReconciled:
    """The serving state of a RayService document as the API server returns it.

    A broken application wins; then an upgrade in progress; then running, when every
    application runs (and KubeRay, where it says, calls the service Ready); else deploying.
    """
    status = RayServiceStatus.model_validate(rayservice.get("status") or {})
    apps = status.active.applications
    seen = {name: app.status for name, app in sorted(apps.items())}
    broken = [(name, app) for name, app in sorted(apps.items()) if app.status in _BROKEN]
    if broken:
        name, app = broken[0]
        reason = ": ".join(p for p in (name, app.status, app.message or _deployments(app)) if p)
        return ServingReconciled(state=ServingState.UNHEALTHY, reason=reason, applications=seen)
    upgrade = status.condition("UpgradeInProgress")
    if (upgrade is not None and upgrade.true) or status.pending.applications:
        reason = f"KubeRay prepares cluster {status.pending.ray_cluster_name or 'a new cluster'}"
        return ServingReconciled(state=ServingState.UPGRADING, reason=reason, applications=seen)
    ready = status.condition("Ready")
    running = bool(apps) and all(app.status == "RUNNING" for app in apps.values())
    if running and (ready is None or ready.true):
        reason = f"{len(apps)} applications run"
        return ServingReconciled(state=ServingState.RUNNING, reason=reason, applications=seen)
    waiting = sorted(name for name, app in apps.items() if app.status != "RUNNING")
    reason = "waiting for " + (", ".join(waiting) if waiting else "the Ray cluster")
    return ServingReconciled(state=ServingState.DEPLOYING, reason=reason, applications=seen)


def _deployments(app: ApplicationStatus) -> str:
    unhealthy = [f"{name} {d.status}" for name, d in sorted(app.deployments.items())
                 if d.status not in ("HEALTHY", "")]  # fmt: skip
    return ", ".join(unhealthy)


def rayservice_to_applications(rayservice: dict[str, Any]) -> dict[str, ApplicationState]:
    """The applications of the cluster that takes traffic, as the serving service reads them.

    The RayService's status carries each application's and deployment's Serve status but not
    their config, so the route generation of an ingress deployment comes from the spec's
    ``serveConfigV2``, and only while it is known to run there: KubeRay has observed the
    current spec (``status.observedGeneration >= metadata.generation``) and no new cluster is
    being prepared (during a zero-downtime upgrade the active cluster still runs the old
    config). Otherwise every generation is None, which reads as "not there yet". Serve's replica
    counts are not in the status: ``running_replicas`` is 0.
    """
    status = RayServiceStatus.model_validate(rayservice.get("status") or {})
    generations = _spec_generations(rayservice) if _spec_observed(rayservice, status) else {}
    return {
        name: ApplicationState(
            name=name,
            status=app.status,
            message=app.message,
            deployments=tuple(
                DeploymentState(
                    name=deployment_name,
                    status=deployment.status,
                    running_replicas=0,
                    generation=generations.get((name, deployment_name)),
                )
                for deployment_name, deployment in sorted(app.deployments.items())
            ),
        )
        for name, app in sorted(status.active.applications.items())
    }


def _spec_observed(rayservice: dict[str, Any], status: RayServiceStatus) -> bool:
    """Whether the active cluster runs the spec as it is now."""
    metadata = rayservice.get("metadata") or {}
    generation = metadata.get("generation")
    observed = status.observed_generation
    if not isinstance(generation, int) or observed is None or observed < generation:
        return False
    return not status.pending.ray_cluster_name and not status.pending.applications


def _spec_generations(rayservice: dict[str, Any]) -> dict[tuple[str, str], int]:
    """``(application, deployment) -> user_config.generation`` in the spec's serveConfigV2."""
    text = (rayservice.get("spec") or {}).get("serveConfigV2")
    try:
        config = yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        return {}
    if not isinstance(config, dict):
        return {}
    found = {}
    for app in _dicts(config.get("applications")):
        for deployment in _dicts(app.get("deployments")):
            user_config = deployment.get("user_config")
            generation = user_config.get("generation") if isinstance(user_config, dict) else None
            if isinstance(generation, int) and not isinstance(generation, bool):
                found[(str(app.get("name")), str(deployment.get("name")))] = generation
    return found


def _dicts(items: object) -> list[dict[str, Any]]:
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
