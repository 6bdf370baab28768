"""What ``flywheel k8s render``, ``render-teams`` and ``render-serving`` print: checked manifests,
never a cluster.

Rendering is offline: a spec and the teams file in, multi-document YAML out, for GitOps users
and for review. Every object is checked against :mod:`flywheel.k8s.checks` before it is shown;
a broken rule is a :class:`~flywheel.errors.K8sError` that names the object and the rule.
"""

from __future__ import annotations

from collections.abc import Sequence

from flywheel.errors import K8sError
from flywheel.k8s.checks import check_manifests
from flywheel.k8s.kueue import teams_to_objects
from flywheel.k8s.objects import K8sObject, RayJob, RayService
from flywheel.k8s.rayjob import K8sTarget, plan_to_rayjob
from flywheel.k8s.rayservice import SERVICE_NAME, SERVICE_NAMESPACE, document_to_rayservice
from flywheel.plans import spec_to_job_plan
from flywheel.serving.document import ServingDocument
from flywheel.settings import Settings
from flywheel.specs.experiment import ExperimentSpec, StorageSpec
from flywheel.specs.teams import TeamsSpec


def experiment_to_rayjob(
    spec: ExperimentSpec,
    spec_file: str,
    spec_bytes: bytes,
    teams: TeamsSpec,
    target: K8sTarget,
    settings: Settings,
    job_id: str,
) -> RayJob:
    """The checked RayJob an admitted experiment becomes, in its team's namespace and queue.

    An ``s3://`` storage root in the spec is kept; any other is replaced by the target's,
    because pods cannot reach a local folder of the machine that rendered them.
    """
    try:
        team = teams.team(spec.team)
    except KeyError:
        known = ", ".join(t.name for t in teams.teams)
        raise K8sError(
            f"team '{spec.team}' is not in the teams file (known: {known}); "
            "add it there or choose another with --team"
        ) from None
    root = spec.storage.root
    if root is None or not root.startswith("s3://"):
        spec = spec.model_copy(update={"storage": StorageSpec(root=target.storage_root)})
    cluster_settings = settings.model_copy(update={"mlflow_tracking_uri": target.tracking_uri})
    plan = spec_to_job_plan(spec, spec_file, spec_bytes, cluster_settings, job_id)
    rayjob = plan_to_rayjob(plan, team.priority, target)
    require_valid([rayjob], context=teams_to_objects(teams))
    return rayjob


def serving_to_rayservice(
    document: ServingDocument, target: K8sTarget, max_request_bytes: int, team: str | None = None,
    namespace: str = SERVICE_NAMESPACE, name: str = SERVICE_NAME,
) -> RayService:  # fmt: skip
    """The checked RayService that serves ``document`` on the cluster: the one the control plane
    applies (``name`` in ``namespace``), or a team's (``<team>-serving``)."""
    rayservice = document_to_rayservice(document, target, max_request_bytes, team, namespace, name)
    require_valid([rayservice])
    return rayservice


def teams_to_checked_objects(teams: TeamsSpec) -> list[K8sObject]:
    """The teams file's Kueue objects and namespaces, checked."""
    objects = teams_to_objects(teams)
    require_valid(objects)
    return objects


def require_valid(objects: Sequence[K8sObject], context: Sequence[K8sObject] = ()) -> None:
    """Raise :class:`K8sError` listing every broken rule in ``objects``."""
    problems = check_manifests(
        [o.to_manifest() for o in objects], [o.to_manifest() for o in context]
    )
    if problems:
        raise K8sError("the rendered manifests break rules:\n" + "\n".join(map(str, problems)))
