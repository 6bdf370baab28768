"""Drift scores of the last monitor check of each model, kept for Prometheus.

Every check (``flywheel monitor``, the API, the control plane's periodic monitor) stores a short
summary of its report next to the alert state (``<root>/monitoring/<model>/scores.json``); the
control plane's ``/metrics`` reads them at scrape time, so a restart loses nothing. Read back
leniently: a torn or foreign file is skipped.
"""

from __future__ import annotations

from pydantic import Field, ValidationError

from flywheel import storage
from flywheel.specs.base import LenientModel
from flywheel.wire import MonitorReport, VersionReport

SCORES_FILE = "scores.json"


class VersionScores(LenientModel):
    """One version's scores in the checked window."""

    version: str = Field(description="Model version.")
    drift: bool = Field(description="The version's verdict.")
    requests: int = Field(description="Logged requests of the version in the window.")
    psi_max: float | None = Field(default=None, description="Largest per-feature PSI.")
    ks_statistic_max: float | None = Field(default=None, description="Largest KS statistic.")
    multivariate_p_value: float | None = Field(default=None, description="MMD test p-value.")
    prediction_p_value: float | None = Field(default=None, description="Prediction test p-value.")
    online_accuracy: float | None = Field(default=None, description="From feedback.")


class ModelScores(LenientModel):
    """The last check of one model."""

    model: str = Field(description="Registered model name.")
    checked_s: float = Field(description="When the check ran (epoch s).")
    drift: bool = Field(description="The window's overall verdict.")
    alert_active: bool = Field(description="Whether the drift alert is raised after the check.")
    versions: list[VersionScores] = Field(default_factory=list, description="Per version.")


def scores_of(report: MonitorReport, alert_active: bool, checked_s: float) -> ModelScores:
    """The summary of ``report`` that ``/metrics`` exports."""
    versions = [_version_scores(v) for v in report.versions]
    return ModelScores(model=report.model, checked_s=checked_s, drift=report.drift,
                       alert_active=alert_active, versions=versions)  # fmt: skip


def _version_scores(v: VersionReport) -> VersionScores:
    return VersionScores(
        version=v.version, drift=v.drift, requests=v.requests,
        psi_max=max((f.psi for f in v.features), default=None),
        ks_statistic_max=max((f.ks_statistic for f in v.features), default=None),
        multivariate_p_value=v.multivariate_p_value, prediction_p_value=v.prediction_p_value,
        online_accuracy=v.online_accuracy,
    )  # fmt: skip


def write_scores(storage_root: str, scores: ModelScores) -> None:
    storage.write_text(
        storage.join(storage_root, "monitoring", scores.model, SCORES_FILE),
        scores.model_dump_json(),
    )


def read_all_scores(storage_root: str) -> list[ModelScores]:
    """The last check of every model that was checked, by model name."""
    found = []
    for url, _ in storage.list_files(storage.join(storage_root, "monitoring"), f"*/{SCORES_FILE}"):
        data = storage.read_bytes(url)
        try:
            found.append(ModelScores.model_validate_json(data or b""))
        except ValidationError:
            continue
    return sorted(found, key=lambda s: s.model)
