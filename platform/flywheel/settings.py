"""Settings of flywheel, read from the environment (prefix ``FLYWHEEL_``) at an entry point.

Nothing here reads the environment at import time: build ``Settings()`` where a program starts
and pass it down.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Unix socket paths are limited to 107 bytes; Ray's session folder adds about 70 to its temp dir.
_MAX_RAY_TEMP_DIR_CHARS = 30
#: A Kubernetes namespace name (RFC 1123 label), and a RayService name (RFC 1035 label: KubeRay's
#: ValidateRayServiceMetadata, at most 47 characters, as it appends to it to name its clusters).
_DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
_MAX_RAYSERVICE_NAME_CHARS = 47


class Settings(BaseSettings):
    """Where the platform lives and how to reach it."""

    model_config = SettingsConfigDict(env_prefix="FLYWHEEL_", extra="ignore", frozen=True)

    home: Path = Field(
        default_factory=lambda: Path.home() / ".flywheel",
        description="Platform home: MLflow database and artifacts, Ray state, storage root.",
    )
    storage_root: str = Field(
        default_factory=lambda data: str(Path(data["home"]) / "storage"),
        min_length=1,
        description=(
            "Default storage root of experiments, serving state and (for s3://) MLflow artifacts: "
            "a local directory or `s3://bucket/prefix` (default: `storage` under home). "
            "S3 endpoint and credentials come from the standard AWS variables."
        ),
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address the embedded servers bind to. Loopback by default; change with care.",
    )
    ray_dashboard_port: int = Field(default=8265, description="Ray dashboard and Jobs API port.")
    ray_gcs_port: int = Field(default=6379, description="Ray head (GCS) port.")
    ray_client_port: int = Field(default=10001, description="Ray client server port.")
    ray_agent_port: int = Field(default=52365, description="Ray dashboard agent HTTP port.")
    ray_metrics_port: int = Field(
        default=8471,
        description="Port of Ray's metrics agent: Prometheus text of Ray, Serve and the gateway.",
    )
    ray_num_cpus: int | None = Field(
        default=None, description="CPUs the embedded Ray head offers (default: all of them)."
    )
    ray_object_store_memory_mib: int = Field(
        default=1024,
        ge=100,
        description="Shared memory of the embedded Ray head's object store, in MiB.",
    )
    mlflow_port: int = Field(default=5000, description="MLflow tracking server port.")
    serve_port: int = Field(
        default=8000, description="Port of the model gateway (Ray Serve HTTP proxy, OIP v2)."
    )
    serve_direct_ingress: bool = Field(
        default=True,
        description="Serve requests through HAProxy straight to the ingress replicas (Serve's "
        "direct ingress, one hop); false: through Serve's Python proxy.",
    )
    serve_haproxy_stats_port: int = Field(
        default=8404, description="HAProxy statistics page port (direct ingress only)."
    )
    serve_haproxy_metrics_port: int = Field(
        default=9101, description="HAProxy Prometheus exporter port (direct ingress only)."
    )
    serve_fallback_port: int = Field(
        default=8500,
        description="Port of Serve's fallback HTTP proxy, which HAProxy uses while no ingress "
        "replica is ready (direct ingress only).",
    )
    serve_max_request_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest request body the gateway accepts; larger ones get HTTP 413.",
    )
    ray_address: str | None = Field(
        default=None,
        description="Jobs API URL of a Ray cluster to use instead of the embedded one.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI to use instead of the embedded server.",
    )
    ray_auth_token: SecretStr | None = Field(
        default=None,
        description="Ray cluster token (default: read from the file `flywheel up` writes).",
    )
    ray_temp_dir: Path | None = Field(
        default=None,
        description="Ray's temp/session folder (default: under home when the path is short).",
    )
    control_plane_port: int = Field(default=8470, description="Control plane API port.")
    control_plane_url: str | None = Field(
        default=None,
        description="URL of a control plane to use instead of the embedded one.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the control plane's database (default: SQLite under "
        "home). PostgreSQL URLs work too.",
    )
    teams_file: Path = Field(
        default=Path("cluster/teams.yaml"),
        description="Teams file the control plane reads at start (relative to the working "
        "directory of `flywheel up`).",
    )
    token: SecretStr | None = Field(
        default=None, description="Team or admin token the CLI and client send."
    )
    token_file: Path | None = Field(
        default=None,
        description="File holding the token when FLYWHEEL_TOKEN is unset (default: the admin "
        "token file `flywheel up` writes, when readable).",
    )
    max_bundle_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest code bundle the control plane accepts from `submit`, in bytes.",
    )
    queue_interval_s: float = Field(
        default=1.0,
        gt=0.0,
        le=60.0,
        description="How often the control plane's queue driver reconciles and admits.",
    )
    train_report_poll_s: float = Field(
        default=0.25,
        gt=0.0,
        le=60.0,
        description="How often Ray Train's controller polls its workers, which is also how long "
        "a worker's `ray.train.report` may wait to be collected (Ray's own default, 2 s, costs "
        "up to 2 s per reported epoch). Sets RAY_TRAIN_HEALTH_CHECK_INTERVAL_S in every job.",
    )
    monitor_interval_s: float = Field(
        default=300.0,
        ge=0.0,
        description="How often the control plane checks every served model for drift (the "
        "check `flywheel monitor` runs), raising alerts and, where the serve section says so, "
        "retraining; 0 turns the periodic check off.",
    )

    backend: Literal["local", "kubernetes"] = Field(
        default="local",
        description="Where the control plane runs experiments: `local` (the Ray Jobs API of "
        "one Ray cluster) or `kubernetes` (KubeRay RayJobs admitted by Kueue, in the teams' "
        "namespaces; the Helm chart sets it).",
    )
    job_grace_period_s: int = Field(
        default=120,
        ge=1,
        description="On Kubernetes: terminationGracePeriodSeconds of every pod of a RayJob, the "
        "time a preempted job has to checkpoint.",
    )
    job_ttl_s: int = Field(
        default=3600,
        ge=0,
        description="On Kubernetes: seconds a finished RayJob is kept before KubeRay deletes it.",
    )
    job_image: str | None = Field(
        default=None,
        description="On Kubernetes: image of the Ray pods of RayJobs and of the RayService "
        "(default: flywheel's own image tag).",
    )
    serving_namespace: str = Field(
        default="flywheel",
        pattern=_DNS1123_LABEL,
        max_length=63,
        description="On Kubernetes: namespace of the platform's RayService, which serves the "
        "models (the chart sets its release namespace, where its Role allows RayServices).",
    )
    serving_name: str = Field(
        default="flywheel-serving",
        pattern=_DNS1035_LABEL,
        max_length=_MAX_RAYSERVICE_NAME_CHARS,
        description="On Kubernetes: name of the platform's RayService; KubeRay names its serve "
        "Service `<name>-serve-svc`.",
    )
    serving_gateway_url: str | None = Field(
        default=None,
        description="On Kubernetes: URL of the model gateway as the control plane and the "
        "clients inside the cluster reach it (default: the RayService's serve Service, "
        "`http://<serving_name>-serve-svc.<serving_namespace>.svc:8000`).",
    )
    job_s3_secret: str | None = Field(
        default=None,
        description="On Kubernetes: Secret with the AWS_* variables that every Ray pod gets "
        "(default: `flywheel-s3`).",
    )

    @property
    def jobs_url(self) -> str:
        """URL of the Ray Jobs API (the dashboard)."""
        return self.ray_address or f"http://{self.host}:{self.ray_dashboard_port}"

    @property
    def tracking_uri(self) -> str:
        """URL of the MLflow tracking server."""
        return self.mlflow_tracking_uri or f"http://{self.host}:{self.mlflow_port}"

    @property
    def serve_url(self) -> str:
        """URL of the model gateway."""
        return f"http://{self.host}:{self.serve_port}"

    @property
    def control_url(self) -> str:
        """URL of the control plane API."""
        return self.control_plane_url or f"http://{self.host}:{self.control_plane_port}"

    @property
    def resolved_database_url(self) -> str:
        """The control plane's database: the setting, else SQLite (WAL) under home."""
        return (
            self.database_url or f"sqlite:///{self.home.expanduser().absolute()}/control/control.db"
        )

    @property
    def admin_token_path(self) -> Path:
        """File holding the admin token (mode 0600), written by `flywheel up`."""
        return self.home / "control" / "admin_token"

    @property
    def mlflow_auth_config_path(self) -> Path:
        """MLflow's basic-auth config (mode 0600, admin password inside), written by `flywheel up`
        and read by the control plane."""
        return self.home / "mlflow" / "basic_auth.ini"

    @property
    def ray_auth_token_path(self) -> Path:
        """File holding the Ray cluster's authentication token (mode 0600)."""
        return self.home / "ray" / "auth_token"

    @property
    def resolved_ray_temp_dir(self) -> Path:
        """Ray's temp dir: under home when short enough for unix sockets, else under /tmp."""
        if self.ray_temp_dir is not None:
            return self.ray_temp_dir
        candidate = self.home / "ray" / "tmp"
        if len(str(candidate)) <= _MAX_RAY_TEMP_DIR_CHARS:
            return candidate
        digest = hashlib.sha256(str(self.home.resolve()).encode()).hexdigest()[:10]
        return Path("/tmp") / f"flywheel-ray-{digest}"
