"""Admission's invariants, property-tested over random teams files and random histories.

Each example draws a teams file and a cluster, then plays a few rounds: workloads arrive,
:func:`decide` runs, its decision is applied (admitted work starts, victims drain), and some work
ends or, drained, is requeued. After every decision the checks below hold. The accounting here is
written independently of the implementation: what a cohort's borrowers take is at most what its
members lend from their idle quota.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel.admission import NEVER_FITS, Decision, Workload, decide
from flywheel.specs.teams import Resources, TeamSpec, TeamsSpec

EPSILON = 1e-6
NAMES = ("cpu", "gpu", "memory_gib")
PRIORITIES = (100, 500, 1000)

cpus = st.sampled_from([0.0, 0.1, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
amounts = st.builds(
    Resources, cpu=cpus, gpu=st.integers(0, 4), memory_gib=st.sampled_from([0.0, 1.0, 2.5, 4.0])
)


@st.composite
def team_specs(draw: st.DrawFn, name: str) -> TeamSpec:
    quota = draw(
        st.builds(
            Resources, cpu=cpus, gpu=st.integers(0, 6), memory_gib=st.sampled_from([0.0, 4.0, 8.0])
        )
    )
    lends = draw(st.none() | st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)))
    lending = None
    if lends is not None:
        lending = Resources(
            cpu=quota.cpu * lends[0],
            gpu=int(quota.gpu * lends[1]),
            memory_gib=quota.memory_gib * lends[2],
        )
    return TeamSpec(
        name=name,
        cohort=draw(st.sampled_from(["a", "b"])),
        quota=quota,
        borrowing_limit=draw(amounts),
        lending_limit=lending,
        max_concurrent_experiments=draw(st.integers(1, 5)),
    )  # fmt: skip


@st.composite
def teams_files(draw: st.DrawFn) -> TeamsSpec:
    count = draw(st.integers(1, 4))
    return TeamsSpec(teams=[draw(team_specs(f"t{i}")) for i in range(count)])


def add(a: Resources, b: Resources, sign: int = 1) -> tuple[float, float, float]:
    return tuple(getattr(a, n) + sign * getattr(b, n) for n in NAMES)  # type: ignore[return-value]


def vec(r: Resources) -> tuple[float, float, float]:
    return (r.cpu, float(r.gpu), r.memory_gib)


def total(workloads: Iterable[Workload]) -> tuple[float, float, float]:
    sums = [0.0, 0.0, 0.0]
    for workload in workloads:
        for i, value in enumerate(vec(workload.demand)):
            sums[i] += value
    return (sums[0], sums[1], sums[2])


def within(amount: Iterable[float], limit: Iterable[float]) -> bool:
    return all(a <= b + EPSILON for a, b in zip(amount, limit, strict=True))


def fits(spec: TeamsSpec, capacity: Resources, holding: list[Workload]) -> bool:
    """Whether ``holding`` respects every quota, borrowing and lending limit, cap and capacity."""
    if not within(total(holding), vec(capacity)):
        return False
    used = {t.name: total(w for w in holding if w.team == t.name) for t in spec.teams}
    for team in spec.teams:
        limit = add(team.quota, team.borrowing_limit)
        if not within(used[team.name], limit):
            return False
        # Served models (not preemptible) are not experiments: they hold quota, not the cap.
        experiments = sum(w.team == team.name and w.preemptible for w in holding)
        if experiments > team.max_concurrent_experiments:
            return False
    for cohort in {t.cohort for t in spec.teams}:
        members = spec.cohort_members(cohort)
        for i, name in enumerate(NAMES):
            borrowed = sum(max(0.0, used[t.name][i] - getattr(t.quota, name)) for t in members)
            lent = sum(
                min(
                    getattr(t.lending_limit or t.quota, name),
                    max(0.0, getattr(t.quota, name) - used[t.name][i]),
                )
                for t in members
            )
            if borrowed > lent + EPSILON:
                return False
    return True


def never_fits(spec: TeamsSpec, capacity: Resources, workload: Workload) -> bool:
    try:
        team = spec.team(workload.team)
    except KeyError:
        return True
    limit = add(team.quota, team.borrowing_limit)
    return not (within(vec(workload.demand), limit) and within(vec(workload.demand), vec(capacity)))


def check(
    spec: TeamsSpec, capacity: Resources, world: dict[str, Workload], decision: Decision
) -> None:
    queued = {i for i, w in world.items() if w.state == "queued"}
    waiting = [w.workload for w in decision.waiting]
    assert len(set(decision.admit)) == len(decision.admit)
    assert sorted([*decision.admit, *waiting]) == sorted(queued)

    holding = [w for w in world.values() if w.state == "admitted"]
    after = holding + [world[i] for i in decision.admit]
    assert fits(spec, capacity, after), "a quota, limit, cap or the capacity is exceeded"

    for wait in decision.waiting:  # positions count 1, 2, ... within each team, in queue order
        earlier = [
            w
            for w in decision.waiting[: decision.waiting.index(wait)]
            if world[w.workload].team == world[wait.workload].team
        ]
        assert wait.position == len(earlier) + 1
        assert wait.reason and set(wait.holders) <= set(world)
        assert (wait.kind in NEVER_FITS) == never_fits(spec, capacity, world[wait.workload])

    admitted = [world[i] for i in decision.admit]
    for wait in decision.waiting:
        late = world[wait.workload]
        if never_fits(spec, capacity, late):
            continue
        for early in admitted:  # no admission while a higher priority of its team waits
            assert not (early.team == late.team and early.priority < late.priority), (early, late)

    check_preemptions(spec, world, decision, set(waiting))
    beneficiaries = {p.beneficiary for p in decision.preempt}
    if len(beneficiaries) == 1 and not any(w.draining for w in holding):
        check_as_few_victims_as_suffice(spec, capacity, world, decision, after)
    if not decision.preempt and not any(w.draining for w in holding):
        check_nothing_that_fits_is_left_waiting(spec, capacity, world, decision, after)


def check_preemptions(
    spec: TeamsSpec, world: dict[str, Workload], decision: Decision, waiting: set[str]
) -> None:
    victims = [p.victim for p in decision.preempt]
    assert len(set(victims)) == len(victims)
    for preemption in decision.preempt:
        victim, beneficiary = world[preemption.victim], world[preemption.beneficiary]
        assert victim.state == "admitted" and victim.preemptible and not victim.draining
        assert beneficiary.id in waiting and victim.team != beneficiary.team
        team = spec.team(victim.team)
        used = total(w for w in world.values() if w.team == victim.team and w.state == "admitted")
        borrows = [
            u > q + EPSILON and d > 0
            for u, q, d in zip(used, vec(team.quota), vec(victim.demand), strict=True)
        ]
        assert any(borrows), "only work of a team beyond its quota is preempted"
        owner = spec.team(beneficiary.team)
        held = total(w for w in world.values() if w.team == owner.name and w.state == "admitted")
        assert within(
            add(Resources(cpu=held[0], gpu=int(held[1]), memory_gib=held[2]), beneficiary.demand),
            vec(owner.quota),
        )


def check_as_few_victims_as_suffice(
    spec: TeamsSpec,
    capacity: Resources,
    world: dict[str, Workload],
    decision: Decision,
    after: list[Workload],
) -> None:
    """Once its victims have gone, the beneficiary fits; without any one of them, it would not."""
    beneficiary = world[decision.preempt[0].beneficiary]
    victims = {p.victim for p in decision.preempt}
    remaining = [w for w in after if w.id not in victims]
    assert fits(spec, capacity, [*remaining, beneficiary]), "the victims do not make room"
    for spared in victims:
        kept = [*remaining, world[spared], beneficiary]
        assert not fits(spec, capacity, kept), f"{spared} was preempted for nothing"


def check_nothing_that_fits_is_left_waiting(
    spec: TeamsSpec,
    capacity: Resources,
    world: dict[str, Workload],
    decision: Decision,
    after: list[Workload],
) -> None:
    waiting = [world[w.workload] for w in decision.waiting]
    for workload in waiting:
        if never_fits(spec, capacity, workload):
            continue
        ahead = [w for w in waiting if w.team == workload.team and w.priority > workload.priority]
        if any(not never_fits(spec, capacity, w) for w in ahead):
            continue
        assert not fits(spec, capacity, [*after, workload]), f"{workload.id} fits but waits"


@st.composite
def arrivals(
    draw: st.DrawFn,
    teams: list[str],
    step: int,
    first_id: int,
    demands: st.SearchStrategy[Resources],
) -> list[Workload]:
    count = draw(st.integers(0, 5))
    return [
        Workload(
            id=f"w{first_id + i}",
            team=draw(st.sampled_from(teams)),
            priority=draw(st.sampled_from(PRIORITIES)),
            submitted_at_s=float(step * 10 + draw(st.integers(0, 3))),
            demand=draw(demands),
            state="queued",
            preemptible=draw(st.booleans() | st.just(True)),
        )
        for i in range(count)
    ]


@given(st.data())
@settings(max_examples=100, deadline=None)
def test_every_decision_of_a_random_history_keeps_the_invariants(data: st.DataObject) -> None:
    spec = data.draw(teams_files())
    capacity = data.draw(
        st.builds(
            Resources,
            cpu=st.sampled_from([2.0, 6.5, 20.0]),
            gpu=st.integers(0, 16),
            memory_gib=st.sampled_from([8.0, 32.0]),
        )
    )
    teams = [t.name for t in spec.teams] + ["gone"]
    replay(data, spec, capacity, lambda step: teams, amounts)


@st.composite
def lending_cohorts(draw: st.DrawFn) -> TeamsSpec:
    """Two or three teams of one cohort with GPU quotas, lending to each other."""
    teams = []
    for i in range(draw(st.integers(2, 3))):
        quota = draw(st.integers(1, 6))
        lending = draw(st.none() | st.integers(0, quota).map(lambda gpu: {"gpu": gpu}))
        teams.append(
            {"name": f"t{i}", "quota": {"gpu": quota}, "lending_limit": lending,
             "borrowing_limit": {"gpu": draw(st.integers(1, 8))},
             "max_concurrent_experiments": draw(st.integers(2, 6))}
        )  # fmt: skip
    return TeamsSpec.model_validate({"teams": teams})


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_histories_of_borrowing_and_reclaiming_keep_the_invariants(data: st.DataObject) -> None:
    """The first team fills the idle cohort, then the others come back for their quotas."""
    spec = data.draw(lending_cohorts())
    quotas = sum(t.quota.gpu for t in spec.teams)
    capacity = Resources(gpu=data.draw(st.integers(max(1, quotas - 2), quotas + 2)))
    names = [t.name for t in spec.teams]
    gpus = st.builds(Resources, gpu=st.integers(1, 4))
    replay(data, spec, capacity, lambda step: names[:1] if step < 2 else names[1:], gpus)


def check_no_loan_is_reclaimed_at_once(
    spec: TeamsSpec, capacity: Resources, world: dict[str, Workload], decision: Decision
) -> None:
    """Applied, and decided again at the same moment with nothing else changed, a decision
    preempts none of the work it just admitted: no loan is given and taken back at once."""
    settled = dict(world)
    for workload_id in decision.admit:
        settled[workload_id] = replace(settled[workload_id], state="admitted", admitted_at_s=1.0)
    for preemption in decision.preempt:
        settled[preemption.victim] = replace(settled[preemption.victim], draining=True)
    again = decide(spec, capacity, list(settled.values()))
    reclaimed = {p.victim for p in again.preempt} & set(decision.admit)
    assert not reclaimed, f"{sorted(reclaimed)} admitted and preempted at the same moment"


def replay(
    data: st.DataObject,
    spec: TeamsSpec,
    capacity: Resources,
    teams_at: Callable[[int], list[str]],
    demands: st.SearchStrategy[Resources],
) -> None:
    """Rounds of arrivals, a decision checked and applied, and work ending or requeued."""
    world: dict[str, Workload] = {}
    for step in range(data.draw(st.integers(1, 6))):
        for workload in data.draw(arrivals(teams_at(step), step, 1000 * step, demands)):
            world[workload.id] = workload
        decision = decide(spec, capacity, list(world.values()))
        check(spec, capacity, world, decision)
        shuffled = data.draw(st.permutations(list(world.values())))
        assert decide(spec, capacity, shuffled) == decision, "the input's order changed it"
        check_no_loan_is_reclaimed_at_once(spec, capacity, world, decision)
        world = play(data, world, decision, now_s=float(step * 10 + 5))


def play(
    data: st.DataObject, world: dict[str, Workload], decision: Decision, now_s: float
) -> dict[str, Workload]:
    """Apply ``decision``, then let some work end and some drained victims requeue."""
    world = dict(world)
    for workload_id in decision.admit:
        world[workload_id] = replace(world[workload_id], state="admitted", admitted_at_s=now_s)
    for preemption in decision.preempt:
        world[preemption.victim] = replace(world[preemption.victim], draining=True)
    for workload in list(world.values()):
        if workload.state != "admitted":
            continue
        if workload.draining and data.draw(st.booleans()):
            world[workload.id] = replace(
                workload, state="queued", draining=False, last_checkpoint_at_s=now_s
            )
        elif not workload.draining and data.draw(st.integers(0, 3)) == 0:
            del world[workload.id]
        elif not workload.draining and data.draw(st.booleans()):
            world[workload.id] = replace(workload, last_checkpoint_at_s=now_s)
    return world
