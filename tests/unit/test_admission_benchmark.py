"""The scheduling benchmark's own parts: the workload, the simulation's accounting, the metrics."""

from __future__ import annotations

import pytest
from benchmarks.scheduling.metrics import jain, outcome, percentile
from benchmarks.scheduling.simulate import Trace, fifo, flywheel, kueue_like, kueue_view, simulate
from benchmarks.scheduling.workload import SMALL, Job, capacity, generate, teams_file

from flywheel.admission import Workload, loss_order
from flywheel.specs.teams import Resources, TeamsSpec

HOUR_S = 3600.0


def test_jain_is_one_when_equal_and_one_over_n_when_one_has_all() -> None:
    assert jain([2.0, 2.0, 2.0]) == pytest.approx(1.0)
    assert jain([5.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (10, 19, 20)


def test_the_workload_is_seeded_and_offers_about_its_load() -> None:
    jobs = generate(SMALL, hours=240.0, seed=3)
    assert jobs == generate(SMALL, hours=240.0, seed=3)
    assert jobs != generate(SMALL, hours=240.0, seed=4)
    offered = sum(j.gpus * j.duration_s for j in jobs) / (SMALL.gpus * 240 * HOUR_S)
    expected = sum(s * load for s, load in zip(SMALL.shares, SMALL.loads, strict=True))
    assert offered == pytest.approx(expected, rel=0.25)


TWO = TeamsSpec.model_validate(
    {"teams": [
        {"name": "team-0", "quota": {"gpu": 2}, "borrowing_limit": {"gpu": 2}},
        {"name": "team-1", "quota": {"gpu": 2}, "borrowing_limit": {"gpu": 2}},
    ]}
)  # fmt: skip
BORROWER = Job("a", "team-0", 0.0, 10 * HOUR_S, 4, 500, checkpoint_interval_s=HOUR_S)
OWNER = Job("b", "team-1", 2.5 * HOUR_S, 1 * HOUR_S, 2, 500, checkpoint_interval_s=HOUR_S)


def test_a_reclaimed_borrower_loses_the_work_since_its_checkpoint_and_its_drain() -> None:
    trace = simulate([BORROWER, OWNER], flywheel(TWO, Resources(gpu=4)), horizon_s=24 * HOUR_S)
    borrower, owner = trace.runs
    assert trace.preemptions == 1
    assert borrower.losses == [(2.5 * HOUR_S, (0.5 * HOUR_S + 60.0) * 4)]  # checkpoint at 2 h
    assert owner.first_admitted_s == 2.5 * HOUR_S + 60.0  # once the borrower has drained
    assert borrower.held[1][0] == owner.held[0][1]  # back in the cycle the owner ends in
    assert borrower.state == "done"
    ran_s = sum(end - start for start, end in borrower.held)
    assert ran_s == 10 * HOUR_S + 0.5 * HOUR_S + 60.0  # the lost work is done again


def test_fifo_waits_at_the_head_and_never_preempts() -> None:
    trace = simulate([BORROWER, OWNER], fifo(Resources(gpu=4)), horizon_s=24 * HOUR_S)
    assert trace.preemptions == 0
    assert trace.runs[1].first_admitted_s == 10 * HOUR_S  # when the head ends


def test_kueue_like_preempts_the_lowest_priority_then_the_latest_admitted() -> None:
    def held(id: str, priority: int, admitted_at_s: float, checkpoint_s: float) -> Workload:
        return Workload(id, "team-0", priority, 0.0, Resources(gpu=1), "admitted",
                        last_checkpoint_at_s=checkpoint_s, admitted_at_s=admitted_at_s)  # fmt: skip

    workloads = [
        held("fresh-checkpoint", 500, 10.0, 99.0),
        held("late", 500, 50.0, 50.0),
        held("low", 100, 0.0, 0.0),
    ]
    assert [w.id for w in sorted(workloads, key=loss_order)] == ["fresh-checkpoint", "late", "low"]
    blind = sorted((kueue_view(w) for w in workloads), key=loss_order)
    assert [w.id for w in blind] == ["low", "late", "fresh-checkpoint"]


@pytest.mark.parametrize("policy", ["flywheel", "kueue-like", "strict", "fifo"])
def test_no_policy_holds_more_gpus_than_the_cluster_has(policy: str) -> None:
    cluster = capacity(SMALL)
    policies = {
        "flywheel": flywheel(teams_file(SMALL, borrowing=True), cluster),
        "kueue-like": kueue_like(teams_file(SMALL, borrowing=True), cluster),
        "strict": flywheel(teams_file(SMALL, borrowing=False), cluster),
        "fifo": fifo(cluster),
    }
    horizon_s = 12 * HOUR_S
    trace = simulate(generate(SMALL, hours=12.0, seed=1), policies[policy], horizon_s)
    assert max_held(trace) <= SMALL.gpus
    shares = {f"team-{i}": s for i, s in enumerate(SMALL.shares)}
    result = outcome(policy, trace, shares, SMALL.gpus, (horizon_s / 4, horizon_s))
    assert 0.0 < result.utilization <= 1.0 and 0.0 < result.fairness <= 1.0
    assert result.median_wait_h <= result.p95_wait_h


def max_held(trace: Trace) -> int:
    changes: list[tuple[float, int]] = []
    for run in trace.runs:
        for start_s, end_s in run.held:
            changes += [(start_s, run.job.gpus), (end_s, -run.job.gpus)]
    held = peak = 0
    for _, delta in sorted(changes, key=lambda c: (c[0], c[1])):  # ends before starts at a tie
        held += delta
        peak = max(peak, held)
    return peak
