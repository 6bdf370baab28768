"""Read-only views of the queue: usage against quota, waiting experiments, explanations.

They call the same pure :func:`flywheel.admission.decide` as the queue driver, so what
``flywheel explain`` says is what the driver will do.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from flywheel.admission import Decision, Workload, decide, usage_by_team
from flywheel.admission_estimate import estimate_admissions
from flywheel.server.auth import Caller
from flywheel.server.models import HOLDING_STATES, WAITING_STATES, Experiment
from flywheel.server.queue import workloads
from flywheel.server.serving_usage import is_serving
from flywheel.specs.teams import Resources, TeamsSpec
from flywheel.wire import Explanation, QueueEntry, QueueView, TeamUsage


def team_usages(
    session: Session, teams: TeamsSpec, caller: Caller, served: Sequence[Workload] = ()
) -> list[TeamUsage]:
    """Usage against quota of the caller's team (every team for the admin); served models count
    in the usage, not in the experiment counts."""
    current = workloads(session, teams, served)
    usage = usage_by_team(teams, current)
    lost = _gpu_minutes_lost_by_team(session)
    rows = []
    for team in teams.teams:
        if not caller.admin and team.name != caller.team:
            continue
        mine = [w for w in current if w.team == team.name and not is_serving(w.id)]
        rows.append(
            TeamUsage(
                name=team.name, priority=teams.priority_value(team.priority), quota=team.quota,
                borrowing_limit=team.borrowing_limit, usage=usage.get(team.name, Resources()),
                admitted=sum(w.state == "admitted" for w in mine),
                queued=sum(w.state == "queued" for w in mine),
                max_concurrent_experiments=team.max_concurrent_experiments,
                gpu_minutes_lost=lost.get(team.name, 0.0),
            )
        )  # fmt: skip
    return rows


def queue_view(
    session: Session, teams: TeamsSpec, capacity: Resources, caller: Caller,
    served: Sequence[Workload] = (),
) -> QueueView:  # fmt: skip
    """Waiting experiments in admission order, with why each waits."""
    decision = decide(teams, capacity, workloads(session, teams, served))
    rows = _waiting_rows(session)
    hide = _Redaction(caller, {**_owners(rows.values()), **{w.id: w.team for w in served}})
    entries = [
        _entry(rows[wait.workload], wait.position, hide.text(wait.reason),
               wait.blocking_resource, hide.holders(wait.holders))
        for wait in decision.waiting
        if wait.workload in rows and (caller.admin or rows[wait.workload].team == caller.team)
    ]  # fmt: skip
    usages = team_usages(session, teams, caller, served)
    return QueueView(capacity=capacity, waiting=entries, teams=usages)


def explain(
    session: Session, teams: TeamsSpec, capacity: Resources, experiment: Experiment,
    caller: Caller, served: Sequence[Workload] = (),
) -> Explanation:  # fmt: skip
    """Why ``experiment`` waits: the quota, its holders, its position, a rough estimate.

    Another team's experiments and models are named by their team only, for a team caller."""
    owners = {**_owners(_waiting_rows(session).values()), **{w.id: w.team for w in served}}
    hide = _Redaction(caller, owners)
    said = _explain(session, teams, capacity, experiment, served)
    return said.model_copy(
        update={
            "reason": hide.text(said.reason),
            "holders": hide.holders(tuple(said.holders)),
            "estimate_reason": hide.text(said.estimate_reason),
        }
    )


class _Redaction:
    """Replaces the ids of other teams' experiments with their team, for a team caller."""

    def __init__(self, caller: Caller, team_of: dict[str, str]) -> None:
        self._hidden = {} if caller.admin else {
            experiment_id: team for experiment_id, team in team_of.items()
            if team != caller.team
        }  # fmt: skip

    def text(self, text: str) -> str:
        for experiment_id, team in self._hidden.items():
            text = text.replace(experiment_id, f"an experiment of team {team}")
        return text

    def holders(self, holders: tuple[str, ...]) -> list[str]:
        return [f"team {self._hidden[h]}" if h in self._hidden else h for h in holders]


def _owners(rows: Iterable[Experiment]) -> dict[str, str]:
    return {e.id: e.team for e in rows}


def _explain(
    session: Session, teams: TeamsSpec, capacity: Resources, experiment: Experiment,
    served: Sequence[Workload],
) -> Explanation:  # fmt: skip
    if experiment.state not in WAITING_STATES:
        return Explanation(
            experiment=experiment.id, state=experiment.state, waiting=False, position=None,
            reason=f"{experiment.id} is {experiment.state}, not waiting",
            blocking_resource=None, holders=[], estimate_s=None,
        )  # fmt: skip
    current = workloads(session, teams, served)
    decision = decide(teams, capacity, current)
    wait = next((w for w in decision.waiting if w.workload == experiment.id), None)
    if wait is None:
        return _about_to_start(experiment, decision)
    now_s = time.time()
    estimate = estimate_admissions(teams, capacity, current, now_s).get(experiment.id)
    when_s = estimate.admitted_at_s if estimate is not None else None
    return Explanation(
        experiment=experiment.id, state=experiment.state, waiting=True, position=wait.position,
        reason=wait.reason, blocking_resource=wait.blocking_resource, holders=list(wait.holders),
        estimate_s=None if when_s is None else round(max(0.0, when_s - now_s), 1),
        estimate_reason=estimate.reason if estimate is not None else "",
    )  # fmt: skip


def _about_to_start(experiment: Experiment, decision: Decision) -> Explanation:
    admitted = experiment.id in decision.admit
    reason = "admitted at the next queue step" if admitted else "waits for the queue driver"
    return Explanation(
        experiment=experiment.id, state=experiment.state, waiting=True, position=1,
        reason=reason, blocking_resource=None, holders=[], estimate_s=None,
    )  # fmt: skip


def _waiting_rows(session: Session) -> dict[str, Experiment]:
    query = select(Experiment).where(Experiment.state.in_(WAITING_STATES | HOLDING_STATES))
    return {e.id: e for e in session.scalars(query)}


def _entry(
    row: Experiment, position: int, reason: str, blocking: str | None, holders: list[str]
) -> QueueEntry:
    return QueueEntry(
        experiment=row.id, team=row.team, name=row.name, state=row.state, priority=row.priority,
        position=position, reason=reason, blocking_resource=blocking, holders=holders,
    )  # fmt: skip


def _gpu_minutes_lost_by_team(session: Session) -> dict[str, float]:
    lost: dict[str, float] = {}
    for team, minutes in session.execute(select(Experiment.team, Experiment.gpu_minutes_lost)):
        lost[team] = lost.get(team, 0.0) + minutes
    return lost
