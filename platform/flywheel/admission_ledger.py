"""The books admission keeps while it decides: what each team, cohort and the cluster holds.

Pure and internal to :mod:`flywheel.admission`. Amounts are plain ``(cpu, gpu, memory_gib)``
tuples here, not :class:`~flywheel.specs.teams.Resources`, because one decision over ten thousand
queued workloads checks them hundreds of thousands of times.

The accounting follows Kueue's: a team uses its nominal quota first; what it uses beyond the part
of its quota it does not lend (quota minus lending limit) comes out of its cohort's pool, which
holds every member's lendable quota. So a team borrows only what its cohort has idle, and a team
whose lendable quota is lent out gets it back only when the borrowers give it back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from flywheel.specs.teams import Resources, TeamSpec, TeamsSpec

#: The resources admission accounts for, in the order of a :data:`Vec`.
RESOURCE_NAMES: tuple[str, str, str] = ("cpu", "gpu", "memory_gib")

#: An amount of each resource: (cpu cores, GPUs, memory GiB).
Vec = tuple[float, float, float]

ZERO: Vec = (0.0, 0.0, 0.0)

#: Slack in comparisons, so that fractional CPUs summed in any order compare the same.
EPSILON = 1e-9

BlockerKind = Literal[
    "unknown_team",
    "too_big",
    "bigger_than_cluster",
    "concurrency",
    "quota",
    "limit",
    "cohort",
    "capacity",
]


@dataclass(frozen=True)
class Blocker:
    """The first rule a workload breaks: its kind, and the resource when it is an amount."""

    kind: BlockerKind
    resource: int | None = None  # index into RESOURCE_NAMES
    needed: float = 0.0  # how much more of that resource must free up


def vec(resources: Resources) -> Vec:
    """The amounts of ``resources`` as a :data:`Vec`."""
    return (resources.cpu, float(resources.gpu), resources.memory_gib)


def add(a: Vec, b: Vec) -> Vec:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def sub(a: Vec, b: Vec) -> Vec:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def total(amounts: Iterable[Vec]) -> Vec:
    """The sum of ``amounts``, added in the order given."""
    result = ZERO
    for amount in amounts:
        result = add(result, amount)
    return result


def first_over(amount: Vec, limit: Vec) -> int | None:
    """Index of the first resource where ``amount`` exceeds ``limit``; None when it fits."""
    if amount[0] > limit[0] + EPSILON:  # unrolled: this is admission's innermost check
        return 0
    if amount[1] > limit[1] + EPSILON:
        return 1
    if amount[2] > limit[2] + EPSILON:
        return 2
    return None


def _beyond(used: Vec, reserved: Vec) -> Vec:
    """What a team draws from its cohort's pool: its use beyond its non-lendable quota."""
    return (
        max(0.0, used[0] - reserved[0]),
        max(0.0, used[1] - reserved[1]),
        max(0.0, used[2] - reserved[2]),
    )


@dataclass
class TeamBook:
    """One team's terms and what it holds now."""

    spec: TeamSpec
    quota: Vec
    limit: Vec  # quota + borrowing limit
    reserved: Vec  # quota it never lends: quota - lending limit
    used: Vec = ZERO
    running: int = 0

    @classmethod
    def of(cls, spec: TeamSpec) -> TeamBook:
        quota = vec(spec.quota)
        lendable = quota if spec.lending_limit is None else vec(spec.lending_limit)
        return cls(spec, quota, add(quota, vec(spec.borrowing_limit)), sub(quota, lendable))

    @property
    def lendable(self) -> Vec:
        return sub(self.quota, self.reserved)

    def borrows(self, resource: int) -> bool:
        """Whether the team holds more of ``resource`` than its nominal quota."""
        return self.used[resource] > self.quota[resource] + EPSILON


@dataclass
class CohortBook:
    """A cohort's pool: every member's lendable quota, and what members draw from it."""

    capacity: Vec = ZERO
    drawn: Vec = ZERO
    members: list[str] = field(default_factory=list)


@dataclass
class Ledger:
    """What is held per team, per cohort and in the cluster; changed as a decision goes on."""

    capacity: Vec
    teams: dict[str, TeamBook]
    cohorts: dict[str, CohortBook]
    used: Vec = ZERO

    @classmethod
    def of(cls, spec: TeamsSpec, capacity: Resources) -> Ledger:
        teams = {team.name: TeamBook.of(team) for team in spec.teams}
        cohorts: dict[str, CohortBook] = {}
        for book in teams.values():
            cohort = cohorts.setdefault(book.spec.cohort, CohortBook())
            cohort.capacity = add(cohort.capacity, book.lendable)
            cohort.members.append(book.spec.name)
        return cls(vec(capacity), teams, cohorts)

    def copy(self) -> Ledger:
        teams = {name: TeamBook(**vars(book)) for name, book in self.teams.items()}
        cohorts = {
            name: CohortBook(c.capacity, c.drawn, list(c.members))
            for name, c in self.cohorts.items()
        }
        return Ledger(self.capacity, teams, cohorts, self.used)

    def load(
        self, holdings: Iterable[tuple[str, Vec]], uncounted: Iterable[tuple[str, Vec]] = ()
    ) -> None:
        """Count every ``(team, demand)`` as held: :meth:`hold` for many, summed once per team.

        ``uncounted`` holdings (served models) hold resources but are not experiments: they do
        not count against ``max_concurrent_experiments``."""
        used: dict[str, list[float]] = {}
        running: dict[str, int] = {}
        both = [*((t, d, 1) for t, d in holdings), *((t, d, 0) for t, d in uncounted)]
        for team, demand, count in both:
            sums = used.setdefault(team, [0.0, 0.0, 0.0])
            sums[0] += demand[0]
            sums[1] += demand[1]
            sums[2] += demand[2]
            running[team] = running.get(team, 0) + count
        for team, sums in used.items():
            amount = (sums[0], sums[1], sums[2])
            book = self.teams.get(team)
            self.used = add(self.used, amount)
            if book is not None:
                book.used, book.running = add(book.used, amount), book.running + running[team]
        for cohort in self.cohorts.values():
            cohort.drawn = total(
                _beyond(self.teams[name].used, self.teams[name].reserved) for name in cohort.members
            )

    def hold(self, team: str, demand: Vec, sign: int = 1, count: bool = True) -> None:
        """Count ``demand`` as held by ``team`` (``sign`` -1: as given back); ``count``: as one
        of its experiments too (a served model is not)."""
        amount = demand if sign > 0 else sub(ZERO, demand)
        self.used = add(self.used, amount)
        book = self.teams.get(team)
        if book is None:  # a team no longer in the teams file still holds cluster capacity
            return
        cohort = self.cohorts[book.spec.cohort]
        before = _beyond(book.used, book.reserved)
        book.used = add(book.used, amount)
        book.running += sign if count else 0
        cohort.drawn = add(cohort.drawn, sub(_beyond(book.used, book.reserved), before))

    def borrowed_share(self, team: str) -> float:
        """How much ``team`` borrows, for its weight: its largest share of its cohort's pool."""
        book = self.teams.get(team)
        if book is None:
            return 0.0
        pool = self.cohorts[book.spec.cohort].capacity
        share = 0.0
        for index in range(3):
            borrowed = book.used[index] - book.quota[index]
            if borrowed > EPSILON and pool[index] > EPSILON:
                share = max(share, borrowed / pool[index])
        return share / book.spec.fair_share_weight

    def never_fits(self, team: str, demand: Vec) -> Blocker | None:
        """Why ``demand`` could never be admitted for ``team``, even on an idle cluster."""
        book = self.teams.get(team)
        if book is None:
            return Blocker("unknown_team")
        over = first_over(demand, book.limit)
        if over is not None:
            return Blocker("too_big", over, demand[over] - book.limit[over])
        over = first_over(demand, self.capacity)
        if over is not None:
            return Blocker("bigger_than_cluster", over, demand[over] - self.capacity[over])
        return None

    def blocker(self, team: str, demand: Vec, borrow: bool, capped: bool = True) -> Blocker | None:
        """The first rule admitting ``demand`` for ``team`` now would break; None: it fits.

        Without ``borrow`` the team must stay within its nominal quota; without ``capped`` (a
        served model) ``max_concurrent_experiments`` does not apply.
        """
        book = self.teams.get(team)
        if book is None:
            return Blocker("unknown_team")
        if capped and book.running >= book.spec.max_concurrent_experiments:
            return Blocker("concurrency")
        after = add(book.used, demand)
        limit = book.limit if borrow else book.quota
        over = first_over(after, limit)
        if over is not None:
            return Blocker("limit" if borrow else "quota", over, after[over] - limit[over])
        cohort = self.cohorts[book.spec.cohort]
        drawn = add(
            sub(cohort.drawn, _beyond(book.used, book.reserved)), _beyond(after, book.reserved)
        )
        over = first_over(drawn, cohort.capacity)
        if over is not None:
            return Blocker("cohort", over, drawn[over] - cohort.capacity[over])
        used = add(self.used, demand)
        over = first_over(used, self.capacity)
        if over is not None:
            return Blocker("capacity", over, used[over] - self.capacity[over])
        return None
