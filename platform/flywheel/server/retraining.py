"""Retraining from production: `flywheel retrain MODEL` and the alert that triggers it.

A retraining reruns the spec of the experiment that registered the model's latest version, from
that experiment's stored code bundle, with the model's fed-back requests added to the training
data (:mod:`flywheel.retraining` joins feedback to the request log and repeats the mistakes;
:mod:`flywheel.feedback_sets` stores them). Its job registers a new version and serves it the
way the spec's ``serve`` section says a later version starts: a shadow or a canary.

Everything is checked before anything is written: the caller owns the model, the model came from
an experiment of this control plane, its task is a classification, no retraining of it is
already waiting or running, and feedback was joined to at least one logged request.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from flywheel import storage
from flywheel.errors import FlywheelError, RetrainError, RetrainRunningError, ServeInputError
from flywheel.feedback_sets import write_feedback_set
from flywheel.plans import JobPlan, new_job_id, retrain_plan
from flywheel.request_log import read_feedback, read_requests
from flywheel.retraining import RetrainRecord, retrain_due, retraining_data
from flywheel.server.auth import Caller
from flywheel.server.experiments import store_and_queue
from flywheel.server.models import FINAL_STATES, Experiment
from flywheel.settings import Settings
from flywheel.specs.serving import MonitorSpec
from flywheel.specs.teams import TeamsSpec
from flywheel.storage import download_tree
from flywheel.tracking import ModelOrigin
from flywheel.wire import AlertState, RetrainView

_log = logging.getLogger("flywheel.retrain")


def retrain_model(
    session: Session, settings: Settings, teams: TeamsSpec, caller: Caller, model: str,
    origin: ModelOrigin | None, reason: str = "",
) -> RetrainView:  # fmt: skip
    """Queue a retraining of ``model`` with its fed-back requests added to the training data."""
    if origin is None or (not caller.admin and origin.team != caller.team):
        raise ServeInputError(f"team {caller.team!r} has no registered model {model!r}")
    source = session.get(Experiment, origin.job_id) if origin.job_id else None
    if source is None:
        raise RetrainError(
            f"version {origin.version} of {model!r} was not registered by an experiment of this "
            "control plane, so there is no spec to retrain from; submit its spec instead"
        )
    old = JobPlan.model_validate_json(source.plan_json)
    if old.spec.task.kind != "classification":
        raise RetrainError(
            f"{model!r} is a {old.spec.task.kind} model; retraining from feedback needs class "
            "labels (a classification task)"
        )
    _refuse_second(session, source, model)
    serve = old.spec.serve
    rules = serve.monitor if serve is not None else MonitorSpec()
    root = str(settings.storage_root)
    data = retraining_data(
        read_requests(root, model), read_feedback(root, model), rules.retrain_wrong_repeats
    )
    if len(data.labels) == 0:
        raise RetrainError(
            f"{model!r} has no feedback on a logged request to train on ({data.skipped} feedback "
            "records had no logged request or no class label): send labels with POST "
            f"/v2/models/{model}/feedback for answered requests; only requests in the request "
            "log's sample (the serve section's monitor.sample_rate) can be fed back"
        )
    feedback = write_feedback_set(old.storage_root, model, origin.version, data)
    with tempfile.TemporaryDirectory(prefix="flywheel-retrain-") as scratch:
        folder = download_tree(source.bundle_url, Path(scratch) / "experiment")
        plan = retrain_plan(old, new_job_id(old.spec), feedback)
        why = reason or f"retrains {model} version {origin.version} (asked by {caller.name})"
        view = store_and_queue(
            session, teams, plan, folder,
            f"{why}: {feedback.requests} fed-back requests, {feedback.wrong} of them mistakes",
        )  # fmt: skip
    return RetrainView(experiment=view, feedback=feedback)


def _refuse_second(session: Session, source: Experiment, model: str) -> None:
    """JobError when a retraining of ``model`` is already waiting or running."""
    unfinished = session.scalars(
        select(Experiment).where(
            Experiment.team == source.team,
            Experiment.name == source.name,
            Experiment.state.not_in(FINAL_STATES),
        )
    )
    for experiment in unfinished:
        plan = JobPlan.model_validate_json(experiment.plan_json)
        if plan.feedback is not None and plan.feedback.model == model:
            raise RetrainRunningError(experiment.id, experiment.state, model)


def retrain_record_url(storage_root: str, model: str) -> str:
    return storage.join(storage_root, "monitoring", model, "retrain.json")


def read_retrain_record(storage_root: str, model: str) -> RetrainRecord | None:
    """The last automatic retraining of ``model``; None when there was none (or it is torn)."""
    data = storage.read_bytes(retrain_record_url(storage_root, model))
    try:
        return RetrainRecord.model_validate_json(data) if data is not None else None
    except ValidationError:
        return None


def retrain_on_alert(
    sessions: sessionmaker[Session], settings: Settings, teams: TeamsSpec, model: str,
    alert: AlertState, rules: MonitorSpec, origin: Callable[[], ModelOrigin | None], now_s: float,
) -> str | None:  # fmt: skip
    """Queue the retraining a raised alert asks for (see :func:`retrain_due`); its experiment id.

    Called after every monitor check, by whoever ran it; ``origin`` (an MLflow lookup) is asked
    only when a retraining is due. A retraining already waiting or running counts as this
    incident's; a model that cannot be retrained (no feedback yet) is logged and tried again at
    the next check.
    """
    root = str(settings.storage_root)
    if not retrain_due(alert, rules, read_retrain_record(root, model), now_s):
        return None
    assert alert.since_s is not None
    reason = f"the drift alert on {model} (raised {_iso(alert.since_s)}) retrains version"
    queued: str | None = None
    try:
        with sessions.begin() as session:
            caller = Caller(team=None, admin=True)
            view = retrain_model(session, settings, teams, caller, model, origin(), reason)
        queued = answered = view.experiment.id
        _log.warning("drift alert on %s: queued retraining %s", model, queued)
    except RetrainRunningError as e:
        answered = e.experiment_id
    except FlywheelError as e:
        _log.warning("drift alert on %s: no automatic retraining yet: %s", model, e)
        return None
    record = RetrainRecord(incident_s=alert.since_s, submitted_s=now_s, experiment_id=answered)
    storage.write_text(retrain_record_url(root, model), record.model_dump_json())
    return queued


def _iso(time_s: float) -> str:
    return datetime.fromtimestamp(time_s, tz=UTC).isoformat(timespec="seconds")
