"""Admission's words: why a workload waits, who holds what it needs, why a victim is chosen.

Pure and internal to :mod:`flywheel.admission`, which decides; this module only explains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from flywheel.admission_ledger import EPSILON, RESOURCE_NAMES, Blocker, Ledger, Vec
from flywheel.specs.teams import TeamsSpec

#: Why a workload waits: the rule it breaks (a :class:`Blocker` kind), ``behind`` a higher
#: priority of its team, or ``draining``: for its victims to stop.
WaitKind = Literal[
    "unknown_team",
    "too_big",
    "bigger_than_cluster",
    "concurrency",
    "limit",
    "cohort",
    "capacity",
    "behind",
    "draining",
]

#: Most holders a wait names; its reason counts the others.
MAX_HOLDERS = 10


class Named(Protocol):
    """What wording needs of a workload (an :class:`flywheel.admission.Workload`)."""

    @property
    def id(self) -> str: ...

    @property
    def team(self) -> str: ...

    @property
    def priority(self) -> int: ...


@dataclass(frozen=True)
class Said:
    """A wait in words."""

    reason: str
    blocking_resource: str | None
    holders: tuple[str, ...]
    kind: WaitKind


@dataclass(frozen=True)
class Hold:
    """Why a workload waits, before it is put in words."""

    blocker: Blocker | None = None
    behind: Named | None = None  # the higher-priority workload of its team that waits first
    draining: tuple[str, ...] = ()  # victims it waits for


class Wording:
    """Puts holds in words: the reason, the blocking resource and who holds it."""

    def __init__(
        self, teams: TeamsSpec, ledger: Ledger, holding: Sequence[Named], demand: dict[str, Vec]
    ) -> None:
        self.teams = teams
        self.ledger = ledger
        self.holding = holding
        self.demand = demand
        self._holders: dict[tuple[str, str | None, int | None], tuple[str, ...]] = {}
        self._reasons: dict[tuple[str, Blocker, Vec], str] = {}  # many waits read the same

    def wait(self, workload: Named, hold: Hold) -> Said:
        """Why ``workload`` waits, in words, and who holds what it needs."""
        if hold.behind is not None:
            ahead = hold.behind
            reason = (
                f"waits behind {ahead.id}, of higher priority ({ahead.priority}) in team "
                f"{workload.team}'s queue: a team's higher priorities go first"
            )
            return Said(reason, None, (), "behind")
        blocker = hold.blocker
        assert blocker is not None
        resource = None if blocker.resource is None else RESOURCE_NAMES[blocker.resource]
        if hold.draining:
            reason = self._draining(workload, blocker, hold.draining)
            return Said(reason, resource, hold.draining[:MAX_HOLDERS], "draining")
        holders = self._holders_of(workload.team, blocker)
        key = (workload.team, blocker, self.demand[workload.id])
        reason = self._reasons.get(key) or self._reasons.setdefault(
            key, self._reason(workload, blocker)
        )
        if holders:
            reason = f"{reason}; held by {names(holders)}"
        kind: WaitKind = "limit" if blocker.kind == "quota" else blocker.kind
        return Said(reason, resource, holders[:MAX_HOLDERS], kind)

    def _reason(self, workload: Named, blocker: Blocker) -> str:
        if blocker.kind == "unknown_team":
            return f"team '{workload.team}' is not in the teams file: an admin adds it there"
        if blocker.kind == "concurrency":
            limit = self.teams.team(workload.team).max_concurrent_experiments
            return (
                f"team {workload.team} already runs {limit} experiments, its "
                "max_concurrent_experiments: admitted when one of them ends"
            )
        index = blocker.resource
        assert index is not None
        demand = self.demand[workload.id][index]
        needed = _amount(index, blocker.needed)
        if blocker.kind == "bigger_than_cluster":
            return (
                f"it needs {_amount(index, demand)} but the whole cluster has "
                f"{_amount(index, self.ledger.capacity[index])}: lower its demand (trial "
                "concurrency or workers)"
            )
        if blocker.kind == "capacity":
            free = self.ledger.capacity[index] - self.ledger.used[index]
            return (
                f"the cluster has {_amount(index, max(0.0, free))} free and it needs "
                f"{_amount(index, demand)}: admitted when {needed} more frees up"
            )
        book = self.ledger.teams[workload.team]
        terms = (
            f"quota {_amount(index, book.quota[index])} + borrowing limit "
            f"{_amount(index, book.limit[index] - book.quota[index])}"
        )
        if blocker.kind == "too_big":
            return (
                f"it needs {_amount(index, demand)} but team {workload.team} may hold at most "
                f"{_amount(index, book.limit[index])} ({terms}): lower its demand (trial "
                "concurrency or workers) or ask an admin to raise the team's quota"
            )
        if blocker.kind in ("limit", "quota"):
            return (
                f"team {workload.team} holds or is promised {_amount(index, book.used[index])} of "
                f"at most "
                f"{_amount(index, book.limit[index])} ({terms}) and it needs "
                f"{_amount(index, demand)}: admitted when {needed} of the team's frees up"
            )
        cohort = book.spec.cohort
        if book.used[index] + demand <= book.quota[index] + EPSILON:
            return (
                f"team {workload.team}'s own {RESOURCE_NAMES[index]} quota is lent within cohort "
                f"{cohort} to work that cannot be preempted (served models, or work within its "
                f"team's quota): admitted when {needed} frees up in the cohort"
            )
        return (
            f"it needs {needed} more than team {workload.team}'s quota leaves, and cohort "
            f"{cohort} has no more idle to lend: admitted when that much frees up in the cohort"
        )

    def _draining(self, workload: Named, blocker: Blocker, victims: tuple[str, ...]) -> str:
        resource = "capacity" if blocker.resource is None else RESOURCE_NAMES[blocker.resource]
        verb, done = ("is", "it has") if len(victims) == 1 else ("are", "they have")
        return (
            f"{names(victims)} {verb} being preempted to give team {workload.team} its "
            f"{resource} quota back: admitted once {done} checkpointed and stopped"
        )

    def _holders_of(self, team: str, blocker: Blocker) -> tuple[str, ...]:
        """Who holds what ``blocker`` contends for: the largest holdings first."""
        if blocker.kind in ("unknown_team", "too_big", "bigger_than_cluster"):
            return ()
        book = self.ledger.teams[team]
        if blocker.kind == "concurrency":
            key: tuple[str, str | None, int | None] = ("team", team, None)
        elif blocker.kind == "cohort":
            key = ("cohort", book.spec.cohort, blocker.resource)
        elif blocker.kind == "capacity":
            key = ("cluster", None, blocker.resource)
        else:
            key = ("team", team, blocker.resource)
        if key not in self._holders:
            self._holders[key] = self._find_holders(*key)
        return self._holders[key]

    def _find_holders(self, scope: str, name: str | None, index: int | None) -> tuple[str, ...]:
        def inside(workload: Named) -> bool:
            if scope == "team":
                return workload.team == name
            if scope == "cohort":
                book = self.ledger.teams.get(workload.team)
                return book is not None and book.spec.cohort == name
            return True

        found = [w for w in self.holding if inside(w)]
        if index is None:
            return tuple(sorted(w.id for w in found))
        using = [w for w in found if self.demand[w.id][index] > EPSILON]
        using.sort(key=lambda w: (-self.demand[w.id][index], w.id))
        return tuple(w.id for w in using)


def preemption_reason(victim: Named, beneficiary: Named, blocker: Blocker) -> str:
    resource = "capacity" if blocker.resource is None else RESOURCE_NAMES[blocker.resource]
    return (
        f"team {beneficiary.team} needs its {resource} quota back for {beneficiary.id}; "
        f"{victim.id} of team {victim.team} runs on borrowed {resource} and, of such work, "
        "loses the least (the freshest checkpoint, then the lowest priority)"
    )


def names(ids: tuple[str, ...]) -> str:
    """The first three ids, and how many more there are."""
    shown = ", ".join(ids[:3])
    return f"{shown} and {len(ids) - 3} more" if len(ids) > 3 else shown


def _amount(index: int, value: float) -> str:
    value = round(value, 3) + 0.0  # no "-0"
    if index == 1:
        return f"{value:g} GPU" + ("" if value == 1 else "s")
    if index == 0:
        return f"{value:g} CPU" + ("" if value == 1 else "s")
    return f"{value:g} GiB of memory"
