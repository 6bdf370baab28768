"""Routes of ``/api/v1``. Every route needs a token; errors are :class:`ErrorBody` JSON.

Each handler opens one transaction: it commits when the handler returns and rolls back when it
raises, so a refused request changes nothing.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, Security, UploadFile
from fastapi.responses import PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from flywheel.errors import BundleTooLargeError, FlywheelError, TeamNotFoundError
from flywheel.server import experiments, views
from flywheel.server.auth import Caller, authenticate, issue_token
from flywheel.server.experiments import experiment_view, get_experiment
from flywheel.wire import (
    ErrorBody,
    ExperimentView,
    Explanation,
    MlflowAccess,
    QueueView,
    TeamUsage,
    TokenCreated,
    WhoAmI,
)

_bearer = HTTPBearer(auto_error=False, description="A team token or the admin token.")
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 503)
}
_UPLOAD_CHUNK_BYTES = 1024 * 1024

router = APIRouter(responses=ERROR_RESPONSES)


def context(request: Request) -> Any:
    return request.app.state.context


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Caller:
    """The token's team (or the admin); 401 without a known token."""
    header = f"Bearer {credentials.credentials}" if credentials is not None else None
    with context(request).sessions.begin() as session:
        return authenticate(session, header)


CallerDep = Annotated[Caller, Depends(caller)]


class ResumeRequest(BaseModel):
    """Continue the search of the last experiment with this name."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=64, description="Experiment name, as in its spec.")
    team: str | None = Field(
        default=None, max_length=64, description="Its team (the admin token must give it)."
    )


@router.get("/whoami", response_model=WhoAmI, tags=["tokens"])
def whoami(who: CallerDep) -> WhoAmI:
    """The team the token acts for."""
    return WhoAmI(team=who.team, admin=who.admin)


@router.post("/experiments", response_model=ExperimentView, status_code=201, tags=["experiments"])
def submit(
    request: Request,
    who: CallerDep,
    spec_file: Annotated[
        str,
        Form(
            max_length=255,
            pattern=r"^[^/\\].*\.ya?ml$",
            description="The spec's relative path in the bundle (a .yaml or .yml file).",
        ),
    ],
    bundle: Annotated[UploadFile, File(description="The experiment folder as a tar.gz.")],
    resume: Annotated[
        bool, Form(description="Continue the experiment's last search instead of a new one.")
    ] = False,
) -> ExperimentView:
    """Queue an experiment: its spec and its folder (a tar.gz), checked before anything is kept."""
    ctx = context(request)
    with tempfile.TemporaryDirectory(prefix="flywheel-upload-") as scratch:
        archive = _save_upload(
            bundle, Path(scratch) / "bundle.tar.gz", ctx.settings.max_bundle_bytes
        )
        with ctx.sessions.begin() as session:
            return experiments.submit_experiment(
                session, ctx.settings, ctx.teams, who, archive, spec_file, resume
            )


@router.post(
    "/experiments/resume", response_model=ExperimentView, status_code=201, tags=["experiments"]
)
def resume(request: Request, who: CallerDep, body: ResumeRequest) -> ExperimentView:
    """Queue a continuation of an experiment's last search (finished trials are not rerun)."""
    ctx = context(request)
    with ctx.sessions.begin() as session:
        return experiments.resume_experiment(
            session, ctx.settings, ctx.teams, who, body.name, body.team
        )


@router.get("/experiments", response_model=list[ExperimentView], tags=["experiments"])
def list_experiments(request: Request, who: CallerDep) -> list[ExperimentView]:
    """The caller's team's experiments, newest first (every team's for the admin)."""
    with context(request).sessions.begin() as session:
        return experiments.list_experiments(session, who)


@router.get("/experiments/{experiment_id}", response_model=ExperimentView, tags=["experiments"])
def get(request: Request, who: CallerDep, experiment_id: str) -> ExperimentView:
    """One experiment with its state history."""
    with context(request).sessions.begin() as session:
        return experiment_view(session, get_experiment(session, who, experiment_id), history=True)


@router.post(
    "/experiments/{experiment_id}/stop", response_model=ExperimentView, tags=["experiments"]
)
def stop(request: Request, who: CallerDep, experiment_id: str) -> ExperimentView:
    """Stop an experiment: a waiting one at once, a running one at the next queue step."""
    with context(request).sessions.begin() as session:
        experiment = experiments.request_stop(session, who, experiment_id)
        return experiment_view(session, experiment, history=True)


@router.get(
    "/experiments/{experiment_id}/logs",
    response_model=None,
    responses={
        200: {
            "description": "The log as text (chunked while it grows, with `follow`).",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
    tags=["experiments"],
)
def logs(
    request: Request,
    who: CallerDep,
    experiment_id: str,
    follow: Annotated[bool, Query(description="Stream until the job ends.")] = False,
) -> PlainTextResponse | StreamingResponse:
    """The log of the experiment's current job; with ``follow``, streamed (chunked) as it grows."""
    ctx = context(request)
    with ctx.sessions.begin() as session:
        job_id = get_experiment(session, who, experiment_id).ray_job_id
    if job_id is None:
        return PlainTextResponse("")
    if not follow:
        return PlainTextResponse(ctx.backend.logs(job_id))
    return StreamingResponse(_tail(ctx.backend, job_id), media_type="text/plain")


@router.get("/experiments/{experiment_id}/explain", response_model=Explanation, tags=["queue"])
def explain(request: Request, who: CallerDep, experiment_id: str) -> Explanation:
    """Why the experiment waits: which quota, who holds it, its position, what would admit it."""
    ctx = context(request)
    with ctx.sessions.begin() as session:
        experiment = get_experiment(session, who, experiment_id)
        capacity, served = ctx.backend.capacity(), ctx.served()
        return views.explain(session, ctx.teams, capacity, experiment, who, served)


@router.get("/queue", response_model=QueueView, tags=["queue"])
def queue(request: Request, who: CallerDep) -> QueueView:
    """Waiting experiments in admission order, and usage against quota."""
    ctx = context(request)
    with ctx.sessions.begin() as session:
        return views.queue_view(session, ctx.teams, ctx.backend.capacity(), who, ctx.served())


@router.get("/teams", response_model=list[TeamUsage], tags=["teams"])
def teams(request: Request, who: CallerDep) -> list[TeamUsage]:
    """Usage against quota: the caller's team (every team for the admin)."""
    ctx = context(request)
    with ctx.sessions.begin() as session:
        return views.team_usages(session, ctx.teams, who, ctx.served())


@router.get("/teams/{team}", response_model=TeamUsage, tags=["teams"])
def team(request: Request, who: CallerDep, team: str) -> TeamUsage:
    """One team's usage against its quota."""
    ctx = context(request)
    _require_known(ctx, team)
    who.require_team(team, f"team {team!r}")
    with ctx.sessions.begin() as session:
        usages = views.team_usages(session, ctx.teams, who, ctx.served())
        return next(u for u in usages if u.name == team)


@router.post("/teams/{team}/tokens", response_model=TokenCreated, status_code=201, tags=["tokens"])
def create_token(request: Request, who: CallerDep, team: str) -> TokenCreated:
    """A new token for ``team`` (admin only). Shown once: only its hash is kept."""
    ctx = context(request)
    who.require_admin("creating tokens")
    _require_known(ctx, team)
    with ctx.sessions.begin() as session:
        return TokenCreated(team=team, token=issue_token(session, team))


@router.get("/mlflow/env", response_model=MlflowAccess, tags=["tokens"])
def mlflow_env(request: Request, response: Response, who: CallerDep) -> MlflowAccess:
    """The caller's MLflow identity: its team's (the admin token: the admin's), with which
    MLflow's own clients and UI read the team's runs. Not cached: the answer holds a password."""
    ctx = context(request)
    response.headers["Cache-Control"] = "no-store"
    uri = ctx.settings.tracking_uri
    if ctx.mlflow is None:
        return MlflowAccess(tracking_uri=uri)
    identity = ctx.mlflow.admin if who.admin else ctx.mlflow.team(str(who.team))
    return MlflowAccess(
        tracking_uri=uri, username=identity.username,
        password=identity.password.get_secret_value(),
    )  # fmt: skip


def _require_known(ctx: Any, team: str) -> None:
    if team not in {t.name for t in ctx.teams.teams}:
        known = ", ".join(t.name for t in ctx.teams.teams)
        raise TeamNotFoundError(f"no team {team!r} in the teams file; known teams: {known}")


def _save_upload(upload: UploadFile, target: Path, max_bytes: int) -> Path:
    """Copy the upload to ``target``; BundleTooLargeError past ``max_bytes``."""
    written = 0
    with target.open("wb") as out:
        while chunk := upload.file.read(_UPLOAD_CHUNK_BYTES):
            written += len(chunk)
            if written > max_bytes:
                raise BundleTooLargeError(
                    f"the code bundle is larger than {max_bytes} bytes; leave data out of the "
                    "experiment folder (read it from the storage root) or raise "
                    "FLYWHEEL_MAX_BUNDLE_BYTES on the control plane"
                )
            out.write(chunk)
    return target


async def _tail(backend: Any, job_id: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in backend.tail(job_id):
            yield chunk.encode()
    except FlywheelError as e:
        yield f"\nflywheel: log stream ended: {e}\n".encode()
