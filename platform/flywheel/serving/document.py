"""The serving document: the one desired state of what is served, and its pure changes.

Every serving operation reads the document, makes one of the changes below (a pure function
that returns the next document, its generation one higher), writes it with a compare-and-set on
the generation, and applies it. Everything else (Serve's applications, the ingress replicas'
routes, the MLflow aliases) is derived from it. No local paths here: the same document becomes
a RayService's ``serveConfigV2`` on Kubernetes.

It is written by the platform and read back from storage, so it is parsed leniently (unknown
keys are ignored: a newer writer does not break an older reader).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from flywheel.errors import ServeInputError
from flywheel.specs.serving import RolloutMode, ServeSpec

#: Model names that can be a Serve application's name and a URL path segment.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class _Document(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ProgressiveState(_Document):
    """Where a progressive rollout stands; stored so that it survives its controller."""

    step: int = Field(default=0, ge=0, description="Index of the current step in the steps.")
    step_started_s: float = Field(description="Wall-clock time the current step began, in s.")


class Challenger(_Document):
    """The version on trial next to the champion."""

    version: str = Field(description="Model version on trial.")
    mode: RolloutMode = Field(description="canary, shadow or progressive.")
    percent: float = Field(
        default=0.0, ge=0.0, le=100.0, description="Share of requests it answers (shadow: 0)."
    )
    started_s: float = Field(description="Wall-clock time the rollout began, in s.")
    progressive: ProgressiveState | None = Field(
        default=None, description="Progress of a progressive rollout; null for the other modes."
    )

    @property
    def role(self) -> str:
        """``shadow`` for a shadow, else ``challenger``."""
        return "shadow" if self.mode == "shadow" else "challenger"


class ServedModel(_Document):
    """One served model: its champion, an optional challenger, and how it is served."""

    champion: str = Field(description="Version that answers by default.")
    challenger: Challenger | None = Field(default=None, description="Version on trial, if any.")
    serve: ServeSpec = Field(
        default_factory=ServeSpec,
        description="Batching, autoscaling, resources and rollout rules of the model's replicas.",
    )

    @property
    def versions(self) -> tuple[str, ...]:
        """Versions loaded in each replica: the champion first."""
        if self.challenger is None:
            return (self.champion,)
        return (self.champion, self.challenger.version)

    def traffic_percent(self, version: str) -> float:
        """Share of requests (%) ``version`` answers."""
        challenger = self.challenger
        if challenger is None or challenger.mode == "shadow":
            return 100.0 if version == self.champion else 0.0
        if version == challenger.version:
            return challenger.percent
        return 100.0 - challenger.percent if version == self.champion else 0.0


class ServingDocument(_Document):
    """Everything served on the cluster; ``generation`` grows by one with every change."""

    generation: int = Field(default=0, ge=0, description="Compare-and-set counter.")
    models: dict[str, ServedModel] = Field(
        default_factory=dict, description="Served models by registered model name."
    )


def deploy(
    document: ServingDocument, model: str, version: str, serve: ServeSpec
) -> ServingDocument:
    """Serve ``version`` alone as the champion (a first deploy, or a version switch)."""
    _check_name(model)
    return _with(document, model, ServedModel(champion=version, serve=serve))


def start_rollout(
    document: ServingDocument, model: str, version: str, mode: RolloutMode,
    percent: float | None, now_s: float,
) -> ServingDocument:  # fmt: skip
    """Put ``version`` next to the champion as a canary, shadow or progressive challenger.

    A challenger already on trial is replaced. ``percent`` None: the model's rollout rules say.
    """
    served = _served(document, model)
    if version == served.champion:
        raise ServeInputError(f"version {version} of {model} is already the champion")
    rules = served.serve.rollout
    share = {
        "canary": rules.canary_percent if percent is None else percent,
        "shadow": 0.0,
        "progressive": rules.steps[0],
    }[mode]
    progressive = ProgressiveState(step_started_s=now_s) if mode == "progressive" else None
    challenger = Challenger(
        version=version, mode=mode, percent=share, started_s=now_s, progressive=progressive
    )
    return _with(document, model, served.model_copy(update={"challenger": challenger}))


def advance_step(document: ServingDocument, model: str, now_s: float) -> ServingDocument:
    """Move a progressive rollout to its next step (its next traffic share)."""
    served = _served(document, model)
    challenger = _challenger(served, model)
    if challenger.progressive is None:
        raise ServeInputError(f"the rollout of {model} is not progressive")
    step = challenger.progressive.step + 1
    steps = served.serve.rollout.steps
    if step >= len(steps):
        raise ServeInputError(f"the rollout of {model} is at its last step already")
    moved = challenger.model_copy(
        update={
            "percent": steps[step],
            "progressive": ProgressiveState(step=step, step_started_s=now_s),
        }
    )
    return _with(document, model, served.model_copy(update={"challenger": moved}))


def promote(document: ServingDocument, model: str) -> ServingDocument:
    """The challenger becomes the champion and serves alone."""
    served = _served(document, model)
    challenger = _challenger(served, model)
    return _with(document, model, ServedModel(champion=challenger.version, serve=served.serve))


def rollback(document: ServingDocument, model: str) -> ServingDocument:
    """The challenger goes; the champion answers everything."""
    served = _served(document, model)
    _challenger(served, model)
    return _with(document, model, served.model_copy(update={"challenger": None}))


def undeploy(document: ServingDocument, model: str) -> ServingDocument:
    """Stop serving ``model``."""
    _served(document, model)
    models = {name: m for name, m in document.models.items() if name != model}
    return ServingDocument(generation=document.generation + 1, models=models)


def _with(document: ServingDocument, model: str, served: ServedModel) -> ServingDocument:
    return ServingDocument(
        generation=document.generation + 1, models={**document.models, model: served}
    )


def _served(document: ServingDocument, model: str) -> ServedModel:
    served = document.models.get(model)
    if served is None:
        raise ServeInputError(f"{model} is not served; deploy it first with flywheel deploy")
    return served


def _challenger(served: ServedModel, model: str) -> Challenger:
    if served.challenger is None:
        raise ServeInputError(f"{model} has no challenger; start one with flywheel rollout")
    return served.challenger


def _check_name(model: str) -> None:
    if not MODEL_NAME.match(model):
        raise ServeInputError(
            f"model name {model!r} cannot be served: use letters, digits, '.', '_' and '-' "
            "(it becomes a URL path segment and a Serve application name)"
        )
