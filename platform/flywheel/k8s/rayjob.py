"""Job plan -> RayJob (ray.io/v1) in the team's namespace, queued through Kueue.

The RayJob brings up a Ray cluster of its own (a CPU head that schedules nothing, and one worker
group sized from the spec's scaling and search concurrency), runs the job driver on it with the
code bundle from the storage root as ``working_dir``, and shuts the cluster down when the job
ends (Kueue requires it). Kueue admits it by the ``queue-name`` and ``priority-class`` labels;
an eviction suspends it, and its pods get ``terminationGracePeriodSeconds`` to write their
checkpoints and search state.

KubeRay deletes the pods of a suspended RayJob without stopping the Ray job first, and the
kubelet's SIGTERM reaches ``ray start``, not the driver. So the head's ``preStop`` hook stops the
Ray job through Ray's own Jobs API: the job supervisor sends the driver SIGTERM (which
:mod:`flywheel.runtime.driver` traps) and waits ``RAY_JOB_STOP_WAIT_TIME_S`` for it to exit,
within the pod's grace period. Pure.
"""

from __future__ import annotations

import math

import yaml
from pydantic import BaseModel, ConfigDict, Field

from flywheel.k8s.kueue import GPU_RESOURCE, local_queue_name, team_namespace
from flywheel.k8s.objects import (
    EXPERIMENT_LABEL,
    JOB_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PRIORITY_LABEL,
    QUEUE_LABEL,
    TEAM_LABEL,
    Container,
    ContainerPort,
    EnvFromSource,
    EnvVar,
    ExecAction,
    HeadGroupSpec,
    Lifecycle,
    LifecycleHandler,
    ObjectMeta,
    PodSpec,
    PodTemplate,
    PodTemplateMeta,
    RayClusterSpec,
    RayJob,
    RayJobSpec,
    ResourceRequirements,
    SecretRef,
    Toleration,
    WorkerGroupSpec,
    cpu_quantity,
    memory_quantity,
)
from flywheel.plans import META_BUNDLE, JobPlan
from flywheel.specs.experiment import ExperimentSpec

#: KubeRay appends 6 characters to a RayJob's name for its RayCluster, whose name is at most 53.
MAX_RAYJOB_NAME_CHARS = 47
#: Length of the random suffix of a job id (see :func:`flywheel.plans.new_job_id`).
_JOB_ID_SUFFIX_CHARS = 8
#: The pod that runs `ray job submit` (K8sJobMode): every pod in a team namespace must ask for
#: what it uses, or the namespace's ResourceQuota refuses it. KubeRay fills in its command.
SUBMITTER_REQUESTS = {"cpu": "500m", "memory": "1Gi"}
#: Seconds of the grace period kept for what follows the driver's exit (Ray's own shutdown).
_SHUTDOWN_MARGIN_S = 10


class K8sTarget(BaseModel):
    """Where and how experiments run on Kubernetes: the chart's values, seen from a RayJob."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = Field(
        default="flywheel/flywheel:0.1.0",
        min_length=1,
        description="Container image with Ray and flywheel installed (head and workers).",
    )
    ray_version: str = Field(default="2.60.0", description="Ray version in the image.")
    storage_root: str = Field(
        default="s3://flywheel/storage",
        pattern=r"^s3://[a-z0-9.-]{3,63}(/.*)?$",
        description="Storage root on S3: code bundles, checkpoints, search state.",
    )
    tracking_uri: str = Field(
        default="http://flywheel-mlflow.flywheel.svc:5000",
        description="MLflow tracking server, as pods in the team namespaces reach it.",
    )
    s3_secret: str = Field(
        default="flywheel-s3",
        description="Secret with the AWS_* variables (endpoint, keys, region) for every pod.",
    )
    ttl_s: int = Field(
        default=3600, ge=0, description="Seconds a finished RayJob is kept before deletion."
    )
    grace_period_s: int = Field(
        default=120,
        ge=1,
        description="terminationGracePeriodSeconds of every pod: time to checkpoint on eviction.",
    )
    head_cpu: float = Field(default=1.0, gt=0.0, description="CPU cores of the head pod.")
    head_memory_gib: float = Field(default=4.0, gt=0.0, description="Memory of the head pod.")
    memory_gib_per_cpu: float = Field(
        default=4.0, gt=0.0, description="Memory a worker pod gets per CPU core it requests."
    )


def rayjob_name(job_id: str) -> str:
    """A RayJob name for a job id: the id itself, or shortened keeping its random suffix."""
    if len(job_id) <= MAX_RAYJOB_NAME_CHARS:
        return job_id
    suffix = job_id[-_JOB_ID_SUFFIX_CHARS:]
    stem = job_id[: MAX_RAYJOB_NAME_CHARS - _JOB_ID_SUFFIX_CHARS - 1].rstrip("-")
    return f"{stem}-{suffix}"


def bundle_zip_url(plan: JobPlan) -> str:
    """The code bundle as one zip on the storage root: Ray reads remote working_dirs as zips."""
    return f"{plan.metadata[META_BUNDLE]}.zip"


def plan_to_rayjob(plan: JobPlan, priority_class: str, target: K8sTarget) -> RayJob:
    """The RayJob that runs ``plan`` in its team's namespace, with its team's priority."""
    spec = plan.spec
    labels = {
        MANAGED_BY_LABEL: MANAGED_BY,
        TEAM_LABEL: spec.team,
        EXPERIMENT_LABEL: spec.name,
        JOB_LABEL: plan.job_id,
        QUEUE_LABEL: local_queue_name(spec.team),
        PRIORITY_LABEL: priority_class,
    }
    env_vars = {**plan.env_vars, "RAY_JOB_STOP_WAIT_TIME_S": str(driver_stop_wait_s(target))}
    runtime_env = {"working_dir": bundle_zip_url(plan), "env_vars": env_vars}
    cluster = RayClusterSpec(
        ray_version=target.ray_version,
        enable_in_tree_autoscaling=False,  # Kueue admits a fixed size
        head_group_spec=_head_group(plan, target),
        worker_group_specs=[_worker_group(spec, target)],
    )
    return RayJob(
        metadata=ObjectMeta(
            name=rayjob_name(plan.job_id), namespace=team_namespace(spec.team), labels=labels
        ),
        spec=RayJobSpec(
            entrypoint=plan.entrypoint,
            job_id=plan.job_id,
            runtime_env_yaml=yaml.safe_dump(runtime_env, sort_keys=True),
            shutdown_after_job_finishes=True,
            ttl_seconds_after_finished=target.ttl_s,
            submission_mode="K8sJobMode",
            submitter_pod_template=_submitter(spec, target),
            suspend=True,  # Kueue unsuspends it on admission
            ray_cluster_spec=cluster,
        ),
    )


def driver_stop_wait_s(target: K8sTarget) -> int:
    """Seconds the driver gets between SIGTERM and SIGKILL when its pods are evicted."""
    return max(1, target.grace_period_s - _SHUTDOWN_MARGIN_S)


def concurrent_workers(spec: ExperimentSpec) -> int:
    """Training workers that run at once: the final training's, or the busiest search stage's."""
    workers = spec.train.scaling.num_workers
    if spec.search is None:
        return workers
    per_trial = spec.search.trial_workers
    stages = spec.search.resolved_stages(spec.train.epochs)
    busiest = max(min(s.max_concurrent, s.trials) for s in stages)  # as admission.demand_of
    return max(workers, busiest * per_trial)


def worker_ray_resources(spec: ExperimentSpec) -> tuple[float, float]:
    """CPUs and GPUs one training worker asks Ray for (see ``ScalingSpec``)."""
    scaling = spec.train.scaling
    cpu = scaling.resources_per_worker.get("CPU", 1.0)
    gpu = scaling.resources_per_worker.get("GPU", 1.0 if scaling.use_gpu else 0.0)
    return cpu, gpu


def _head_group(plan: JobPlan, target: K8sTarget) -> HeadGroupSpec:
    stop = ["ray", "job", "stop", "--address", "http://127.0.0.1:8265", plan.job_id]
    container = head_container(target).model_copy(
        update={"lifecycle": Lifecycle(pre_stop=LifecycleHandler(exec=ExecAction(command=stop)))}
    )
    return HeadGroupSpec(
        # The head runs the job driver only: trials go to the workers.
        ray_start_params={"num-cpus": "0", "dashboard-host": "0.0.0.0"},
        template=_template(plan.spec, container, target, False),
    )


def _worker_group(spec: ExperimentSpec, target: K8sTarget) -> WorkerGroupSpec:
    cpu, gpu = worker_ray_resources(spec)
    pod_cpu, pod_gpu = max(1, math.ceil(cpu)), math.ceil(gpu)
    requests = {
        "cpu": str(pod_cpu),
        "memory": memory_quantity(pod_cpu * target.memory_gib_per_cpu),
    }
    if pod_gpu:
        requests[GPU_RESOURCE] = str(pod_gpu)
    replicas = concurrent_workers(spec)
    return WorkerGroupSpec(
        group_name="gpu-workers" if pod_gpu else "cpu-workers",
        replicas=replicas,
        min_replicas=replicas,
        max_replicas=replicas,
        ray_start_params={"num-cpus": str(pod_cpu), "num-gpus": str(pod_gpu)},
        template=_template(
            spec, ray_container("ray-worker", requests, target), target, pod_gpu > 0
        ),
    )


def _submitter(spec: ExperimentSpec, target: K8sTarget) -> PodTemplate:
    template = _template(
        spec, ray_container("ray-job-submitter", SUBMITTER_REQUESTS, target), target, False
    )
    return template.model_copy(
        update={"spec": template.spec.model_copy(update={"restart_policy": "Never"})}
    )


def head_container(target: K8sTarget, *ports: ContainerPort) -> Container:
    """The Ray head's container: the target's head size, GCS and dashboard ports, and ``ports``."""
    requests = {
        "cpu": cpu_quantity(target.head_cpu),
        "memory": memory_quantity(target.head_memory_gib),
    }
    known = [
        ContainerPort(name="gcs", container_port=6379),
        ContainerPort(name="dashboard", container_port=8265),
    ]
    return ray_container("ray-head", requests, target).model_copy(
        update={"ports": [*known, *ports]}
    )


def ray_container(name: str, requests: dict[str, str], target: K8sTarget) -> Container:
    """A Ray pod's container: the image, MLflow's URL and the S3 variables; limits = requests."""
    return Container(
        name=name,
        image=target.image,
        env=[EnvVar(name="MLFLOW_TRACKING_URI", value=target.tracking_uri)],
        env_from=[EnvFromSource(secret_ref=SecretRef(name=target.s3_secret))],
        resources=ResourceRequirements(requests=requests, limits=dict(requests)),
    )


def _template(
    spec: ExperimentSpec, container: Container, target: K8sTarget, gpu: bool
) -> PodTemplate:
    tolerations = (
        [Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")] if gpu else None
    )
    return PodTemplate(
        metadata=PodTemplateMeta(labels={MANAGED_BY_LABEL: MANAGED_BY, TEAM_LABEL: spec.team}),
        spec=PodSpec(
            containers=[container],
            termination_grace_period_seconds=target.grace_period_s,
            tolerations=tolerations,
        ),
    )
