"""Teams file -> Kueue objects and each team's namespace: one definition, two enforcers.

The control plane's admission queue reads ``cluster/teams.yaml`` on every platform; on Kubernetes
the same file becomes, in this order:

- one ResourceFlavor (``flywheel-default``) that covers CPU, memory and GPUs;
- a WorkloadPriorityClass per priority class;
- per team: its Namespace, a ClusterQueue in its cohort (nominal quota, borrowing and lending
  limits, fair-sharing weight, preemption), a LocalQueue in the namespace, and a ResourceQuota
  that caps the namespace's pods at the quota plus what the team may borrow.

The Helm chart renders the same objects from the same teams (a test holds them equal). Pure.
"""

from __future__ import annotations

from flywheel.k8s.objects import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    TEAM_LABEL,
    BorrowWithinCohort,
    ClusterQueue,
    ClusterQueueSpec,
    FairSharing,
    FlavorQuotas,
    K8sObject,
    LabelSelector,
    LocalQueue,
    LocalQueueSpec,
    Namespace,
    ObjectMeta,
    Preemption,
    ResourceAmount,
    ResourceFlavor,
    ResourceFlavorSpec,
    ResourceGroup,
    ResourceQuota,
    ResourceQuotaSpec,
    WorkloadPriorityClass,
    cpu_quantity,
    memory_quantity,
    weight_quantity,
)
from flywheel.specs.teams import PriorityClass, Resources, TeamSpec, TeamsSpec

#: The flavor all quota is counted on.
DEFAULT_FLAVOR = "flywheel-default"
#: Kubernetes resource names of the amounts a teams file accounts for, in order.
GPU_RESOURCE = "nvidia.com/gpu"
COVERED_RESOURCES = ("cpu", "memory", GPU_RESOURCE)
#: Name of every team's ResourceQuota.
RESOURCE_QUOTA_NAME = "flywheel-quota"


def team_namespace(team: str) -> str:
    """The namespace of a team's experiments."""
    return f"flywheel-team-{team}"


def cluster_queue_name(team: str) -> str:
    """The ClusterQueue holding a team's quota."""
    return f"flywheel-{team}"


def local_queue_name(team: str) -> str:
    """The LocalQueue in a team's namespace (the ``queue-name`` label of its RayJobs)."""
    return team


def teams_to_objects(teams: TeamsSpec) -> list[K8sObject]:
    """Every object the teams file stands for, in the order they can be applied."""
    objects: list[K8sObject] = [resource_flavor()]
    objects += [priority_class_to_object(c) for c in teams.priority_classes]
    for team in teams.teams:
        objects += team_to_objects(team)
    return objects


def resource_flavor() -> ResourceFlavor:
    """The one flavor: any node. Quota is counted per team, not per node type."""
    return ResourceFlavor(metadata=_meta(DEFAULT_FLAVOR), spec=ResourceFlavorSpec())


def priority_class_to_object(priority_class: PriorityClass) -> WorkloadPriorityClass:
    """A priority class as a Kueue WorkloadPriorityClass."""
    return WorkloadPriorityClass(
        metadata=_meta(priority_class.name),
        value=priority_class.value,
        description=priority_class.description or None,
    )


def team_to_objects(team: TeamSpec) -> list[K8sObject]:
    """A team's Namespace, ClusterQueue, LocalQueue and ResourceQuota."""
    namespace = team_namespace(team.name)
    return [
        Namespace(metadata=_meta(namespace, team=team.name)),
        team_to_cluster_queue(team),
        LocalQueue(
            metadata=_meta(local_queue_name(team.name), namespace, team.name),
            spec=LocalQueueSpec(cluster_queue=cluster_queue_name(team.name)),
        ),
        ResourceQuota(
            metadata=_meta(RESOURCE_QUOTA_NAME, namespace, team.name),
            spec=ResourceQuotaSpec(hard=_pod_quota(team)),
        ),
    ]


def team_to_cluster_queue(team: TeamSpec) -> ClusterQueue:
    """A team's quota in its cohort: it reclaims what it lent, borrows by priority."""
    lending = team.lending_limit
    amounts = [
        ResourceAmount(
            name=name,
            nominal_quota=_quantity(name, team.quota),
            borrowing_limit=_quantity(name, team.borrowing_limit),
            lending_limit=_quantity(name, lending) if lending is not None else None,
        )
        for name in COVERED_RESOURCES
    ]
    spec = ClusterQueueSpec(
        cohort_name=team.cohort,
        namespace_selector=LabelSelector(
            match_labels={"kubernetes.io/metadata.name": team_namespace(team.name)}
        ),
        queueing_strategy="BestEffortFIFO",
        preemption=Preemption(
            reclaim_within_cohort="Any",
            borrow_within_cohort=BorrowWithinCohort(policy="LowerPriority"),
            within_cluster_queue="LowerPriority",
        ),
        fair_sharing=FairSharing(weight=weight_quantity(team.fair_share_weight)),
        resource_groups=[
            ResourceGroup(
                covered_resources=list(COVERED_RESOURCES),
                flavors=[FlavorQuotas(name=DEFAULT_FLAVOR, resources=amounts)],
            )
        ],
    )
    return ClusterQueue(metadata=_meta(cluster_queue_name(team.name), team=team.name), spec=spec)


def _pod_quota(team: TeamSpec) -> dict[str, str]:
    """The most the namespace's pods may request: the quota plus what the team may borrow."""
    most = Resources(
        cpu=team.quota.cpu + team.borrowing_limit.cpu,
        gpu=team.quota.gpu + team.borrowing_limit.gpu,
        memory_gib=team.quota.memory_gib + team.borrowing_limit.memory_gib,
    )
    return {f"requests.{name}": _quantity(name, most) for name in COVERED_RESOURCES}


def _quantity(resource: str, amounts: Resources) -> str:
    if resource == "cpu":
        return cpu_quantity(amounts.cpu)
    if resource == "memory":
        return memory_quantity(amounts.memory_gib)
    return str(amounts.gpu)


def _meta(name: str, namespace: str | None = None, team: str | None = None) -> ObjectMeta:
    labels = {MANAGED_BY_LABEL: MANAGED_BY}
    if team is not None:
        labels[TEAM_LABEL] = team
    return ObjectMeta(name=name, namespace=namespace, labels=labels)
