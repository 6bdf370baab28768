"""The control plane's FastAPI app: built by :func:`create_app` from settings and a backend.

At start it migrates the database, syncs the teams file into it, registers the admin token's
hash and starts the queue driver; at stop it stops the driver.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from flywheel.admission import Workload
from flywheel.backends.base import ExperimentBackend
from flywheel.errors import (
    AuthenticationError,
    BundleError,
    BundleTooLargeError,
    DataNotFoundError,
    FlywheelError,
    JobError,
    JobNotFoundError,
    PermissionDeniedError,
    PlatformError,
    ServeConflictError,
    ServeError,
    ServeInputError,
    SpecError,
    TeamNotFoundError,
)
from flywheel.server.auth import TOKEN_PREFIX, register_token
from flywheel.server.db import is_ready, open_database
from flywheel.server.metrics import metrics, metrics_registry
from flywheel.server.mlflow_identities import MlflowIdentities
from flywheel.server.models import Team
from flywheel.server.monitor_loop import MonitorDriver
from flywheel.server.monitoring import check_and_retrain
from flywheel.server.monitoring import router as monitoring_router
from flywheel.server.queue import QueueDriver, RunCloser
from flywheel.server.routes import router
from flywheel.server.serve_finished import ServeFinished, progressive_models
from flywheel.server.serving import ServingPlane
from flywheel.server.serving import router as serving_router
from flywheel.server.serving_usage import ServingUsage
from flywheel.server.status_page import page_router as status_page_router
from flywheel.server.status_page import router as status_router
from flywheel.settings import Settings
from flywheel.specs.teams import TeamsSpec
from flywheel.wire import ErrorBody, ProblemView

API_PREFIX = "/api/v1"


@dataclass(frozen=True)
class ServerContext:
    """What every route needs: settings, teams, database sessions, the backend."""

    settings: Settings
    teams: TeamsSpec
    sessions: sessionmaker[Session]
    backend: ExperimentBackend
    serving: ServingPlane | None = None  # None: this control plane serves no models
    serving_usage: ServingUsage | None = None
    mlflow: MlflowIdentities | None = None  # None: MLflow runs without authentication

    def served(self) -> list[Workload]:
        """The served models, as the admitted workloads they count as against their quotas."""
        return self.serving_usage.workloads(self.teams) if self.serving_usage else []


def create_app(
    settings: Settings, teams: TeamsSpec, backend: ExperimentBackend, run_queue: bool = True,
    end_runs: RunCloser | None = None, serving: ServingPlane | None = None,
    mlflow: MlflowIdentities | None = None,
) -> FastAPI:  # fmt: skip
    """The control plane app, its database migrated and its teams synced. The queue driver and
    the periodic monitor run while the app's lifespan does; ``run_queue=False`` leaves both to
    the caller (tests call their ``step`` themselves). With ``mlflow``, each job runs with its
    team's MLflow identity."""

    context = start_context(settings, teams, backend, serving, mlflow)
    job_env = (lambda team: mlflow.team(team).env()) if mlflow is not None else None
    serve_finished = (
        ServeFinished(settings.tracking_uri, serving.operations) if serving is not None else None
    )
    driver = QueueDriver(
        context.sessions, teams, backend, settings.queue_interval_s, end_runs,
        served=context.served, job_env=job_env, serve_finished=serve_finished,
    )  # fmt: skip
    monitor = MonitorDriver(
        lambda: list(serving.operations.document().models) if serving is not None else [],
        lambda model: check_and_retrain(context.sessions, settings, teams, model),
        settings.monitor_interval_s,
    )
    rollouts = None
    if serving is not None and settings.backend == "kubernetes":
        # Nobody else drives the progressive rollouts the control plane starts for finished
        # jobs there; on the embedded platform the job's driver (or `rollout --wait`) does.
        rollouts = MonitorDriver(
            progressive_models(serving.operations), serving.operations.step,
            settings.queue_interval_s, name="flywheel-rollouts",
        )  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_queue:
            driver.start()
            monitor.start()
            if rollouts is not None:
                rollouts.start()
        try:
            yield
        finally:
            driver.close()
            monitor.close()
            if rollouts is not None:
                rollouts.close()

    app = FastAPI(
        title="flywheel control plane",
        version="1",
        description="Teams, tokens, experiments, the admission queue, serving and monitoring "
        "of one flywheel cluster.",
        lifespan=lifespan,
    )
    app.state.context = context
    app.state.metrics_registry = metrics_registry(
        context.sessions, teams, str(settings.storage_root), context.served
    )
    app.state.driver = driver
    app.state.monitor = monitor
    app.state.rollouts = rollouts
    app.include_router(router, prefix=API_PREFIX)
    app.include_router(serving_router, prefix=API_PREFIX)
    app.include_router(monitoring_router, prefix=API_PREFIX)
    app.include_router(status_router, prefix=API_PREFIX)
    app.include_router(status_page_router)
    app.add_api_route("/healthz", _healthz, include_in_schema=False)
    app.add_api_route("/readyz", _readyz, include_in_schema=False)
    app.add_api_route("/metrics", metrics, tags=["metrics"], response_class=Response,
                      responses=_METRICS_RESPONSES)  # fmt: skip
    _add_error_handlers(app)
    return app


_METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text format.", "content": {CONTENT_TYPE_LATEST: {}}},
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
}


def _healthz() -> dict[str, str]:
    """Liveness for `flywheel up` and `status` (no token: it says nothing about anyone)."""
    return {"status": "ok"}


def _readyz(request: Request) -> JSONResponse:
    """Readiness: the database answers and is migrated to head (no token; no details either)."""
    context: ServerContext = request.app.state.context
    if is_ready(context.sessions):
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not ready"}, status_code=503)


def start_context(
    settings: Settings, teams: TeamsSpec, backend: ExperimentBackend,
    serving: ServingPlane | None = None, mlflow: MlflowIdentities | None = None,
) -> ServerContext:  # fmt: skip
    """Open and migrate the database, sync teams, register the admin token."""
    sessions = open_database(settings.resolved_database_url)
    with sessions.begin() as session:
        sync_teams(session, teams)
        register_token(session, ensure_admin_token(settings.admin_token_path), admin=True)
    usage = ServingUsage(serving.operations.document, serving.owner) if serving else None
    return ServerContext(settings, teams, sessions, backend, serving, usage, mlflow)


def sync_teams(session: Session, teams: TeamsSpec) -> None:
    """Make the teams table match the teams file (teams no longer in it become inactive)."""
    stored = {t.name: t for t in session.scalars(select(Team))}
    for spec in teams.teams:
        priority = teams.priority_value(spec.priority)
        row = stored.pop(spec.name, None)
        if row is None:
            session.add(Team(name=spec.name, priority=priority, active=True))
        else:
            row.priority, row.active = priority, True
    for row in stored.values():
        row.active = False


def ensure_admin_token(path: Path) -> str:
    """The admin token from its 0600 file, created (folder 0700) when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    if path.is_file() and (token := path.read_text().strip()):
        path.chmod(0o600)
        return token
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    partial = path.with_suffix(f".{os.getpid()}.{time.monotonic_ns()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.replace(partial, path)  # atomic: a reader sees no token or the whole token
    return token


#: Error kinds and the HTTP status each answers with (the first match wins).
_STATUS: tuple[tuple[type[FlywheelError], int], ...] = (
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (JobNotFoundError, 404),
    (DataNotFoundError, 404),
    (TeamNotFoundError, 404),
    (BundleTooLargeError, 413),
    (BundleError, 400),
    (SpecError, 400),
    (JobError, 409),
    (ServeConflictError, 409),
    (ServeInputError, 400),
    (ServeError, 503),
    (PlatformError, 503),
    (FlywheelError, 400),
)


def _add_error_handlers(app: FastAPI) -> None:
    async def flywheel_error(request: Request, error: Exception) -> JSONResponse:
        status = next(code for kind, code in _STATUS if isinstance(error, kind))
        problems = error.problems if isinstance(error, SpecError) else []
        body = ErrorBody(
            error=str(error),
            kind=type(error).__name__,
            problems=[ProblemView(file=p.file, line=p.line, path=p.path, message=p.message)
                      for p in problems],
        ).model_dump()  # fmt: skip
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(body, status_code=status, headers=headers)

    app.add_exception_handler(FlywheelError, flywheel_error)
