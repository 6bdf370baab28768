"""``python -m flywheel.server``: run the control plane (``flywheel up`` starts it this way).

It reads the settings from the environment and the teams file, and drives the backend they name
(:mod:`flywheel.server.backend_choice`): the control plane alone holds the Ray token.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import uvicorn

from flywheel.backends.documents import FileDocumentStore
from flywheel.backends.serving import ServeRestBackend
from flywheel.errors import FlywheelError
from flywheel.rollout import serve_target
from flywheel.server.app import create_app
from flywheel.server.backend_choice import experiment_backend, ray_token
from flywheel.server.serving import ServingPlane
from flywheel.serving_service import ServingService
from flywheel.settings import Settings
from flywheel.specs.teams import load_teams
from flywheel.tracking import end_runs_of_job, model_team
from flywheel.wire import ClusterView

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings()
    try:
        teams = load_teams(settings.teams_file)
        backend = experiment_backend(settings, teams)
    except FlywheelError as e:
        print(f"flywheel control plane: {e}", file=sys.stderr)
        return 2
    end_runs = functools.partial(end_runs_of_job, settings.tracking_uri)
    # On Kubernetes, models are served by a RayService (`flywheel k8s render-serving`); the
    # control plane's serving endpoints drive Serve's REST API on the local backend only.
    serving = serving_plane(settings) if settings.backend == "local" else None
    app = create_app(settings, teams, backend, end_runs=end_runs, serving=serving)
    uvicorn.run(app, host=settings.host, port=settings.control_plane_port, log_level="info")
    return 0


def serving_plane(settings: Settings) -> ServingPlane:
    """The serving service on this cluster: the document under the storage root, Serve's REST
    API with the Ray token, the MLflow registry."""
    store = FileDocumentStore(Path(settings.storage_root) / "serving")
    backend = ServeRestBackend(settings.jobs_url, ray_token(settings))
    service = ServingService(store, backend, serve_target(settings))
    cluster = ClusterView(
        serve_url=settings.serve_url, tracking_uri=settings.tracking_uri,
        storage_root=str(settings.storage_root),
    )  # fmt: skip
    owner = functools.partial(model_team, settings.tracking_uri)
    return ServingPlane(service, owner, cluster)


if __name__ == "__main__":
    sys.exit(main())
