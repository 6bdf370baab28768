"""Data snapshots, monitor checks and readiness reports, computed by the control plane from the
MLflow server and the storage root of its settings: ``GET /api/v1/data/{experiment}``,
``POST /api/v1/models/{model}/monitor`` and ``POST /api/v1/models/{model}/readiness``.

Clients reach MLflow and the storage root through these routes only, so that the CLI and the
client import neither. A team sees the snapshots of its own runs (the ``flywheel.team`` tag the
job driver writes from the admitted spec) and checks its own models (the ownership rule of the
serving routes, :func:`flywheel.server.serving.require_model_owner`); the admin sees all.

:func:`check_model` is a plain function of the settings, so that the control plane can run it
outside a request too (a periodic monitor).
"""

from __future__ import annotations

import json
import re
import time
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, sessionmaker

from flywheel.alerts import read_alert, record_check
from flywheel.drift_scores import scores_of, write_scores
from flywheel.errors import DataNotFoundError, ServeInputError
from flywheel.monitoring import monitor_report
from flywheel.profiles import TrainingProfile
from flywheel.readiness import READINESS_FILE, Evidence, readiness_report
from flywheel.request_log import read_feedback, read_requests
from flywheel.server.auth import Caller
from flywheel.server.retraining import retrain_on_alert
from flywheel.server.routes import ERROR_RESPONSES, CallerDep, context
from flywheel.server.serving import ModelName, require_model_owner
from flywheel.settings import Settings
from flywheel.snapshots import read_manifest
from flywheel.specs.serving import MonitorSpec
from flywheel.specs.teams import TeamsSpec
from flywheel.tracking import (
    TAG_PROFILE,
    TAG_SERVE_SPEC,
    SnapshotUse,
    log_version_artifact,
    model_origin,
    model_team,
    model_version_tag,
    resolve_model_version,
    snapshot_uses,
    version_artifact_dict,
    version_record,
)
from flywheel.wire import (
    MonitorReport,
    ReadinessReport,
    SnapshotManifest,
    SnapshotReport,
    SnapshotRun,
)

#: MLflow experiment names the data route accepts: a spec's name, or ``<team>/<name>``.
EXPERIMENT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$"
#: The most sampled requests one check may judge (a bound on bad input, not on the log).
MAX_WINDOW_REQUESTS = 1_000_000
#: A snapshot lives at ``<root>/snapshots/<sha256>``; a run tag naming any other place is ignored.
_SNAPSHOT_FOLDER = re.compile(r"/snapshots/[0-9a-f]{64}/?$")


class MonitorRequest(BaseModel):
    """Judge the model's last logged requests."""

    model_config = ConfigDict(extra="forbid")

    last: int | None = Field(
        default=None, ge=1, le=MAX_WINDOW_REQUESTS,
        description="Sampled requests to judge (default: the serve section's "
        "`monitor.window_requests`).",
    )  # fmt: skip


class ReadinessRequest(BaseModel):
    """Score one version of the model."""

    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(
        default=None, max_length=32, description="Version to score (default: the latest)."
    )


def snapshot_reports(settings: Settings, experiment: str, team: str | None) -> list[SnapshotReport]:
    """The data snapshots of ``experiment`` with the runs that used each, newest first.

    Only runs of ``team`` count (None: every run, for the admin); DataNotFoundError when none
    recorded a snapshot, the same answer for an unknown experiment and another team's.
    """
    uses = [
        use for use in snapshot_uses(settings.tracking_uri, experiment)
        if team is None or use.team == team
    ]  # fmt: skip
    if not uses:
        raise DataNotFoundError(
            f"no run of experiment {experiment!r} recorded a data snapshot; "
            "`flywheel jobs` lists the experiments"
        )
    grouped: dict[str, list[SnapshotUse]] = {}
    for use in uses:
        grouped.setdefault(use.fingerprint, []).append(use)
    return [
        SnapshotReport(
            fingerprint=fingerprint,
            url=runs[0].url,
            manifest=_manifest(runs[0]),
            runs=[_snapshot_run(use) for use in runs],
        )
        for fingerprint, runs in grouped.items()
    ]


def check_model(
    settings: Settings, model: str, last_n: int | None = None, now_s: float | None = None
) -> MonitorReport:
    """Drift, online accuracy, latency and errors of ``model`` over its last logged requests.

    Judges the last ``last_n`` sampled requests (default: the serve section's
    ``monitor.window_requests``) and records the check: the alert state (raising or clearing the
    alert, and calling its webhook when it changes) and the drift scores ``/metrics`` exports.
    ServeInputError when the model has no registered version.
    """
    return _check(settings, model, last_n, now_s)[0]


def check_and_retrain(
    sessions: sessionmaker[Session], settings: Settings, teams: TeamsSpec, model: str,
    last_n: int | None = None,
) -> MonitorReport:  # fmt: skip
    """:func:`check_model`, then the retraining a raised alert asks for (the serve section's
    ``monitor.retrain_on_alert``, once per incident): the report names it in ``retraining``.
    What the route and the control plane's periodic monitor run."""
    report, rules, now = _check(settings, model, last_n, None)
    if report.alert is None or not rules.retrain_on_alert:
        return report
    origin = partial(model_origin, settings.tracking_uri, model)
    queued = retrain_on_alert(sessions, settings, teams, model, report.alert, rules, origin, now)
    return report.model_copy(update={"retraining": queued})


def _check(
    settings: Settings, model: str, last_n: int | None, now_s: float | None
) -> tuple[MonitorReport, MonitorSpec, float]:
    latest = resolve_model_version(settings.tracking_uri, model)
    if latest is None:
        raise ServeInputError(f"model {model!r} has no version in the MLflow registry")
    rules = _monitor_rules(settings, model, latest)
    root = str(settings.storage_root)
    requests = read_requests(root, model, last_n or rules.window_requests)
    since_s = requests[0].time_s if requests else None
    feedback = read_feedback(root, model, since_s) if requests else []
    profiles = {v: _profile(settings, model, v) for v in sorted({r.version for r in requests})}
    report = monitor_report(model, requests, feedback, profiles, rules)
    now = time.time() if now_s is None else now_s
    alert = record_check(root, model, report, now, rules.webhook_url)
    write_scores(root, scores_of(report, alert.active, now))
    return report.model_copy(update={"alert": alert}), rules, now


def score_readiness(settings: Settings, model: str, version: str | None = None) -> ReadinessReport:
    """Score ``version`` (default: the latest) against the ML Test Score and log the report to
    MLflow, in the run that trained it. ServeInputError when there is no such version."""
    resolved = resolve_model_version(settings.tracking_uri, model, version)
    if resolved is None:
        which = f"version {version}" if version else "version"
        raise ServeInputError(f"model {model!r} has no {which} in the MLflow registry")
    record = version_record(settings.tracking_uri, model, resolved)
    root = str(settings.storage_root)
    requests = [r for r in read_requests(root, model) if r.version == resolved]
    feedback = [f for f in read_feedback(root, model) if f.version == resolved]
    alert = read_alert(root, model)
    evidence = Evidence(
        params=record.params, metrics=record.metrics, run_tags=record.run_tags,
        version_tags=record.version_tags, challenger_modes=record.challenger_modes,
        logged_requests=len(requests), feedback=len(feedback),
        monitor_checked=alert.checked_s is not None, drift_alert=alert.active,
    )  # fmt: skip
    report = readiness_report(model, resolved, evidence)
    log_version_artifact(settings.tracking_uri, model, resolved,
                         report.model_dump(mode="json"), READINESS_FILE)  # fmt: skip
    return report


router = APIRouter(tags=["monitoring"], responses=ERROR_RESPONSES)

ExperimentName = Annotated[
    str, Path(pattern=EXPERIMENT_NAME, description="Experiment name, as in its spec.")
]


@router.get("/data/{experiment:path}", response_model=list[SnapshotReport])
def data(request: Request, who: CallerDep, experiment: ExperimentName) -> list[SnapshotReport]:
    """The data snapshots of an experiment and the runs that trained on each, newest first."""
    settings: Settings = context(request).settings
    return snapshot_reports(settings, experiment, None if who.admin else who.team)


@router.post("/models/{model}/monitor", response_model=MonitorReport)
def monitor(
    request: Request, who: CallerDep, model: ModelName, body: MonitorRequest
) -> MonitorReport:
    """Judge the model's last logged requests for drift, accuracy, latency and errors; the check
    updates the model's drift alert."""
    settings = _owned_settings(request, who, model)
    ctx = context(request)
    return check_and_retrain(ctx.sessions, settings, ctx.teams, model, body.last)


@router.post("/models/{model}/readiness", response_model=ReadinessReport)
def readiness(
    request: Request, who: CallerDep, model: ModelName, body: ReadinessRequest
) -> ReadinessReport:
    """Score a version against the ML Test Score (28 tests); the report is logged to MLflow."""
    return score_readiness(_owned_settings(request, who, model), model, body.version)


def _owned_settings(request: Request, who: Caller, model: str) -> Settings:
    """The control plane's settings, when ``who`` may check ``model``."""
    settings: Settings = context(request).settings
    require_model_owner(who, model, partial(model_team, settings.tracking_uri))
    return settings


def _manifest(use: SnapshotUse) -> SnapshotManifest | None:
    """The snapshot's manifest, read only from a snapshot folder (the URL is a run tag)."""
    if not _SNAPSHOT_FOLDER.search(use.url) or not use.url.rstrip("/").endswith(use.fingerprint):
        return None
    return read_manifest(use.url)


def _snapshot_run(use: SnapshotUse) -> SnapshotRun:
    return SnapshotRun(
        run_id=use.run_id, run_name=use.run_name, experiment=use.experiment, status=use.status,
        start_time_ms=use.start_time_ms, fingerprint=use.fingerprint, url=use.url,
    )  # fmt: skip


def _monitor_rules(settings: Settings, model: str, version: str) -> MonitorSpec:
    """The ``monitor`` part of the serve section the version was served with (leniently)."""
    text = model_version_tag(settings.tracking_uri, model, version, TAG_SERVE_SPEC)
    try:
        stored = json.loads(text or "{}").get("monitor") or {}
        return MonitorSpec.model_validate(stored)
    except (ValueError, AttributeError):
        return MonitorSpec()


def _profile(settings: Settings, model: str, version: str) -> TrainingProfile | None:
    data = version_artifact_dict(settings.tracking_uri, model, version, TAG_PROFILE)
    try:
        return TrainingProfile.model_validate(data) if data is not None else None
    except ValueError:
        return None
