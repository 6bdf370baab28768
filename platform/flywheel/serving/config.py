"""The serving document -> the Serve applications to run (what ``PUT /api/serve/applications/``
takes, and what a RayService's ``serveConfigV2`` holds).

One application per served model at ``/v2/models/<model>``: its ingress deployment parses OIP v2,
picks the version and runs it in the same replica. The route (versions, weights, batching) is the
deployment's ``user_config``, so that a traffic change reaches running replicas through
``reconfigure`` instead of restarting them. One more application at ``/`` answers the server-wide
endpoints (``GET /v2``, health) and unknown models.

The latency settings below are explicit, and docs/operations.md says why each has its value.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flywheel.rollout import ModelRoute, ServeTarget
from flywheel.serving.document import ServedModel, ServingDocument
from flywheel.specs.serving import AutoscalingSpec, ServeResourcesSpec

ROOT_APP = "flywheel"
INGRESS_DEPLOYMENT = "ingress"
ROOT_DEPLOYMENT = "root"
MODEL_APP_IMPORT = "flywheel.runtime.serve.app:model_app"
ROOT_APP_IMPORT = "flywheel.runtime.serve.app:root_app"

#: Requests one ingress replica takes at once before Serve queues them elsewhere.
MAX_ONGOING_REQUESTS = 64
#: Seconds between the replicas' load reports to the autoscaler, and the window it averages.
AUTOSCALING_METRICS_INTERVAL_S = 1.0
AUTOSCALING_LOOK_BACK_PERIOD_S = 5.0
#: Seconds between health checks of a replica, and how long one may take.
HEALTH_CHECK_PERIOD_S = 2.0
HEALTH_CHECK_TIMEOUT_S = 10.0
#: Seconds a stopping replica waits for its requests in flight.
GRACEFUL_SHUTDOWN_TIMEOUT_S = 10.0
#: Seconds an idle client connection stays open (keep-alive), so clients reuse connections.
KEEP_ALIVE_TIMEOUT_S = 60


class DeploymentConfig(BaseModel):
    """One deployment of an application, as Serve's config schema names its fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Deployment name.")
    user_config: dict[str, Any] | None = Field(default=None, description="Passed to reconfigure.")
    num_replicas: int | None = Field(default=None, description="Fixed replica count.")
    autoscaling_config: dict[str, float] | None = Field(
        default=None, description="Serve's autoscaling settings."
    )
    max_ongoing_requests: int = Field(description="Requests one replica takes at once.")
    ray_actor_options: dict[str, float] = Field(description="Resources of each replica.")
    health_check_period_s: float = Field(description="Seconds between health checks.")
    health_check_timeout_s: float = Field(description="Longest a health check may take, in s.")
    graceful_shutdown_timeout_s: float = Field(description="Drain time of a stopping replica.")


class ApplicationConfig(BaseModel):
    """One Serve application."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Application name.")
    route_prefix: str = Field(description="HTTP path prefix it answers.")
    import_path: str = Field(description="Builder of the application, module:function.")
    args: dict[str, Any] = Field(description="Arguments of the builder.")
    deployments: list[DeploymentConfig] = Field(description="Settings of its deployments.")


class ServeConfig(BaseModel):
    """Everything Serve runs: HTTP options and the applications."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    http_options: dict[str, str | int] = Field(description="Where Serve's HTTP ingress listens.")
    applications: list[ApplicationConfig] = Field(description="Every application.")

    def payload(self) -> dict[str, Any]:
        """The JSON body of ``PUT /api/serve/applications/``."""
        return self.model_dump(mode="json", exclude_none=True)


def model_app_name(model: str) -> str:
    """The Serve application of one served model."""
    return f"model-{model}"


def model_route_prefix(model: str) -> str:
    return f"/v2/models/{model}"


def document_to_serve_config(document: ServingDocument, target: ServeTarget) -> ServeConfig:
    """What Serve must run so that it serves ``document`` on the cluster ``target`` describes."""
    root = ApplicationConfig(
        name=ROOT_APP,
        route_prefix="/",
        import_path=ROOT_APP_IMPORT,
        args={"storage_root": target.storage_root},
        deployments=[_deployment(ROOT_DEPLOYMENT, None, None, ServeResourcesSpec(num_cpus=0))],
    )
    models = [
        _model_application(name, served, document.generation, target)
        for name, served in sorted(document.models.items())
    ]
    http: dict[str, str | int] = {
        "host": target.host, "port": target.port, "keep_alive_timeout_s": KEEP_ALIVE_TIMEOUT_S,
    }  # fmt: skip
    return ServeConfig(http_options=http, applications=[root, *models])


def served_to_route(model: str, served: ServedModel, generation: int) -> ModelRoute:
    """The route a model's ingress replicas follow (their ``user_config``)."""
    challenger = served.challenger
    return ModelRoute(
        model=model,
        champion=served.champion,
        challenger=None if challenger is None else challenger.version,
        mode=None if challenger is None else challenger.mode,
        challenger_percent=0.0 if challenger is None else challenger.percent,
        generation=generation,
        batching=served.serve.batching,
        log_sample_rate=served.serve.monitor.sample_rate,
        log_retention_hours=served.serve.monitor.retention_hours,
    )


def _model_application(
    model: str, served: ServedModel, generation: int, target: ServeTarget
) -> ApplicationConfig:
    route = served_to_route(model, served, generation)
    args = {
        "model": model,
        "tracking_uri": target.tracking_uri,
        "storage_root": target.storage_root,
        "max_request_bytes": target.max_request_bytes,
    }
    deployment = _deployment(
        INGRESS_DEPLOYMENT, route.model_dump(mode="json"), served.serve.autoscaling,
        served.serve.resources,
    )  # fmt: skip
    return ApplicationConfig(
        name=model_app_name(model),
        route_prefix=model_route_prefix(model),
        import_path=MODEL_APP_IMPORT,
        args=args,
        deployments=[deployment],
    )


def _deployment(
    name: str, user_config: dict[str, Any] | None, scaling: AutoscalingSpec | None,
    resources: ServeResourcesSpec,
) -> DeploymentConfig:  # fmt: skip
    actor: dict[str, float] = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus}
    if resources.memory_mib is not None:
        actor["memory"] = float(resources.memory_mib * 1024 * 1024)
    return DeploymentConfig(
        name=name,
        user_config=user_config,
        num_replicas=1 if scaling is None else None,
        autoscaling_config=None if scaling is None else _autoscaling(scaling),
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
        ray_actor_options=actor,
        health_check_period_s=HEALTH_CHECK_PERIOD_S,
        health_check_timeout_s=HEALTH_CHECK_TIMEOUT_S,
        graceful_shutdown_timeout_s=GRACEFUL_SHUTDOWN_TIMEOUT_S,
    )


def _autoscaling(scaling: AutoscalingSpec) -> dict[str, float]:
    return {
        "min_replicas": scaling.min_replicas,
        "initial_replicas": scaling.min_replicas,
        "max_replicas": scaling.max_replicas,
        "target_ongoing_requests": scaling.target_ongoing_requests,
        "upscale_delay_s": scaling.upscale_delay_s,
        "downscale_delay_s": scaling.downscale_delay_s,
        "metrics_interval_s": AUTOSCALING_METRICS_INTERVAL_S,
        "look_back_period_s": AUTOSCALING_LOOK_BACK_PERIOD_S,
    }
