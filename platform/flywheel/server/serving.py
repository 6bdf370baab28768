"""Routes of ``/api/v1/models`` and ``/api/v1/cluster``: serving operations behind the control
plane, on the serving service it alone holds (with the Ray token).

A model belongs to the team whose experiment registered it (:func:`require_model_owner`); a team
sees and changes its own models only, the admin every model. Each operation is typed both ways
and is the serving service's compare-and-set: the loser of a race gets 409 and nothing changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from flywheel.errors import PlatformError, ServeInputError
from flywheel.server.auth import Caller
from flywheel.server.retraining import retrain_model
from flywheel.server.routes import ERROR_RESPONSES, CallerDep, context
from flywheel.serving.document import ServingDocument
from flywheel.specs.serving import RolloutMode, ServeSpec
from flywheel.tracking import model_origin
from flywheel.wire import ClusterView, RetrainView, RolloutStep, ServedVersion, ServeResult

#: Registered model names the routes accept (MLflow allows more; flywheel's specs do not).
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ModelName = Annotated[str, Path(pattern=MODEL_NAME, description="Registered model name.")]


class ServingOperations(Protocol):
    """What the routes need of :class:`flywheel.serving_service.ServingService`."""

    def deploy(
        self, model: str, version: str | None = None, alias: str | None = None
    ) -> ServeResult: ...
    def rollout(
        self, model: str, version: str, mode: RolloutMode, percent: float | None = None
    ) -> ServeResult: ...
    def serve_new_version(self, model: str, version: str, spec: ServeSpec) -> ServeResult: ...
    def step(self, model: str) -> ServeResult | None: ...
    def promote(self, model: str) -> ServeResult: ...
    def rollback(self, model: str) -> ServeResult: ...
    def undeploy(self, model: str) -> ServeResult: ...
    def models(self) -> list[ServedVersion]: ...
    def document(self) -> ServingDocument: ...


@dataclass(frozen=True)
class ServingPlane:
    """The serving service, who owns each model, and the facts clients need of the cluster."""

    operations: ServingOperations
    owner: Callable[[str], str | None]  # model -> team (None: registered outside an experiment)
    cluster: ClusterView


class DeployRequest(BaseModel):
    """Serve one version of the model alone, as champion."""

    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(default=None, max_length=32, description="Version to serve.")
    alias: str | None = Field(
        default=None, max_length=64, description="Alias naming the version (else: the latest)."
    )


class RolloutRequest(BaseModel):
    """Start a version as challenger of the model's champion."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(max_length=32, description="The challenger version.")
    mode: RolloutMode = Field(description="canary, shadow or progressive.")
    canary_percent: float | None = Field(
        default=None, gt=0, lt=100, description="Canary share in % (default: the serve section's)."
    )


router = APIRouter(tags=["serving"], responses=ERROR_RESPONSES)


@router.get("/cluster", response_model=ClusterView, tags=["cluster"])
def cluster(request: Request, who: CallerDep) -> ClusterView:
    """Where this cluster serves models, tracks runs and stores data (for clients)."""
    return _plane(request).cluster


@router.get("/models", response_model=list[ServedVersion])
def models(request: Request, who: CallerDep) -> list[ServedVersion]:
    """Served versions of the caller's team's models (every model for the admin)."""
    plane = _plane(request)
    served = plane.operations.models()
    if who.admin:
        return served
    owners = {name: plane.owner(name) for name in {v.model for v in served}}
    return [v for v in served if owners[v.model] == who.team]


@router.post("/models/{model}/deploy", response_model=ServeResult)
def deploy(request: Request, who: CallerDep, model: ModelName, body: DeployRequest) -> ServeResult:
    """Serve a version as the model's only champion (a version switch when one is served)."""
    return _owned(request, who, model).deploy(model, body.version, body.alias)


@router.post("/models/{model}/rollout", response_model=ServeResult)
def rollout(
    request: Request, who: CallerDep, model: ModelName, body: RolloutRequest
) -> ServeResult:
    """Start a canary, shadow or progressive rollout; ``step`` advances a progressive one."""
    operations = _owned(request, who, model)
    return operations.rollout(model, body.version, body.mode, body.canary_percent)


@router.post("/models/{model}/step", response_model=RolloutStep)
def step(request: Request, who: CallerDep, model: ModelName) -> RolloutStep:
    """Judge the current step of the model's progressive rollout once and act on the verdict.

    Its state lives in the serving document, so any caller can drive it, one call at a time.
    """
    result = _owned(request, who, model).step(model)
    return RolloutStep(ended=result is not None, result=result)


@router.post("/models/{model}/promote", response_model=ServeResult)
def promote(request: Request, who: CallerDep, model: ModelName) -> ServeResult:
    """The challenger becomes champion and serves alone."""
    return _owned(request, who, model).promote(model)


@router.post("/models/{model}/rollback", response_model=ServeResult)
def rollback(request: Request, who: CallerDep, model: ModelName) -> ServeResult:
    """The challenger goes; the champion answers everything."""
    return _owned(request, who, model).rollback(model)


@router.post("/models/{model}/undeploy", response_model=ServeResult)
def undeploy(request: Request, who: CallerDep, model: ModelName) -> ServeResult:
    """Stop serving the model."""
    return _owned(request, who, model).undeploy(model)


@router.post("/models/{model}/retrain", response_model=RetrainView, status_code=201)
def retrain(request: Request, who: CallerDep, model: ModelName) -> RetrainView:
    """Queue a retraining from the spec that registered the model's latest version, with the
    model's fed-back requests added to its training data (mistakes weighted up). The new version
    starts as the spec's serve section says: a shadow or a canary."""
    ctx = context(request)
    origin = model_origin(ctx.settings.tracking_uri, model)
    with ctx.sessions.begin() as session:
        return retrain_model(session, ctx.settings, ctx.teams, who, model, origin)


def _plane(request: Request) -> ServingPlane:
    plane: ServingPlane | None = context(request).serving
    if plane is None:
        raise PlatformError("this control plane serves no models (no serving backend configured)")
    return plane


def require_model_owner(who: Caller, model: str, owner: Callable[[str], str | None]) -> None:
    """Raise ServeInputError unless ``who`` is the admin or ``owner`` names ``who``'s team."""
    if who.admin:
        return
    if owner(model) != who.team:
        # Unknown, registered outside an experiment, or another team's: one answer for all, so
        # a team learns nothing of models that are not its own.
        raise ServeInputError(f"team {who.team!r} has no registered model {model!r}")


def _owned(request: Request, who: Caller, model: str) -> ServingOperations:
    """The serving operations, when ``who`` may act on ``model``."""
    plane = _plane(request)
    require_model_owner(who, model, plane.owner)
    return plane.operations
