"""A serving plane for control plane tests: the real serving service over the file document
store, a real MLflow registry on SQLite, an in-memory Serve backend (a real ServingBackend
implementation) and a real HTTP server standing in for the gateway's statistics endpoint."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mlflow import MlflowClient

from flywheel.backends.documents import FileDocumentStore
from flywheel.backends.serving import ApplicationState, DeploymentState
from flywheel.rollout import ModelRoute, ServeTarget
from flywheel.server.serving import ServingPlane
from flywheel.serving.config import ServeConfig
from flywheel.serving_service import ServingService
from flywheel.tracking import TAG_TEAM, model_team
from flywheel.wire import ClusterView

from .helpers import TEAMS


class MemoryServe:
    """Runs whatever config it is given at once."""

    def __init__(self) -> None:
        self.applied: list[ServeConfig] = []

    def apply(self, config: ServeConfig) -> None:
        self.applied.append(config)

    def applications(self) -> dict[str, ApplicationState]:
        if not self.applied:
            return {}
        states = {}
        for app in self.applied[-1].applications:
            deployments = []
            for deployment in app.deployments:
                config = deployment.user_config
                generation = ModelRoute.model_validate(config).generation if config else None
                deployments.append(DeploymentState(deployment.name, "HEALTHY", 1, generation))
            states[app.name] = ApplicationState(app.name, "RUNNING", "", tuple(deployments))
        return states


def register(
    uri: str, model: str, team: str | None, source: Path, versions: int = 2,
    artifacts: Path | None = None,
) -> None:  # fmt: skip
    """``versions`` versions of ``model``, produced by a run of ``team`` (None: no team tag),
    whose artifacts go to ``artifacts`` (default: MLflow's, ./mlruns)."""
    client = MlflowClient(uri)
    location = str(artifacts) if artifacts is not None else None
    experiment = client.create_experiment(f"runs-of-{model}", artifact_location=location)
    tags = {TAG_TEAM: team} if team else {}
    run = client.create_run(experiment, tags=tags)
    client.create_registered_model(model)
    for _ in range(versions):
        client.create_model_version(model, source=str(source), run_id=run.info.run_id)


class EmptyStats(BaseHTTPRequestHandler):
    """The gateway's statistics endpoint before any request: an empty list."""

    def do_GET(self) -> None:
        body = b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextmanager
def stats_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EmptyStats)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def serving_plane(tmp_path: Path, stats_port: int) -> ServingPlane:
    """Models ``digits-vision`` and ``digits-language`` (two versions each, from a run of the
    first and second team) and ``digits-nobody`` (registered outside an experiment)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    artifacts = tmp_path / "artifacts"  # a readiness report logs one
    register(uri, "digits-vision", TEAMS.teams[0].name, tmp_path / "model", 2, artifacts)
    register(uri, "digits-language", TEAMS.teams[1].name, tmp_path / "model", 2, artifacts)
    register(uri, "digits-nobody", None, tmp_path / "model", 2, artifacts)
    target = ServeTarget(
        tracking_uri=uri, storage_root=str(tmp_path / "storage"), host="127.0.0.1",
        port=stats_port, max_request_bytes=1024, dashboard_url="http://127.0.0.1:2",
    )  # fmt: skip
    store = FileDocumentStore(tmp_path / "storage" / "serving")
    service = ServingService(store, MemoryServe(), target, ready_timeout_s=5.0)
    cluster = ClusterView(serve_url="http://127.0.0.1:1", tracking_uri=uri, storage_root="/s")
    return ServingPlane(service, functools.partial(model_team, uri), cluster)
