"""The ``serve`` section of an experiment spec: how a registered model is served and rolled out.

Pure pydantic models: no I/O, no ray. They travel in the serving document
(:mod:`flywheel.serving.document`); :mod:`flywheel.rollout` makes the decisions.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import Field, field_validator, model_validator

from flywheel.specs.base import NestedValueError, StrictModel

RolloutMode = Literal["canary", "shadow", "progressive"]


class BatchingSpec(StrictModel):
    """Adaptive batching: requests that arrive together run through the model as one batch."""

    enabled: bool = Field(
        default=False,
        description=(
            "Batch concurrent requests (`@serve.batch`). Off by default: one-row requests to a "
            "small model are answered faster alone (see docs/benchmarks.md)."
        ),
    )
    max_batch_size: int = Field(
        default=32, ge=1, le=4096, description="Most requests merged into one model call."
    )
    batch_wait_timeout_s: float = Field(
        default=0.005,
        ge=0.0,
        le=10.0,
        description="Longest a request waits for others to fill its batch, in seconds.",
    )


class AutoscalingSpec(StrictModel):
    """Ingress replicas of a served model (each runs every version it serves), scaled on the
    requests in flight."""

    min_replicas: int = Field(default=1, ge=1, description="Replicas kept running at least.")
    max_replicas: int = Field(default=1, ge=1, description="Replicas started at most.")
    target_ongoing_requests: float = Field(
        default=4.0, gt=0.0, description="Requests in flight per replica that autoscaling aims at."
    )
    upscale_delay_s: float = Field(
        default=5.0,
        ge=0.0,
        description="Load must call for more replicas this long before one starts.",
    )
    downscale_delay_s: float = Field(
        default=60.0,
        ge=0.0,
        description="Load must call for fewer replicas this long before one stops.",
    )

    @model_validator(mode="after")
    def _max_at_least_min(self) -> AutoscalingSpec:
        if self.max_replicas < self.min_replicas:
            raise NestedValueError(
                ("max_replicas",),
                f"max_replicas {self.max_replicas} is below min_replicas {self.min_replicas}",
            )
        return self


class ServeResourcesSpec(StrictModel):
    """What each ingress replica of a served model reserves on the cluster."""

    num_cpus: float = Field(
        default=1.0, ge=0.0, description="CPUs per replica (may be a fraction)."
    )
    num_gpus: float = Field(
        default=0.0,
        ge=0.0,
        description="GPUs per replica; a fraction such as 0.25 shares one GPU between replicas.",
    )
    memory_mib: int | None = Field(
        default=None, ge=1, description="Memory reserved per replica, in MiB; null: none reserved."
    )


class SloSpec(StrictModel):
    """Service level objectives a challenger must meet for a progressive rollout to go on."""

    max_error_rate: float = Field(
        default=0.01, ge=0.0, le=1.0, description="Highest fraction of failed requests tolerated."
    )
    max_p95_latency_ms: float = Field(
        default=250.0, gt=0.0, description="Highest 95th percentile latency tolerated, in ms."
    )
    min_online_accuracy: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Lowest online accuracy (from feedback) tolerated; null: not gated.",
    )
    min_requests: int = Field(
        default=20, ge=1, description="Requests the challenger must answer before a step is judged."
    )
    min_feedback: int = Field(
        default=20, ge=1, description="Feedback records needed before accuracy is judged."
    )


class RolloutSpec(StrictModel):
    """How a new version is introduced next to the champion."""

    mode: RolloutMode = Field(
        default="canary",
        description=(
            "`canary`: the challenger answers `canary_percent` of requests. `shadow`: it gets a "
            "copy of each request; its answers are recorded, never returned. `progressive`: "
            "its share follows `steps` while it meets `slo`, then it is promoted (or rolled back)."
        ),
    )
    canary_percent: float = Field(
        default=10.0, gt=0.0, lt=100.0, description="Share of requests the canary answers, in %."
    )
    steps: list[float] = Field(
        default_factory=lambda: [10.0, 50.0, 100.0],
        min_length=1,
        description="Traffic shares (%) of a progressive rollout, increasing, ending at 100.",
    )
    step_duration_s: float = Field(
        default=60.0, gt=0.0, description="Time each progressive step runs before it is judged."
    )
    max_step_wait_s: float = Field(
        default=600.0,
        gt=0.0,
        description="A step without enough requests to judge after this long is rolled back.",
    )
    slo: SloSpec = Field(
        default_factory=SloSpec, description="Objectives the challenger must meet."
    )

    @field_validator("steps")
    @classmethod
    def _steps_increase_to_100(cls, steps: list[float]) -> list[float]:
        if any(not 0.0 < s <= 100.0 for s in steps):
            raise ValueError("every step is a share of traffic in (0, 100]")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("steps must increase")
        if steps[-1] != 100.0:
            raise ValueError("the last step must be 100, where the challenger takes all traffic")
        return steps


class MonitorSpec(StrictModel):
    """The request log, drift thresholds and alerts of a served model (`flywheel monitor`)."""

    sample_rate: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Share of requests written to the request log."
    )
    retention_hours: float = Field(
        default=168.0, gt=0.0, description="How long the request log keeps a request, in hours."
    )
    window_requests: int = Field(
        default=200, ge=1, description="Sampled requests `flywheel monitor` judges by default."
    )
    min_requests: int = Field(
        default=50, ge=2, description="Fewest sampled requests in a window that get a verdict."
    )
    p_value: float = Field(
        default=0.01,
        gt=0.0,
        lt=1.0,
        description="Level of each drift test (KS over the features, MMD, predictions).",
    )
    psi: float = Field(
        default=0.75, gt=0.0, description="A feature whose PSI exceeds this has drifted."
    )
    webhook_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="POSTed a JSON alert when drift is raised or cleared; null: no webhook.",
    )
    retrain_on_alert: bool = Field(
        default=False,
        description="A raised drift alert submits `flywheel retrain` once per incident (checked "
        "by the control plane's monitor every `FLYWHEEL_MONITOR_INTERVAL_S`).",
    )
    retrain_cooldown_hours: float = Field(
        default=24.0,
        ge=0.0,
        description="Least time between two automatic retrainings of the model, in hours.",
    )
    retrain_wrong_repeats: int = Field(
        default=3,
        ge=1,
        le=100,
        description="A fed-back request the model got wrong enters the retraining this many "
        "times (once when it got it right).",
    )


class ServeSpec(StrictModel):
    """Serve the registered model at the end of the experiment over OIP v2 (a Serve app per model).

    The first version of a model becomes its champion; later ones start as a challenger in the
    rollout mode below.
    """

    enabled: bool = Field(default=True, description="Deploy the model the experiment registers.")
    batching: BatchingSpec = Field(default_factory=BatchingSpec, description="Adaptive batching.")
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec, description="Replica count and autoscaling."
    )
    resources: ServeResourcesSpec = Field(
        default_factory=ServeResourcesSpec, description="Resources of each replica."
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec, description="How a later version is rolled out."
    )
    monitor: MonitorSpec = Field(
        default_factory=MonitorSpec, description="Request log, drift thresholds and alerts."
    )
