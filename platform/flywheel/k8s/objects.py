"""Typed Kubernetes objects that flywheel writes: built-in kinds, KubeRay and Kueue resources.

Field names are the API's own (snake_case here, camelCase on the wire through the alias
generator), so a reader can hold a model next to ``kubectl explain``. Models are strict
(``extra="forbid"``) and hold only the fields flywheel sets; the full schemas are checked in the
tests against the real CRDs and Kubernetes' own JSON schemas.

Quantities are always strings (``"500m"``, ``"8Gi"``): the CRD schemas reject YAML floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

KUEUE_API: Final = "kueue.x-k8s.io/v1beta2"
RAY_API: Final = "ray.io/v1"

#: Label that puts a workload in a Kueue LocalQueue.
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
#: Label that gives a workload a Kueue WorkloadPriorityClass.
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
#: Label every object flywheel renders carries, so that they can be listed and pruned together.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "flywheel"
TEAM_LABEL = "flywheel.dev/team"
EXPERIMENT_LABEL = "flywheel.dev/experiment"
JOB_LABEL = "flywheel.dev/job-id"
#: Label of a RayService's pods (value: the RayService's name), which its NetworkPolicy selects:
#: KubeRay names the RayCluster behind a RayService itself, so ``ray.io/cluster`` is unknown.
SERVING_LABEL = "flywheel.dev/serving"
#: Label the control plane puts on a RayJob it stopped (suspended for good, not preempted).
STOPPED_LABEL = "flywheel.dev/stopped"

#: Quantity map, such as ``{"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"}``.
Quantities = dict[str, str]


class K8sModel(BaseModel):
    """Strict, frozen, camelCase on the wire."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class ObjectMeta(K8sModel):
    """``metadata`` of an object."""

    name: str
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class K8sObject(K8sModel):
    """An object with ``apiVersion``, ``kind`` and ``metadata``."""

    api_version: str
    kind: str
    metadata: ObjectMeta

    def to_manifest(self) -> dict[str, Any]:
        """The object as the API server reads it (the serialization edge: a plain mapping)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- built-in kinds -------------------------------------------------------------------------


class Namespace(K8sObject):
    """A team's namespace."""

    api_version: Literal["v1"] = "v1"
    kind: Literal["Namespace"] = "Namespace"


class ResourceQuotaSpec(K8sModel):
    """``spec`` of a ResourceQuota."""

    hard: Quantities


class ResourceQuota(K8sObject):
    """The most a namespace's pods may request at once."""

    api_version: Literal["v1"] = "v1"
    kind: Literal["ResourceQuota"] = "ResourceQuota"
    spec: ResourceQuotaSpec


class EnvVar(K8sModel):
    """One environment variable with a literal value."""

    name: str
    value: str


class SecretRef(K8sModel):
    """A Secret whose keys become environment variables."""

    name: str
    optional: bool | None = None


class EnvFromSource(K8sModel):
    """``envFrom`` entry."""

    secret_ref: SecretRef


class ResourceRequirements(K8sModel):
    """Requests and limits of a container."""

    requests: Quantities
    limits: Quantities


class ContainerPort(K8sModel):
    """A named port of a container."""

    name: str
    container_port: int


class ExecAction(K8sModel):
    """A command run in the container."""

    command: list[str]


class LifecycleHandler(K8sModel):
    """What a lifecycle hook runs."""

    exec: ExecAction


class Lifecycle(K8sModel):
    """Container lifecycle hooks."""

    pre_stop: LifecycleHandler


class Container(K8sModel):
    """A container of a Ray pod."""

    name: str
    image: str
    env: list[EnvVar] | None = None
    env_from: list[EnvFromSource] | None = None
    resources: ResourceRequirements
    ports: list[ContainerPort] | None = None
    lifecycle: Lifecycle | None = None


class Toleration(K8sModel):
    """Lets a pod run on tainted (GPU) nodes."""

    key: str
    operator: Literal["Exists", "Equal"]
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class PodSpec(K8sModel):
    """``spec`` of a pod template."""

    containers: list[Container]
    termination_grace_period_seconds: int
    restart_policy: Literal["Always", "OnFailure", "Never"] | None = None
    service_account_name: str | None = None
    tolerations: list[Toleration] | None = None


class PodTemplateMeta(K8sModel):
    """``metadata`` of a pod template."""

    labels: dict[str, str]


class PodTemplate(K8sModel):
    """A pod template."""

    metadata: PodTemplateMeta
    spec: PodSpec


# --- KubeRay --------------------------------------------------------------------------------


class HeadGroupSpec(K8sModel):
    """The Ray head pod."""

    ray_start_params: dict[str, str]
    template: PodTemplate


class WorkerGroupSpec(K8sModel):
    """A group of identical Ray worker pods."""

    group_name: str
    replicas: int
    min_replicas: int
    max_replicas: int
    ray_start_params: dict[str, str]
    template: PodTemplate


class AuthOptions(K8sModel):
    """Ray token authentication of a cluster (KubeRay creates and mounts the token Secret)."""

    mode: Literal["disabled", "token"]


class RayClusterSpec(K8sModel):
    """The Ray cluster a RayJob or RayService runs on."""

    ray_version: str
    enable_in_tree_autoscaling: bool
    auth_options: AuthOptions | None = None
    head_group_spec: HeadGroupSpec
    worker_group_specs: list[WorkerGroupSpec]


class RayJobSpec(K8sModel):
    """``spec`` of a RayJob."""

    entrypoint: str
    job_id: str
    runtime_env_yaml: str = Field(serialization_alias="runtimeEnvYAML")
    shutdown_after_job_finishes: bool
    ttl_seconds_after_finished: int
    active_deadline_seconds: int | None = None
    submission_mode: Literal["K8sJobMode", "HTTPMode", "SidecarMode", "InteractiveMode"]
    submitter_pod_template: PodTemplate | None = None
    suspend: bool
    ray_cluster_spec: RayClusterSpec


class RayJob(K8sObject):
    """One experiment: a Ray cluster that runs the job driver, then goes away."""

    api_version: Literal["ray.io/v1"] = RAY_API
    kind: Literal["RayJob"] = "RayJob"
    spec: RayJobSpec


class RayServiceSpec(K8sModel):
    """``spec`` of a RayService: the Serve applications and the cluster that runs them."""

    serve_config_v2: str = Field(serialization_alias="serveConfigV2")
    ray_cluster_config: RayClusterSpec


class RayService(K8sObject):
    """Serving: a long-lived Ray cluster that runs the Serve config of the serving document."""

    api_version: Literal["ray.io/v1"] = RAY_API
    kind: Literal["RayService"] = "RayService"
    spec: RayServiceSpec


# --- Kueue ----------------------------------------------------------------------------------


class ResourceFlavorSpec(K8sModel):
    """``spec`` of a ResourceFlavor."""

    node_labels: dict[str, str] | None = None


class ResourceFlavor(K8sObject):
    """A kind of node that quota is counted on."""

    api_version: Literal["kueue.x-k8s.io/v1beta2"] = KUEUE_API
    kind: Literal["ResourceFlavor"] = "ResourceFlavor"
    spec: ResourceFlavorSpec


class WorkloadPriorityClass(K8sObject):
    """A named priority of workloads (top-level ``value``, as in Kueue's API)."""

    api_version: Literal["kueue.x-k8s.io/v1beta2"] = KUEUE_API
    kind: Literal["WorkloadPriorityClass"] = "WorkloadPriorityClass"
    value: int
    description: str | None = None


class ResourceAmount(K8sModel):
    """Quota of one resource in one flavor."""

    name: str
    nominal_quota: str
    borrowing_limit: str | None = None
    lending_limit: str | None = None


class FlavorQuotas(K8sModel):
    """The quotas of one flavor."""

    name: str
    resources: list[ResourceAmount]


class ResourceGroup(K8sModel):
    """Resources that are counted together, and their flavors."""

    covered_resources: list[str]
    flavors: list[FlavorQuotas]


class LabelSelector(K8sModel):
    """Selects objects by their labels."""

    match_labels: dict[str, str]


class BorrowWithinCohort(K8sModel):
    """Whether a queue may preempt to borrow."""

    policy: Literal["Never", "LowerPriority"]


class Preemption(K8sModel):
    """When a ClusterQueue's workloads may preempt others."""

    reclaim_within_cohort: Literal["Never", "LowerPriority", "Any"]
    borrow_within_cohort: BorrowWithinCohort
    within_cluster_queue: Literal["Never", "LowerPriority", "LowerOrNewerEqualPriority"]


class FairSharing(K8sModel):
    """Weight of a queue in fair sharing (a quantity)."""

    weight: str


class ClusterQueueSpec(K8sModel):
    """``spec`` of a ClusterQueue."""

    cohort_name: str
    namespace_selector: LabelSelector
    queueing_strategy: Literal["StrictFIFO", "BestEffortFIFO"]
    preemption: Preemption
    fair_sharing: FairSharing
    resource_groups: list[ResourceGroup]


class ClusterQueue(K8sObject):
    """A team's quota, in its cohort."""

    api_version: Literal["kueue.x-k8s.io/v1beta2"] = KUEUE_API
    kind: Literal["ClusterQueue"] = "ClusterQueue"
    spec: ClusterQueueSpec


class LocalQueueSpec(K8sModel):
    """``spec`` of a LocalQueue."""

    cluster_queue: str


class LocalQueue(K8sObject):
    """The queue a team's namespace submits to."""

    api_version: Literal["kueue.x-k8s.io/v1beta2"] = KUEUE_API
    kind: Literal["LocalQueue"] = "LocalQueue"
    spec: LocalQueueSpec


def to_yaml(objects: Sequence[K8sObject]) -> str:
    """Objects as multi-document YAML, in order (what ``kubectl apply -f`` reads)."""
    return yaml.dump_all(
        [o.to_manifest() for o in objects],
        Dumper=_BlockDumper,
        sort_keys=False,
        explicit_start=True,
    )


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (``runtimeEnvYAML``) as readable ``|`` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def cpu_quantity(cores: float) -> str:
    """CPU cores as a quantity: ``2`` -> ``"2"``, ``0.5`` -> ``"500m"``."""
    millicores = round(cores * 1000)
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def memory_quantity(gib: float) -> str:
    """Memory in GiB as a quantity: ``8`` -> ``"8Gi"``, ``1.5`` -> ``"1536Mi"``."""
    mib = round(gib * 1024)
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def weight_quantity(weight: float) -> str:
    """A fair-sharing weight as a quantity: ``1.0`` -> ``"1"``, ``0.5`` -> ``"500m"``."""
    return cpu_quantity(weight)
