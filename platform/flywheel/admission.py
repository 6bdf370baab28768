"""Admission: which queued experiments run now, which borrowed work to preempt, and why others wait.

A pure decision function. The control plane calls :func:`decide` with the teams file, the
cluster's capacity and every queued and admitted workload, applies the :class:`Decision` it gets
(admit, ask victims to drain) and records it; nothing here does I/O.

The rules, in the order :func:`decide` applies them:

1. The queue is ordered by priority (higher first), then submission time, then id.
2. First pass: every queued workload that fits within its team's *nominal* quota (and its
   ``max_concurrent_experiments``) is admitted, in queue order. When it fits the quota but its
   cohort's pool or the cluster is full because other teams borrowed, the team reclaims its quota:
   borrowed, preemptible work of other teams is preempted, the victims that lose the least work
   first (the freshest checkpoint, or admission if later, then the lowest priority), as few as
   suffice. The workload waits, its demand reserved, until the victims have drained.
3. Second pass: what is still queued may borrow the cohort's idle lendable quota, up to its team's
   borrowing limit. Among equal priorities the team that borrows least for its
   ``fair_share_weight`` goes first (Kueue's fair sharing); each team's work in queue order.
4. Never beyond the cluster's capacity. Within a team, no workload is admitted while a workload
   of higher priority waits (one of the same priority may go ahead when it fits and the other does
   not). A workload that could never fit (more than its team may hold, or than the cluster has)
   waits with a reason that says so, and blocks no one.

Nothing depends on the order of the input: the same workloads give the same decision.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from flywheel.admission_ledger import EPSILON, ZERO, Blocker, Ledger, Vec, add, vec
from flywheel.admission_wording import Hold, WaitKind, Wording, preemption_reason
from flywheel.plans import JobPlan
from flywheel.specs.experiment import ScalingSpec
from flywheel.specs.serving import ServeSpec
from flywheel.specs.teams import Resources, TeamsSpec

WorkloadState = Literal["queued", "admitted"]

#: Wait kinds that no amount of waiting resolves: the workload or the teams file must change.
NEVER_FITS: frozenset[str] = frozenset({"unknown_team", "too_big", "bigger_than_cluster"})

_GIB = 2**30


@dataclass(frozen=True)
class Workload:
    """One experiment (or served model) as admission sees it."""

    id: str  # experiment id
    team: str
    priority: int  # value of the team's (or experiment's) priority class
    submitted_at_s: float  # epoch seconds; ties in priority go by this, then id
    demand: Resources  # peak demand of its plan
    state: WorkloadState  # admitted: holds resources (running too)
    preemptible: bool = True  # False for served models (never preempted by training)
    last_checkpoint_at_s: float | None = None  # for choosing the victim that loses least work
    admitted_at_s: float | None = None  # when it last started holding resources
    draining: bool = False  # admitted, asked to drain (a victim), not stopped yet
    expected_duration_s: float | None = None  # how long it runs once admitted, if known


@dataclass(frozen=True)
class Preemption:
    """Borrowed work to drain (checkpoint, stop, requeue) so that a team gets its quota back."""

    victim: str  # workload id to drain
    beneficiary: str  # the queued workload it makes room for
    reason: str  # one line a user can read


@dataclass(frozen=True)
class Wait:
    """Why a queued workload is not admitted now, and what would admit it."""

    workload: str
    position: int  # 1-based position in its team's queue (among the workloads still waiting)
    reason: str  # which quota, who holds it, what would admit it
    blocking_resource: str | None  # "cpu" | "gpu" | "memory_gib" | None (e.g. concurrency cap)
    holders: tuple[str, ...]  # workload ids holding the contended quota (the first 10)
    kind: WaitKind | None = None  # the rule that holds it back; always set by decide()


@dataclass(frozen=True)
class Decision:
    """What to do now."""

    admit: tuple[str, ...]  # queued workload ids to admit now, in order
    preempt: tuple[Preemption, ...]
    waiting: tuple[Wait, ...]  # every queued workload not admitted, in queue order, with why


def decide(teams: TeamsSpec, capacity: Resources, workloads: Sequence[Workload]) -> Decision:
    """Which queued workloads to admit, which borrowed work to preempt, and why the rest wait."""
    _require_unique_ids(workloads)
    decider = _Decider(teams, capacity, workloads)
    decider.admit_within_quotas()
    decider.admit_borrowing()
    return decider.decision()


def queue_order(workload: Workload) -> tuple[int, float, str]:
    """Sort key of the queue: higher priority first, then earlier submission, then id."""
    return (-workload.priority, workload.submitted_at_s, workload.id)


def loss_order(workload: Workload) -> tuple[float, int, float, str]:
    """Sort key of preemption victims: the one that loses the least work first.

    Work since the later of its last checkpoint and its admission is lost; unknown: all of it.
    Then the lowest priority, then the latest submitted.
    """
    marks = [t for t in (workload.last_checkpoint_at_s, workload.admitted_at_s) if t is not None]
    safe_point_s = max(marks) if marks else -math.inf
    return (-safe_point_s, workload.priority, -workload.submitted_at_s, workload.id)


def usage_by_team(teams: TeamsSpec, workloads: Sequence[Workload]) -> dict[str, Resources]:
    """What each team of the teams file holds now (its admitted workloads), in file order."""
    used: dict[str, Vec] = {team.name: ZERO for team in teams.teams}
    for workload in sorted(workloads, key=lambda w: w.id):
        if workload.state == "admitted" and workload.team in used:
            used[workload.team] = add(used[workload.team], vec(workload.demand))
    return {name: _resources(amount) for name, amount in used.items()}


def demand_of(plan: JobPlan) -> Resources:
    """Peak demand of a plan: its search's trial concurrency x trial resources, or its final
    training's scaling, whichever is larger in each resource.

    It mirrors what the runtime asks Ray for: a single-worker trial reserves the worker's
    resources (1 CPU by default, plus 1 GPU with ``use_gpu``); Ray Train reserves
    ``resources_per_worker`` per worker (1 CPU by default, or 1 GPU alone with ``use_gpu``).
    Fractional GPUs add up, and the total is rounded up to whole GPUs.
    """
    spec = plan.spec
    scaling = spec.train.scaling
    peak = _times(_train_worker(scaling), scaling.num_workers)
    if spec.search is not None:
        workers = spec.search.trial_workers
        trial = _trial_process(scaling) if workers == 1 else _times(_train_worker(scaling), workers)
        for stage in spec.search.resolved_stages(spec.train.epochs):
            concurrent = _times(trial, min(stage.max_concurrent, stage.trials))
            peak = (
                max(peak[0], concurrent[0]),
                max(peak[1], concurrent[1]),
                max(peak[2], concurrent[2]),
            )
    return _resources(peak)


def demand_of_serving(serve: ServeSpec, replicas: int | None = None) -> Resources:
    """What a served model version holds: ``replicas`` (default: its ``max_replicas``) times the
    resources of a replica. Pass ``min_replicas`` for the part training may never take back."""
    count = serve.autoscaling.max_replicas if replicas is None else replicas
    per_replica = serve.resources
    memory_gib = (per_replica.memory_mib or 0) / 1024
    return _resources(_times((per_replica.num_cpus, per_replica.num_gpus, memory_gib), count))


def lost_work_s(workload: Workload, stopped_at_s: float) -> float | None:
    """Seconds of work a preempted workload loses when it stops at ``stopped_at_s``: the time
    since the later of its last checkpoint and its admission (the order :func:`loss_order`
    ranks victims by). None when neither time is known."""
    marks = [t for t in (workload.last_checkpoint_at_s, workload.admitted_at_s) if t is not None]
    return max(0.0, stopped_at_s - max(marks)) if marks else None


def lost_gpu_s(workload: Workload, stopped_at_s: float) -> float | None:
    """GPU-seconds lost: :func:`lost_work_s` times the workload's GPUs (0 for CPU-only work)."""
    lost_s = lost_work_s(workload, stopped_at_s)
    return None if lost_s is None else lost_s * workload.demand.gpu


class _Decider:
    """One decision in the making: the books, and what has been decided so far.

    ``committed`` counts what is held plus the demand reserved for workloads that wait for
    victims to drain; new admissions must fit it. ``projected`` is the same without the draining
    victims: what will be held once they have stopped; reclaiming a quota must fit it.
    """

    def __init__(self, teams: TeamsSpec, capacity: Resources, workloads: Sequence[Workload]):
        self.teams = teams
        self.demand = {w.id: vec(w.demand) for w in workloads}
        self.holding = sorted((w for w in workloads if w.state == "admitted"), key=lambda w: w.id)
        self.queue = sorted((w for w in workloads if w.state == "queued"), key=queue_order)
        self.committed = Ledger.of(teams, capacity)
        self.committed.load(
            [(w.team, self.demand[w.id]) for w in self.holding if w.preemptible],
            uncounted=[(w.team, self.demand[w.id]) for w in self.holding if not w.preemptible],
        )
        self.projected = self.committed.copy()
        for workload in self.holding:
            if workload.draining:
                self.projected.hold(workload.team, self.demand[workload.id], -1)
        self._candidates: list[Workload] | None = None
        self.admitted: list[Workload] = []
        self.preemptions: list[Preemption] = []
        self.victims: set[str] = set()
        self.reserved: set[str] = set()
        self.holds: dict[str, Hold] = {}
        self.never: set[str] = set()
        self.no_victims: set[tuple[str, str, int | None]] = set()  # (team, kind, resource)

    @property
    def candidates(self) -> list[Workload]:
        """Work that may be preempted, the least loss first; sorted when first needed."""
        if self._candidates is None:
            self._candidates = sorted(
                (
                    w
                    for w in self.holding
                    if w.preemptible and not w.draining and w.team in self.committed.teams
                ),
                key=loss_order,
            )
        return self._candidates

    def admit_within_quotas(self) -> None:
        """First pass: admit, or reclaim a quota for, what fits its team's nominal quota."""
        first_waiting: dict[str, Workload] = {}
        for workload in self.queue:
            demand = self.demand[workload.id]
            never = self.committed.never_fits(workload.team, demand)
            if never is not None:
                self.holds[workload.id] = Hold(never)
                self.never.add(workload.id)
                continue
            ahead = first_waiting.get(workload.team)
            if ahead is not None and workload.priority < ahead.priority:
                continue  # the second pass says why
            blocker = self.committed.blocker(workload.team, demand, False, workload.preemptible)
            if blocker is None:
                self._admit(workload)
                continue
            if blocker.kind in ("cohort", "capacity"):
                self._reclaim(workload, blocker)
            first_waiting.setdefault(workload.team, workload)

    def admit_borrowing(self) -> None:
        """Second pass: what is still queued may borrow its cohort's idle quota.

        Teams take turns: among equal priorities, the team that borrows least for its
        ``fair_share_weight`` goes next (Kueue's fair sharing), each team in its queue order.
        """
        admitted = {w.id for w in self.admitted}
        lines: dict[str, deque[Workload]] = {}
        for workload in self.queue:
            if workload.id not in admitted and workload.id not in self.never:
                lines.setdefault(workload.team, deque()).append(workload)
        first_waiting: dict[str, Workload] = {}
        shares = {team: self.committed.borrowed_share(team) for team in lines}
        turns = [(_turn(line[0], shares[team]), team) for team, line in lines.items()]
        heapq.heapify(turns)  # only the team that just had its turn changes its borrowed share
        while turns:
            _, team = heapq.heappop(turns)
            if self._borrow(lines[team].popleft(), first_waiting):
                shares[team] = self.committed.borrowed_share(team)
            if lines[team]:
                heapq.heappush(turns, (_turn(lines[team][0], shares[team]), team))

    def _borrow(self, workload: Workload, first_waiting: dict[str, Workload]) -> bool:
        """Admit ``workload``, borrowing if it must (True), or say why it waits."""
        team = workload.team
        if workload.id in self.reserved:
            first_waiting.setdefault(team, workload)
            return False
        ahead = first_waiting.get(team)
        if ahead is not None and workload.priority < ahead.priority:
            self.holds[workload.id] = Hold(behind=ahead)
            return False
        blocker = self.committed.blocker(team, self.demand[workload.id], True, workload.preemptible)
        if blocker is None:
            self._admit(workload)
            return True
        self.holds[workload.id] = Hold(blocker)
        first_waiting.setdefault(team, workload)
        return False

    def decision(self) -> Decision:
        """The decision, with every waiting workload's reason put in words."""
        admitted = {w.id for w in self.admitted}
        promised = [w for w in self.queue if w.id in self.reserved]
        words = Wording(
            self.teams, self.committed, self.holding + self.admitted + promised, self.demand
        )
        waiting: list[Wait] = []
        positions: dict[str, int] = {}
        for workload in self.queue:
            if workload.id in admitted:
                continue
            position = positions[workload.team] = positions.get(workload.team, 0) + 1
            said = words.wait(workload, self.holds[workload.id])
            waiting.append(
                Wait(
                    workload.id,
                    position,
                    said.reason,
                    said.blocking_resource,
                    said.holders,
                    said.kind,
                )
            )
        return Decision(
            admit=tuple(w.id for w in self.admitted),
            preempt=tuple(self.preemptions),
            waiting=tuple(waiting),
        )

    def _admit(self, workload: Workload) -> None:
        demand = self.demand[workload.id]
        self.committed.hold(workload.team, demand, count=workload.preemptible)
        self.projected.hold(workload.team, demand, count=workload.preemptible)
        self.admitted.append(workload)

    def _reclaim(self, workload: Workload, blocker: Blocker) -> None:
        """Make room within ``workload``'s nominal quota by preempting borrowed work, if any.

        On success the workload's demand is reserved and it waits for its victims to drain.
        """
        victims = self._choose_victims(workload)
        if victims is None:
            return
        demand = self.demand[workload.id]
        self.committed.hold(workload.team, demand, count=workload.preemptible)
        self.projected.hold(workload.team, demand, count=workload.preemptible)
        self.reserved.add(workload.id)
        for victim in victims:
            self.victims.add(victim.id)
            self.preemptions.append(
                Preemption(victim.id, workload.id, preemption_reason(victim, workload, blocker))
            )
        draining = tuple(v.id for v in victims) or self._draining_for(workload, blocker)
        self.holds[workload.id] = Hold(blocker, draining=draining)

    def _choose_victims(self, workload: Workload) -> list[Workload] | None:
        """The fewest victims, least loss first, after which ``workload`` fits once they (and
        what already drains) have stopped; None when no borrowed work can make room.

        The victims come out of ``projected``; on None it is left as it was.
        """
        demand = self.demand[workload.id]
        chosen: list[Workload] = []
        needs = self.projected.blocker(workload.team, demand, False, workload.preemptible)
        while needs is not None:
            key = (workload.team, needs.kind, needs.resource)
            victim = None
            if needs.kind in _RECLAIMABLE and key not in self.no_victims:
                victim = self._next_victim(workload, needs, chosen)
            if victim is None:
                if not chosen:  # none now, none later: candidates only go in this pass
                    self.no_victims.add(key)
                for taken in chosen:
                    self.projected.hold(taken.team, self.demand[taken.id])
                return None
            self.projected.hold(victim.team, self.demand[victim.id], -1)
            chosen.append(victim)
            needs = self.projected.blocker(workload.team, demand, False, workload.preemptible)
        return self._fewest(workload, chosen)

    def _next_victim(
        self, workload: Workload, needs: Blocker, chosen: list[Workload]
    ) -> Workload | None:
        """The borrowed work whose preemption helps ``workload`` and loses the least work."""
        resource = needs.resource
        assert resource is not None
        cohort = self.projected.teams[workload.team].spec.cohort
        taken = {w.id for w in chosen}
        for candidate in self.candidates:
            if (
                candidate.id in self.victims
                or candidate.id in taken
                or candidate.team == workload.team
            ):
                continue
            if self.demand[candidate.id][resource] <= EPSILON:
                continue
            book = self.projected.teams[candidate.team]
            if needs.kind == "cohort" and book.spec.cohort != cohort:
                continue
            if book.borrows(resource):
                return candidate
        return None

    def _fewest(self, workload: Workload, chosen: list[Workload]) -> list[Workload]:
        """``chosen`` less every victim the workload fits without, last chosen tried first."""
        demand = self.demand[workload.id]
        kept: list[Workload] = []
        for victim in reversed(chosen):
            self.projected.hold(victim.team, self.demand[victim.id])
            if self.projected.blocker(workload.team, demand, False, workload.preemptible) is None:
                continue
            self.projected.hold(victim.team, self.demand[victim.id], -1)
            kept.append(victim)
        return list(reversed(kept))

    def _draining_for(self, workload: Workload, blocker: Blocker) -> tuple[str, ...]:
        """The victims, of this decision or earlier ones, that hold what ``workload`` needs."""
        resource = blocker.resource
        assert resource is not None
        cohort = self._cohort_of(workload.team)
        return tuple(
            w.id
            for w in self.holding
            if (w.draining or w.id in self.victims)
            and self.demand[w.id][resource] > EPSILON
            and (blocker.kind == "capacity" or self._cohort_of(w.team) == cohort)
        )

    def _cohort_of(self, team: str) -> str | None:
        book = self.committed.teams.get(team)
        return None if book is None else book.spec.cohort


_RECLAIMABLE = ("cohort", "capacity")


def _turn(workload: Workload, borrowed_share: float) -> tuple[int, float, float, str]:
    """Whose turn it is to borrow: priority, then the team's borrowed share, then the queue."""
    return (-workload.priority, borrowed_share, workload.submitted_at_s, workload.id)


def _require_unique_ids(workloads: Sequence[Workload]) -> None:
    seen: set[str] = set()
    for workload in workloads:
        if workload.id in seen:
            raise ValueError(f"workload {workload.id!r} appears twice; ids must be unique")
        seen.add(workload.id)


def _resources(amount: Vec) -> Resources:
    """``amount`` as Resources; GPUs (fractions summed) rounded up to whole ones."""
    gpu = math.ceil(amount[1] - EPSILON)
    return Resources(cpu=round(amount[0], 9), gpu=max(0, gpu), memory_gib=round(amount[2], 9))


def _times(amount: Vec, count: int) -> Vec:
    return (amount[0] * count, amount[1] * count, amount[2] * count)


def _train_worker(scaling: ScalingSpec) -> Vec:
    """What Ray Train reserves per worker (ray.train.ScalingConfig's defaults)."""
    given = {key.lower(): value for key, value in scaling.resources_per_worker.items()}
    if not given:
        given = {"gpu": 1.0} if scaling.use_gpu else {"cpu": 1.0}
    if scaling.use_gpu:
        given.setdefault("gpu", 1.0)
    return (given.get("cpu", 0.0), given.get("gpu", 0.0), given.get("memory", 0.0) / _GIB)


def _trial_process(scaling: ScalingSpec) -> Vec:
    """What Tune reserves for a single-worker trial (flywheel.runtime.trial.trial_resources)."""
    given = {key.lower(): value for key, value in scaling.resources_per_worker.items()}
    given.setdefault("cpu", 1.0)
    if scaling.use_gpu:
        given.setdefault("gpu", 1.0)
    return (given["cpu"], given.get("gpu", 0.0), given.get("memory", 0.0) / _GIB)
