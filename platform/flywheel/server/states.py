"""Experiment state changes: legal moves, compare-and-set updates, and their history."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from flywheel.server.models import Experiment, ExperimentState, Transition

#: Legal moves. A lost job (the cluster forgot it) goes back to QUEUED from ADMITTED or RUNNING.
ALLOWED: dict[str, frozenset[str]] = {
    "QUEUED": frozenset({"ADMITTED", "STOPPED"}),
    "ADMITTED": frozenset({"RUNNING", "SUCCEEDED", "FAILED", "STOPPED", "PREEMPTING", "QUEUED"}),
    "RUNNING": frozenset({"SUCCEEDED", "FAILED", "STOPPED", "PREEMPTING", "QUEUED"}),
    "PREEMPTING": frozenset({"PREEMPTED", "SUCCEEDED", "FAILED", "STOPPED"}),
    "PREEMPTED": frozenset({"ADMITTED", "STOPPED"}),
    "SUCCEEDED": frozenset(),
    "FAILED": frozenset(),
    "STOPPED": frozenset(),
}


def move(
    session: Session, experiment: Experiment, to_state: ExperimentState, reason: str,
    **fields: Any,
) -> bool:  # fmt: skip
    """Move ``experiment`` to ``to_state`` if it is still in the state we read (compare-and-set),
    record the transition, and update ``fields``; False when another writer moved it first."""
    from_state = experiment.state
    if to_state not in ALLOWED[from_state]:
        raise ValueError(f"illegal transition {from_state} -> {to_state} of {experiment.id}")
    result = session.execute(
        update(Experiment)
        .where(Experiment.id == experiment.id, Experiment.state == from_state)
        .values(state=to_state, **fields)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return False
    session.add(
        Transition(
            experiment_id=experiment.id, from_state=from_state, to_state=to_state,
            reason=reason, at_s=time.time(),
        )
    )  # fmt: skip
    session.refresh(experiment)
    return True


def record_submission(session: Session, experiment: Experiment, reason: str) -> None:
    """Store a new experiment in QUEUED with its first transition."""
    session.add(experiment)
    session.flush()
    session.add(
        Transition(
            experiment_id=experiment.id, from_state=None, to_state="QUEUED", reason=reason,
            at_s=experiment.submitted_at_s,
        )
    )  # fmt: skip
