"""Which experiment backend the control plane drives, chosen from ``Settings.backend``.

``local``: the Ray Jobs API of one Ray cluster (the embedded one, or ``FLYWHEEL_RAY_ADDRESS``).
``kubernetes``: KubeRay RayJobs admitted by Kueue in the teams' namespaces, through the API
server with the control plane's ServiceAccount (the Helm chart sets this one).
"""

from __future__ import annotations

from flywheel.backends.base import ExperimentBackend
from flywheel.backends.ray_jobs import RayJobsBackend
from flywheel.k8s.backend import KubeRayApi
from flywheel.k8s.client import KubernetesApi
from flywheel.server.kubernetes_backend import KubernetesExperimentBackend, target_from_settings
from flywheel.settings import Settings
from flywheel.specs.teams import TeamsSpec


def experiment_backend(
    settings: Settings, teams: TeamsSpec, kube_api: KubeRayApi | None = None
) -> ExperimentBackend:
    """The backend ``settings`` name; ``kube_api`` replaces the in-cluster API (tests)."""
    if settings.backend == "kubernetes":
        api = kube_api if kube_api is not None else KubernetesApi.in_cluster()
        return KubernetesExperimentBackend(api, teams, target_from_settings(settings))
    return RayJobsBackend(settings.jobs_url, ray_token(settings), settings.ray_num_cpus)


def ray_token(settings: Settings) -> str | None:
    """The Ray cluster's token: the setting, else the file `flywheel up` writes."""
    if settings.ray_auth_token is not None:
        return settings.ray_auth_token.get_secret_value()
    path = settings.ray_auth_token_path
    return path.read_text().strip() if path.is_file() else None
