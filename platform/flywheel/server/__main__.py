"""``python -m flywheel.server``: run the control plane (``flywheel up`` starts it this way).

It reads the settings from the environment and the teams file, and drives the backends they name
(:mod:`flywheel.server.backend_choice` for experiments, :func:`serving_plane` for serving): the
control plane alone holds the Ray token and, on Kubernetes, the ServiceAccount.

With the embedded MLflow, it reads MLflow's admin password from the auth config ``flywheel up``
wrote and makes every MLflow call of this process as the admin (MLflow's clients read
``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``); it manages the teams' and the
serving reader's MLflow users (:mod:`flywheel.server.mlflow_identities`).
"""

from __future__ import annotations

import functools
import logging
import os
import sys

import uvicorn

from flywheel.backends.documents import document_store
from flywheel.backends.serving import ServeRestBackend, ServingBackend
from flywheel.errors import FlywheelError
from flywheel.k8s.client import KubernetesApi
from flywheel.k8s.rayservice import cluster_serve_target, serve_service_url
from flywheel.k8s.serving_backend import RayServiceApi, RayServiceBackend
from flywheel.mlflow_auth import read_auth_config
from flywheel.rollout import serve_target
from flywheel.server.app import create_app
from flywheel.server.backend_choice import experiment_backend, ray_token
from flywheel.server.kubernetes_backend import target_from_settings
from flywheel.server.mlflow_identities import MlflowIdentities
from flywheel.server.serving import ServingPlane
from flywheel.serving_service import ServingService
from flywheel.settings import Settings
from flywheel.specs.teams import load_teams
from flywheel.tracking import ROLLOUT_EXPERIMENT, end_runs_of_job, ensure_experiment, model_team
from flywheel.wire import ClusterView

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings()
    try:
        teams = load_teams(settings.teams_file)
        mlflow = mlflow_identities(settings)
        if mlflow is not None:
            os.environ.update(mlflow.admin.env())
            mlflow.serving()  # before any Serve replica needs it
        backend = experiment_backend(settings, teams)
        serving = serving_plane(settings)
    except FlywheelError as e:
        print(f"flywheel control plane: {e}", file=sys.stderr)
        return 2
    end_runs = functools.partial(end_runs_of_job, settings.tracking_uri)
    app = create_app(settings, teams, backend, end_runs=end_runs, serving=serving, mlflow=mlflow)
    uvicorn.run(app, host=settings.host, port=settings.control_plane_port, log_level="info")
    return 0


def mlflow_identities(settings: Settings) -> MlflowIdentities | None:
    """The MLflow identities of the embedded MLflow, when `flywheel up` runs it with
    authentication (its auth config exists); None for another MLflow server."""
    if settings.mlflow_tracking_uri is not None:
        return None
    config = read_auth_config(settings.mlflow_auth_config_path.expanduser())
    if config is None:
        return None
    uri = settings.tracking_uri
    rollouts = functools.partial(ensure_experiment, uri, ROLLOUT_EXPERIMENT)
    return MlflowIdentities(uri, config.admin, rollouts)


def serving_plane(settings: Settings, kube_api: RayServiceApi | None = None) -> ServingPlane:
    """The serving service on this cluster: the document under the storage root, the backend
    ``settings`` name, the MLflow registry.

    ``local``: Serve's REST API with the Ray token; the gateway is ``settings.serve_url``.
    ``kubernetes``: the RayService ``settings.serving_name`` in ``settings.serving_namespace``
    (``kube_api`` replaces the in-cluster API in tests); the gateway is its serve Service,
    unless ``settings.serving_gateway_url`` names another URL.
    """
    store = document_store(settings.storage_root)
    backend: ServingBackend
    if settings.backend == "kubernetes":
        target = target_from_settings(settings)
        gateway_url = settings.serving_gateway_url or serve_service_url(
            settings.serving_name, settings.serving_namespace
        )
        api = kube_api if kube_api is not None else KubernetesApi.in_cluster()
        backend = RayServiceBackend(api, target, settings.serving_namespace, settings.serving_name)
        serving_target = cluster_serve_target(target, settings.serve_max_request_bytes)
        serving_target = serving_target.model_copy(update={"gateway_url": gateway_url})
    else:
        backend = ServeRestBackend(settings.jobs_url, ray_token(settings))
        serving_target, gateway_url = serve_target(settings), settings.serve_url
    service = ServingService(store, backend, serving_target)
    cluster = ClusterView(
        serve_url=gateway_url, tracking_uri=settings.tracking_uri,
        storage_root=str(settings.storage_root),
    )  # fmt: skip
    owner = functools.partial(model_team, settings.tracking_uri)
    return ServingPlane(service, owner, cluster)


if __name__ == "__main__":
    sys.exit(main())
