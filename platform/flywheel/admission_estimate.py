"""When would a waiting workload be admitted? An estimate from the expected durations of work.

Pure. :func:`estimate_admissions` replays the future through the same
:func:`~flywheel.admission.decide` the control plane uses: it lets admitted work end when its
expected duration says it will, admits what ``decide`` admits then, and notes when each queued
workload gets in. It assumes what it cannot know: that nothing new is submitted, that work runs
exactly its expected duration (work past it is taken to end now), and that preempted work drains
at once. Where the work a workload
waits for has no expected duration, the estimate says it cannot tell rather than guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from flywheel.admission import NEVER_FITS, Decision, Wait, Workload, decide
from flywheel.admission_wording import names
from flywheel.specs.teams import Resources, TeamsSpec

#: Most ends of running work an estimate looks ahead; beyond them it cannot tell.
MAX_EVENTS = 200

_EPSILON_S = 1e-6


@dataclass(frozen=True)
class Estimate:
    """When a queued workload is expected to be admitted, or why that cannot be told."""

    workload: str
    admitted_at_s: float | None  # epoch seconds; None: cannot tell
    reason: str  # what the estimate rests on, or why there is none


def estimate_admissions(
    teams: TeamsSpec,
    capacity: Resources,
    workloads: Sequence[Workload],
    now_s: float,
    max_events: int = MAX_EVENTS,
) -> dict[str, Estimate]:
    """An :class:`Estimate` for every queued workload, in queue order of the first decision."""
    world = {w.id: _requeued(w, now_s) if w.draining else w for w in workloads}
    queued = [w.id for w in workloads if w.state == "queued" or w.draining]
    admitted_at: dict[str, float] = {}
    last_waits: dict[str, Wait] = {}
    time_s, events = now_s, 0
    for _ in range(4 * max_events + len(workloads)):  # a bound; the loop ends well before
        decision = decide(teams, capacity, list(world.values()))
        _apply(world, decision, time_s, admitted_at)
        last_waits = {w.workload: w for w in decision.waiting}
        if not decision.waiting:
            break
        if decision.admit or decision.preempt:
            continue  # decide again at the same time: what was admitted may let others in
        ending = _next_ends(world, time_s)
        if not ending or events >= max_events:
            break
        time_s = ending[0][0]
        for end_s, workload_id in ending:
            if end_s <= time_s + _EPSILON_S:
                del world[workload_id]
        events += 1
    return {
        workload_id: _estimate(workload_id, admitted_at, last_waits, world, max_events)
        for workload_id in queued
    }


def _apply(
    world: dict[str, Workload], decision: Decision, time_s: float, admitted_at: dict[str, float]
) -> None:
    for workload_id in decision.admit:
        world[workload_id] = replace(world[workload_id], state="admitted", admitted_at_s=time_s)
        admitted_at.setdefault(workload_id, time_s)  # its first admission: the one it waits for
    for preemption in decision.preempt:
        world[preemption.victim] = _requeued(world[preemption.victim], time_s)


def _requeued(workload: Workload, time_s: float) -> Workload:
    return replace(workload, state="queued", draining=False, last_checkpoint_at_s=time_s)


def _next_ends(world: dict[str, Workload], time_s: float) -> list[tuple[float, str]]:
    """When each admitted workload with a known duration ends (now, if overdue), soonest first."""
    ends = []
    for workload in world.values():
        if workload.state != "admitted" or workload.expected_duration_s is None:
            continue
        if workload.admitted_at_s is None:
            continue
        ends.append(
            (max(time_s, workload.admitted_at_s + workload.expected_duration_s), workload.id)
        )
    return sorted(ends)


def _estimate(
    workload_id: str,
    admitted_at: dict[str, float],
    last_waits: dict[str, Wait],
    world: dict[str, Workload],
    max_events: int,
) -> Estimate:
    if workload_id in admitted_at:
        return Estimate(
            workload_id,
            admitted_at[workload_id],
            "if the work ahead of it runs for its expected duration and nothing of higher "
            "priority is submitted",
        )
    wait = last_waits[workload_id]
    unknown = tuple(h for h in wait.holders if h in world and world[h].expected_duration_s is None)
    if unknown:
        verb = "holds" if len(unknown) == 1 else "hold"
        why = f"cannot tell: {names(unknown)} {verb} what it needs with no expected duration"
    elif wait.kind in NEVER_FITS:
        why = "never, as it is: " + wait.reason
    else:
        why = f"cannot tell: not within the next {max_events} ends of running work"
    return Estimate(workload_id, None, why)
