"""The serving document as a KubeRay RayService: ``serveConfigV2`` plus the cluster to run it.

``serveConfigV2`` is :func:`~flywheel.serving.config.document_to_serve_config` rendered for the
cluster: Serve listens on 0.0.0.0 inside the head pod (KubeRay's serve Service sends traffic
there), and the storage root and MLflow are the ones pods reach (``s3://``, the in-cluster URL).
The worker groups are sized from the Serve config's model ingress deployments: one pod per
ingress replica, CPU-only models in one group and GPU models in another, between the sum of the
models' minimum replicas and the sum of their maximums (Ray's autoscaler adds pods as Serve's
autoscaling adds replicas). Sizing from the config, not the document, lets the control plane's
:class:`~flywheel.k8s.serving_backend.RayServiceBackend` render exactly the config
:class:`~flywheel.serving_service.ServingService` hands it. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import yaml

from flywheel.k8s.kueue import GPU_RESOURCE
from flywheel.k8s.objects import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SERVING_LABEL,
    TEAM_LABEL,
    Container,
    ContainerPort,
    HeadGroupSpec,
    ObjectMeta,
    PodSpec,
    PodTemplate,
    PodTemplateMeta,
    RayClusterSpec,
    RayService,
    RayServiceSpec,
    Toleration,
    WorkerGroupSpec,
    memory_quantity,
)
from flywheel.k8s.rayjob import K8sTarget, head_container, ray_container
from flywheel.rollout import ServeTarget
from flywheel.serving.config import (
    INGRESS_DEPLOYMENT,
    ROOT_APP,
    DeploymentConfig,
    ServeConfig,
    document_to_serve_config,
)
from flywheel.serving.document import ServingDocument

#: Name of the platform's RayService (a team's is ``<team>-serving``).
SERVICE_NAME = "flywheel-serving"
#: Default namespace of the RayService: the chart's documented release namespace, where its Role
#: allows RayServices (``Settings.serving_namespace``; the chart sets it to its release namespace).
SERVICE_NAMESPACE = "flywheel"
#: Port of Serve's HTTP proxy in the pods (KubeRay's serve Service targets the port named serve).
SERVE_PORT = 8000
#: Address Serve binds to inside the pod: every interface, so the Service can reach it.
SERVE_HOST = "0.0.0.0"


def cluster_serve_target(target: K8sTarget, max_request_bytes: int) -> ServeTarget:
    """Where the serving data plane finds things from inside the cluster's pods."""
    return ServeTarget(
        tracking_uri=target.tracking_uri,
        storage_root=target.storage_root,
        host=SERVE_HOST,
        port=SERVE_PORT,
        max_request_bytes=max_request_bytes,
    )


def document_to_rayservice(
    document: ServingDocument,
    target: K8sTarget,
    max_request_bytes: int,
    team: str | None = None,
    namespace: str = SERVICE_NAMESPACE,
    name: str = SERVICE_NAME,
) -> RayService:
    """The RayService that serves ``document`` (for ``team``, or the whole platform as ``name``)."""
    config = document_to_serve_config(document, cluster_serve_target(target, max_request_bytes))
    return serve_config_to_rayservice(
        config, target, f"{team}-serving" if team else name, namespace, team
    )


def serve_config_to_rayservice(
    config: ServeConfig, target: K8sTarget, name: str, namespace: str, team: str | None = None
) -> RayService:
    """The RayService named ``name`` in ``namespace`` whose ``serveConfigV2`` is ``config``."""
    labels = {MANAGED_BY_LABEL: MANAGED_BY} | ({TEAM_LABEL: team} if team else {})
    pods = labels | {SERVING_LABEL: name}  # what the chart's serving NetworkPolicy selects
    cluster = RayClusterSpec(
        ray_version=target.ray_version,
        enable_in_tree_autoscaling=True,  # Serve's autoscaling asks Ray for pods
        head_group_spec=_head_group(target, pods),
        worker_group_specs=_worker_groups(config, target, pods),
    )
    return RayService(
        metadata=ObjectMeta(name=name, namespace=namespace, labels=labels),
        spec=RayServiceSpec(
            serve_config_v2=yaml.safe_dump(config.payload(), sort_keys=False),
            ray_cluster_config=cluster,
        ),
    )


def serve_service_url(name: str, namespace: str) -> str:
    """URL of the serve Service KubeRay creates for the RayService ``name`` (``<name>-serve-svc``,
    port 8000 named serve), as pods and the control plane reach it inside the cluster."""
    return f"http://{name}-serve-svc.{namespace}.svc:{SERVE_PORT}"


def _head_group(target: K8sTarget, labels: dict[str, str]) -> HeadGroupSpec:
    container = head_container(target, ContainerPort(name="serve", container_port=SERVE_PORT))
    return HeadGroupSpec(
        # The head runs Serve's controller and proxy and the root app (0 CPUs), no replicas.
        ray_start_params={"num-cpus": "0", "dashboard-host": "0.0.0.0"},
        template=_template(container, labels, target, gpu=False),
    )


def _worker_groups(
    config: ServeConfig, target: K8sTarget, labels: dict[str, str]
) -> list[WorkerGroupSpec]:
    ingresses = _model_ingresses(config)
    cpu_only = [d for d in ingresses if d.ray_actor_options.get("num_gpus", 0) == 0]
    on_gpus = [d for d in ingresses if d.ray_actor_options.get("num_gpus", 0) > 0]
    groups = [("cpu-serve", cpu_only), ("gpu-serve", on_gpus)]
    return [_group(name, models, target, labels) for name, models in groups if models]


def _model_ingresses(config: ServeConfig) -> list[DeploymentConfig]:
    """The ingress deployment of every model's application, in the config's order; the root
    application asks for no CPUs and runs on the head."""
    return [
        deployment
        for app in config.applications
        if app.name != ROOT_APP
        for deployment in app.deployments
        if deployment.name == INGRESS_DEPLOYMENT
    ]


def _group(
    name: str, models: Sequence[DeploymentConfig], target: K8sTarget, labels: dict[str, str]
) -> WorkerGroupSpec:
    actors = [m.ray_actor_options for m in models]
    pod_cpu = max(1, max(math.ceil(a.get("num_cpus", 0)) for a in actors))
    pod_gpu = max(math.ceil(a.get("num_gpus", 0)) for a in actors)
    memory_gib = max(
        pod_cpu * target.memory_gib_per_cpu,
        max(a.get("memory", 0) / 1024**3 for a in actors),
    )
    requests = {"cpu": str(pod_cpu), "memory": memory_quantity(memory_gib)}
    if pod_gpu:
        requests[GPU_RESOURCE] = str(pod_gpu)
    low = sum(_replicas(m)[0] for m in models)
    high = sum(_replicas(m)[1] for m in models)
    container = ray_container("ray-worker", requests, target)
    return WorkerGroupSpec(
        group_name=name,
        replicas=low,
        min_replicas=low,
        max_replicas=high,
        ray_start_params={"num-cpus": str(pod_cpu), "num-gpus": str(pod_gpu)},
        template=_template(container, labels, target, gpu=pod_gpu > 0),
    )


def _replicas(deployment: DeploymentConfig) -> tuple[int, int]:
    """Fewest and most replicas of an ingress deployment (fixed, or its autoscaling range)."""
    scaling = deployment.autoscaling_config
    if scaling is None:
        fixed = deployment.num_replicas or 1
        return fixed, fixed
    return int(scaling["min_replicas"]), int(scaling["max_replicas"])


def _template(
    container: Container, labels: dict[str, str], target: K8sTarget, gpu: bool
) -> PodTemplate:
    tolerations = (
        [Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")] if gpu else None
    )
    return PodTemplate(
        metadata=PodTemplateMeta(labels=dict(labels)),
        spec=PodSpec(
            containers=[container],
            termination_grace_period_seconds=target.grace_period_s,
            tolerations=tolerations,
        ),
    )
