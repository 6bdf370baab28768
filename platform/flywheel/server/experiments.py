"""Experiments: submit, resume, list, get and stop, as the API routes call them.

Each function takes an open session and the caller, checks access, and returns wire views.
Bad input raises before anything is written: the bundle is checked and the spec validated in
a scratch folder; only then is the bundle stored and the experiment queued.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from flywheel.admission import demand_of
from flywheel.errors import JobError, JobNotFoundError, SpecError, SpecProblem
from flywheel.plans import (
    META_BUNDLE,
    PLAN_PATH,
    JobPlan,
    new_job_id,
    resumed_plan,
    spec_to_job_plan,
)
from flywheel.server.auth import Caller
from flywheel.server.bundles import check_spec_file, extract_bundle
from flywheel.server.models import FINAL_STATES, WAITING_STATES, Experiment, Transition
from flywheel.server.states import move, record_submission
from flywheel.settings import Settings
from flywheel.specs.experiment import ExperimentSpec
from flywheel.specs.teams import Resources, TeamsSpec
from flywheel.specs.validate import validate_experiment
from flywheel.storage import download_tree, upload_tree
from flywheel.wire import ExperimentView, TransitionView


def submit_experiment(
    session: Session, settings: Settings, teams: TeamsSpec, caller: Caller,
    archive: Path, spec_file: str, resume: bool = False,
) -> ExperimentView:  # fmt: skip
    """Check and store an uploaded bundle, then queue its experiment."""
    check_spec_file(spec_file)
    with tempfile.TemporaryDirectory(prefix="flywheel-upload-") as scratch:
        folder = extract_bundle(archive, Path(scratch) / "experiment")
        spec_path = folder / spec_file
        if not spec_path.is_file():
            raise JobError(f"the code bundle has no {spec_file}; upload the spec's folder")
        spec = _validated(spec_path, folder)
        caller.require_team(spec.team, f"the spec's team ({spec_file}: team)")
        _require_known_team(teams, spec.team)
        plan = spec_to_job_plan(spec, spec_file, spec_path.read_bytes(), settings, new_job_id(spec))
        return store_and_queue(session, teams, plan, folder, "submitted")


def resume_experiment(
    session: Session, settings: Settings, teams: TeamsSpec, caller: Caller, name: str,
    team: str | None,
) -> ExperimentView:  # fmt: skip
    """Queue a new experiment that continues the search of the last one called ``name``."""
    team = team or caller.team
    if team is None:
        raise JobError("the admin token must name the team: pass --team")
    caller.require_team(team, f"experiment {name!r}")
    last = session.scalar(
        select(Experiment)
        .where(Experiment.team == team, Experiment.name == name)
        .order_by(Experiment.submitted_at_s.desc())
    )
    if last is None:
        raise JobError(f"team {team!r} has no experiment {name!r}; `flywheel jobs` lists them")
    if last.state not in FINAL_STATES:
        raise JobError(f"{last.id} is {last.state}; stop it first with `flywheel stop {last.id}`")
    old = JobPlan.model_validate_json(last.plan_json)
    if old.spec.search is None:
        raise JobError(f"{name!r} has no search section: there is no search to resume")
    with tempfile.TemporaryDirectory(prefix="flywheel-resume-") as scratch:
        folder = download_tree(last.bundle_url, Path(scratch) / "experiment")
        plan = resumed_plan(old, new_job_id(old.spec))
        return store_and_queue(session, teams, plan, folder, f"resumes {last.id}")


def list_experiments(session: Session, caller: Caller) -> list[ExperimentView]:
    """The caller's team's experiments (every team's for the admin), newest first."""
    query = select(Experiment).order_by(Experiment.submitted_at_s.desc())
    if not caller.admin:
        query = query.where(Experiment.team == caller.team)
    return [experiment_view(session, e, history=False) for e in session.scalars(query)]


def get_experiment(session: Session, caller: Caller, experiment_id: str) -> Experiment:
    """The experiment row; JobNotFoundError (404) or PermissionDeniedError (403)."""
    experiment = session.get(Experiment, experiment_id)
    if experiment is None:
        raise JobNotFoundError(experiment_id)
    caller.require_team(experiment.team, f"experiment {experiment_id!r}")
    return experiment


def request_stop(session: Session, caller: Caller, experiment_id: str) -> Experiment:
    """Stop a waiting experiment now; mark a running one for the queue driver to stop."""
    experiment = get_experiment(session, caller, experiment_id)
    if experiment.state in FINAL_STATES:
        return experiment
    if experiment.state in WAITING_STATES:
        move(session, experiment, "STOPPED", f"stopped by {caller.name} while waiting")
        return experiment
    experiment.stop_requested = True
    session.flush()
    return experiment


def experiment_view(session: Session, experiment: Experiment, history: bool) -> ExperimentView:
    transitions: list[TransitionView] = []
    if history:
        rows = session.scalars(
            select(Transition)
            .where(Transition.experiment_id == experiment.id)
            .order_by(Transition.id)
        )
        transitions = [
            TransitionView(
                from_state=t.from_state, to_state=t.to_state, reason=t.reason, at_s=t.at_s
            )
            for t in rows
        ]
    return ExperimentView(
        id=experiment.id,
        team=experiment.team,
        name=experiment.name,
        state=experiment.state,
        priority=experiment.priority,
        submitted_at_s=experiment.submitted_at_s,
        demand=demand_resources(experiment),
        attempt=experiment.attempt,
        ray_job_id=experiment.ray_job_id,
        gpu_minutes_lost=experiment.gpu_minutes_lost,
        last_save_s=experiment.last_checkpoint_at_s,
        message=experiment.message,
        transitions=transitions,
    )


def demand_resources(experiment: Experiment) -> Resources:
    return Resources(
        cpu=experiment.demand_cpu,
        gpu=experiment.demand_gpu,
        memory_gib=experiment.demand_memory_gib,
    )


def store_and_queue(
    session: Session, teams: TeamsSpec, plan: JobPlan, folder: Path, reason: str
) -> ExperimentView:
    """Write the plan into the bundle, keep the bundle under the storage root, queue it."""
    demand = demand_of(plan)
    team = teams.team(plan.spec.team)
    experiment = Experiment(
        id=plan.job_id, team=team.name, name=plan.spec.name, state="QUEUED",
        priority=teams.priority_value(team.priority), submitted_at_s=time.time(),
        demand_cpu=demand.cpu, demand_gpu=demand.gpu, demand_memory_gib=demand.memory_gib,
        bundle_url=plan.metadata[META_BUNDLE], plan_json=plan.model_dump_json(), attempt=0,
        ray_job_id=None, stop_requested=False, gpu_minutes_lost=0.0, message="",
    )  # fmt: skip
    record_submission(session, experiment, reason)
    session.flush()  # a duplicate or invalid row fails here, before the bundle is stored
    plan_file = folder / PLAN_PATH
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    plan_file.write_text(plan.model_dump_json(indent=2))
    upload_tree(folder, experiment.bundle_url)  # a failure rolls the row back
    return experiment_view(session, experiment, history=True)


def _validated(spec_path: Path, folder: Path) -> ExperimentSpec:
    """The spec, or SpecError whose problems name the file as the user knows it."""
    try:
        return validate_experiment(spec_path)
    except SpecError as e:
        prefix = f"{folder}/"
        problems = [
            SpecProblem(p.file.removeprefix(prefix), p.line, p.path, p.message) for p in e.problems
        ]
        raise SpecError(problems) from e


def _require_known_team(teams: TeamsSpec, team: str) -> None:
    try:
        teams.team(team)
    except KeyError as e:
        known = ", ".join(t.name for t in teams.teams)
        raise JobError(f"team {team!r} is not in the teams file; known teams: {known}") from e
