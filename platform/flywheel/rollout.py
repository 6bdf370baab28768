"""Rollouts, purely: which version answers a request, and whether a progressive step goes on.

The serving document (:mod:`flywheel.serving`) -> :class:`ModelRoute` (what a model's ingress
replicas route by). The decisions are pure functions of what was observed, so that they are
tested without a cluster; :mod:`flywheel.runtime.serve` and the serving service apply them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from flywheel.settings import Settings
from flywheel.specs.serving import BatchingSpec, RolloutMode, SloSpec

StepAction = Literal["advance", "hold", "promote", "rollback"]

#: MLflow aliases of the version that answers by default, and of the one on trial.
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"


class ModelRoute(BaseModel):
    """How a model's ingress replicas route requests: champion, optional challenger, its share.

    It travels to the replicas as the Serve deployment's ``user_config`` (so a change reaches
    them through ``reconfigure``, without a restart) and is read there leniently.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = Field(description="Registered model name.")
    champion: str = Field(description="Version that answers by default.")
    challenger: str | None = Field(default=None, description="Version on trial, if any.")
    mode: RolloutMode | None = Field(default=None, description="How the challenger takes part.")
    challenger_percent: float = Field(
        default=0.0, ge=0.0, le=100.0, description="Share of requests the challenger answers."
    )
    generation: int = Field(
        default=0, ge=0, description="Generation of the serving document this route comes from."
    )
    batching: BatchingSpec = Field(
        default_factory=BatchingSpec, description="How the replicas batch concurrent requests."
    )
    log_sample_rate: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Share of requests written to the request log."
    )
    log_retention_hours: float = Field(
        default=168.0, gt=0.0, description="How long the request log keeps a request, in hours."
    )

    @property
    def versions(self) -> tuple[str, ...]:
        """Versions serving now: the champion first."""
        return (self.champion,) if self.challenger is None else (self.champion, self.challenger)

    def traffic_percent(self, version: str) -> float:
        """Share of requests (%) ``version`` answers; a shadow answers none."""
        if self.challenger is None or self.mode == "shadow":
            return 100.0 if version == self.champion else 0.0
        if version == self.challenger:
            return self.challenger_percent
        return 100.0 - self.challenger_percent if version == self.champion else 0.0


@dataclass(frozen=True)
class RouteChoice:
    """The version whose answer is returned, and the version that gets a shadow copy."""

    version: str
    shadow: str | None = None


def choose_version(route: ModelRoute, draw: float) -> RouteChoice:
    """Pick the answering version for a request; ``draw`` is uniform in [0, 1).

    The challenger answers when ``draw`` falls below its share; in shadow mode it never answers
    but gets a copy of every request.
    """
    if route.challenger is None or route.mode is None:
        return RouteChoice(route.champion)
    if route.mode == "shadow":
        return RouteChoice(route.champion, shadow=route.challenger)
    if draw * 100.0 < route.challenger_percent:
        return RouteChoice(route.challenger)
    return RouteChoice(route.champion)


def sticky_draw(key: str) -> float:
    """A draw in [0, 1) fixed by ``key``: the same request id always picks the same version."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class Observation:
    """What the gateway saw of the challenger during one progressive step."""

    requests: int
    errors: int
    latencies_ms: tuple[float, ...] = ()
    feedback: int = 0
    correct: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p95_latency_ms(self) -> float | None:
        return percentile(self.latencies_ms, 95.0)

    @property
    def online_accuracy(self) -> float | None:
        return self.correct / self.feedback if self.feedback else None


@dataclass(frozen=True)
class StepDecision:
    """What to do after a progressive step, and why (recorded in the rollout's MLflow run)."""

    action: StepAction
    reason: str


def progressive_decision(
    observed: Observation, slo: SloSpec, step: int, steps: Sequence[float], waited_s: float,
    step_duration_s: float, max_wait_s: float,
) -> StepDecision:  # fmt: skip
    """Judge step ``step`` (an index into ``steps``) of a progressive rollout.

    Roll back as soon as an objective is broken (errors count even before there are enough
    requests to judge the rest); hold until the step has run its duration and seen
    ``slo.min_requests`` requests; then advance, or promote after the last step. A step that
    never sees enough traffic is rolled back at ``max_wait_s``: an unjudged version is not promoted.
    """
    allowed_errors = slo.max_error_rate * max(observed.requests, slo.min_requests)
    if observed.errors > allowed_errors:
        return StepDecision(
            "rollback", f"error rate {observed.error_rate:.3f} > {slo.max_error_rate}"
        )
    enough = observed.requests >= slo.min_requests
    if enough and (broken := _broken_objective(observed, slo)):
        return StepDecision("rollback", broken)
    if not enough or waited_s < step_duration_s:
        if waited_s >= max_wait_s:
            why = f"{observed.requests} requests in {waited_s:.0f} s, {slo.min_requests} needed"
            return StepDecision("rollback", why)
        return StepDecision("hold", f"{observed.requests} requests after {waited_s:.0f} s")
    summary = _summary(observed)
    if step >= len(steps) - 1:
        return StepDecision("promote", f"met the objectives at {steps[-1]:g}%: {summary}")
    return StepDecision("advance", f"met the objectives at {steps[step]:g}%: {summary}")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


class ServeTarget(BaseModel):
    """Where serving happens, as the cluster knows it: registry, storage root, Serve's address.

    Jobs carry it in their plan, so that an experiment's ``serve`` section deploys through the
    cluster's own serving API.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    tracking_uri: str = Field(description="MLflow tracking URI (the model registry).")
    storage_root: str = Field(description="Storage root: the serving document and feedback.")
    host: str = Field(description="Address Serve's HTTP ingress binds to.")
    port: int = Field(description="Port of Serve's HTTP ingress.")
    max_request_bytes: int = Field(description="Largest request body the ingress accepts.")
    dashboard_url: str = Field(
        default="", description="Ray dashboard URL: Serve's REST API for applying the document."
    )
    gateway_url: str = Field(
        default="",
        description="URL the control plane reaches Serve's HTTP ingress at, where that is not "
        "`http://host:port` (on Kubernetes: the RayService's serve Service).",
    )

    @property
    def reach_url(self) -> str:
        """Where the control plane sends the gateway its requests (statistics, observations)."""
        return self.gateway_url.rstrip("/") or f"http://{self.host}:{self.port}"


def serve_target(settings: Settings) -> ServeTarget:
    """The platform's serving facts, from ``settings`` (the cluster's side)."""
    return ServeTarget(
        tracking_uri=settings.tracking_uri,
        storage_root=str(settings.storage_root),
        host=settings.host,
        port=settings.serve_port,
        max_request_bytes=settings.serve_max_request_bytes,
        dashboard_url=settings.jobs_url,
    )


def _broken_objective(observed: Observation, slo: SloSpec) -> str | None:
    p95 = observed.p95_latency_ms
    if p95 is not None and p95 > slo.max_p95_latency_ms:
        return f"p95 latency {p95:.1f} ms > {slo.max_p95_latency_ms:g} ms"
    accuracy = observed.online_accuracy
    gated = slo.min_online_accuracy is not None and observed.feedback >= slo.min_feedback
    if gated and accuracy is not None and accuracy < (slo.min_online_accuracy or 0.0):
        return f"online accuracy {accuracy:.3f} < {slo.min_online_accuracy:g}"
    return None


def _summary(observed: Observation) -> str:
    p95 = observed.p95_latency_ms
    parts = [f"{observed.requests} requests", f"error rate {observed.error_rate:.3f}"]
    if p95 is not None:
        parts.append(f"p95 {p95:.1f} ms")
    if observed.online_accuracy is not None:
        parts.append(f"accuracy {observed.online_accuracy:.3f}")
    return ", ".join(parts)
