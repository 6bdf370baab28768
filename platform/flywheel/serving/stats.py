"""What the ingress replicas observed of a model version (read leniently: it crosses processes)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class VersionStats(BaseModel):
    """Requests, errors, shadow agreement and online accuracy of one served version."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = Field(description="Registered model name.")
    version: str = Field(description="Model version.")
    requests: int = Field(default=0, description="Requests it answered (shadow copies excluded).")
    shadow_requests: int = Field(default=0, description="Shadow copies it answered.")
    errors: int = Field(default=0, description="Requests it failed.")
    request_rate_per_s: float = Field(default=0.0, description="Answers per second, last minute.")
    shadow_agreement: float | None = Field(
        default=None, description="Share of shadow answers that agree with the returned answer."
    )
    feedback: int = Field(default=0, description="Feedback records (true labels) received.")
    online_accuracy: float | None = Field(
        default=None, description="Share of labelled answers that were right."
    )


class StepObservation(BaseModel):
    """What a challenger answered since its progressive step began: what the step is judged on."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    requests: int = Field(default=0, description="Requests it answered or failed.")
    errors: int = Field(default=0, description="Requests it failed.")
    latencies_ms: list[float] = Field(default_factory=list, description="Latency of each answer.")
    feedback: int = Field(default=0, description="Feedback records about it, all time.")
    correct: int = Field(default=0, description="Of those, answers that were right.")
