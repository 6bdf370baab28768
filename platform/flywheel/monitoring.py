"""The monitor: a window of the request log and feedback, judged against training profiles.

Pure: the caller reads the log, the feedback and each version's profile (the control plane's
:func:`flywheel.server.monitoring.check_model`), this module computes the report (a
:mod:`flywheel.wire` model) and decides the alert.
The report's top-level ``drift`` is the verdict for the window: true when any served version's
inputs or predictions drifted from its training profile (:mod:`flywheel.drift`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flywheel.drift import DriftResult, DriftThresholds, detect_drift
from flywheel.profiles import TrainingProfile
from flywheel.request_log import LoggedFeedback, LoggedRequest
from flywheel.specs.serving import MonitorSpec
from flywheel.wire import AlertState, FeatureScore, MonitorReport, VersionReport


def monitor_report(
    model: str,
    requests: Sequence[LoggedRequest],
    feedback: Sequence[LoggedFeedback],
    profiles: dict[str, TrainingProfile | None],
    rules: MonitorSpec,
) -> MonitorReport:
    """Judge ``requests`` (shadow copies excluded) of each version against its profile."""
    served = [r for r in requests if not r.shadow]
    thresholds = DriftThresholds(rules.p_value, rules.psi, rules.min_requests)
    versions = sorted({r.version for r in served}, key=lambda v: (-_count(served, v), v))
    reports = [
        _version_report(v, [r for r in served if r.version == v],
                        [f for f in feedback if f.version == v], profiles.get(v), thresholds)
        for v in versions
    ]  # fmt: skip
    return MonitorReport(
        model=model,
        drift=any(v.drift for v in reports),
        requests=len(served),
        window_start_s=min((r.time_s for r in served), default=None),
        window_end_s=max((r.time_s for r in served), default=None),
        features=reports[0].features if reports else [],
        versions=reports,
    )


def next_alert(previous: AlertState, report: MonitorReport, now_s: float) -> AlertState:
    """The alert after a check: raised when drift starts, kept while it lasts, then cleared.

    A window too small to judge changes nothing, so a quiet hour does not clear an alert.
    """
    judged = any(v.enough_requests for v in report.versions)
    if not judged:
        return previous.model_copy(update={"checked_s": now_s})
    reasons = [f"v{v.version}: {r}" for v in report.versions for r in v.reasons]
    if report.drift:
        since_s = previous.since_s if previous.active else now_s
        return AlertState(active=True, since_s=since_s, reasons=reasons, checked_s=now_s)
    return AlertState(active=False, since_s=None, reasons=[], checked_s=now_s)


def _version_report(
    version: str,
    requests: list[LoggedRequest],
    feedback: list[LoggedFeedback],
    profile: TrainingProfile | None,
    thresholds: DriftThresholds,
) -> VersionReport:
    latencies = np.asarray([r.latency_ms for r in requests if r.ok])
    errors = sum(not r.ok for r in requests)
    judged = [f.correct for f in feedback if f.correct is not None]
    result = _drift(profile, [r for r in requests if r.ok and r.inputs], thresholds)
    return VersionReport(
        version=version,
        requests=len(requests),
        errors=errors,
        error_rate=errors / len(requests) if requests else None,
        latency_p50_ms=float(np.percentile(latencies, 50)) if latencies.size else None,
        latency_p95_ms=float(np.percentile(latencies, 95)) if latencies.size else None,
        feedback=len(judged),
        online_accuracy=sum(judged) / len(judged) if judged else None,
        profiled=profile is not None,
        drift=result.drift if result else False,
        enough_requests=result.enough_requests if result else False,
        reasons=list(result.reasons) if result else [],
        multivariate_p_value=result.multivariate.p_value if result and result.multivariate
        else None,
        prediction_p_value=result.predictions.p_value if result and result.predictions else None,
        features=[FeatureScore(name=f.name, psi=f.psi, ks_statistic=f.ks_statistic,
                               ks_p_value=f.ks_p_value, drifted=f.drifted)
                  for f in (result.features if result else ())],
    )  # fmt: skip


def _drift(
    profile: TrainingProfile | None, answered: list[LoggedRequest], thresholds: DriftThresholds
) -> DriftResult | None:
    if profile is None:
        return None
    if len(answered) < thresholds.min_requests:
        return DriftResult(False, len(answered), False, (), (), None, None)
    size = profile.projection.input_size
    matching = [r for r in answered if len(r.inputs) == size]  # others were another shape
    inputs = np.asarray([r.inputs for r in matching], dtype=np.float64).reshape(-1, size)
    predictions = np.asarray([_number(r.prediction) for r in matching], dtype=np.float64)
    return detect_drift(profile, inputs, predictions, thresholds)


def _number(prediction: int | float | str | None) -> float:
    try:
        return float(prediction)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _count(requests: list[LoggedRequest], version: str) -> int:
    return sum(r.version == version for r in requests)
