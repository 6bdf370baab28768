"""Estimates of when waiting work is admitted, from the expected durations of the work ahead."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel.admission import Workload, decide
from flywheel.admission_estimate import estimate_admissions
from flywheel.specs.teams import Resources, TeamsSpec

NOW_S = 1_000.0
CLUSTER = Resources(gpu=8)


def teams(borrow: int = 0) -> TeamsSpec:
    return TeamsSpec.model_validate(
        {"teams": [
            {"name": "vision", "quota": {"gpu": 4}, "borrowing_limit": {"gpu": borrow}},
            {"name": "language", "quota": {"gpu": 4}, "borrowing_limit": {"gpu": borrow}},
        ]}
    )  # fmt: skip


def running(
    id: str, team: str, gpu: int, started_s: float, duration_s: float | None, **extra: Any
) -> Workload:
    return Workload(
        id, team, 500, 0.0, Resources(gpu=gpu), "admitted",
        admitted_at_s=started_s, expected_duration_s=duration_s, **extra,
    )  # fmt: skip


def queued(
    id: str, team: str, gpu: int, at: float, duration_s: float | None = 100.0, **extra: Any
) -> Workload:
    return Workload(
        id, team, 500, at, Resources(gpu=gpu), "queued", expected_duration_s=duration_s, **extra
    )


def test_work_that_fits_now_is_admitted_now() -> None:
    [estimate] = estimate_admissions(
        teams(), CLUSTER, [queued("a", "vision", 2, 1)], NOW_S
    ).values()
    assert estimate.admitted_at_s == NOW_S


def test_a_queue_waits_for_the_work_ahead_to_end_in_turn() -> None:
    workloads = [
        running("r", "vision", 4, started_s=900.0, duration_s=300.0),  # ends at 1200
        queued("a", "vision", 4, at=1, duration_s=500.0),  # 1200 -> 1700
        queued("b", "vision", 2, at=2),  # 1700
        queued("c", "vision", 2, at=3),  # 1700 too, beside b
    ]
    estimates = estimate_admissions(teams(), CLUSTER, workloads, NOW_S)
    assert {k: e.admitted_at_s for k, e in estimates.items()} == {
        "a": 1200.0,
        "b": 1700.0,
        "c": 1700.0,
    }
    assert "expected duration" in estimates["a"].reason


def test_work_past_its_expected_duration_is_taken_to_end_now() -> None:
    workloads = [
        running("late", "vision", 4, started_s=0.0, duration_s=10.0),
        queued("a", "vision", 4, 1),
    ]
    assert estimate_admissions(teams(), CLUSTER, workloads, NOW_S)["a"].admitted_at_s == NOW_S


def test_without_the_holders_durations_it_cannot_tell_and_says_who() -> None:
    workloads = [
        running("r", "vision", 4, started_s=900.0, duration_s=None),
        queued("a", "vision", 1, 1),
    ]
    estimate = estimate_admissions(teams(), CLUSTER, workloads, NOW_S)["a"]
    assert estimate.admitted_at_s is None
    assert estimate.reason == "cannot tell: r holds what it needs with no expected duration"


def test_work_that_can_never_fit_is_never_admitted() -> None:
    estimate = estimate_admissions(teams(), CLUSTER, [queued("a", "vision", 5, 1)], NOW_S)["a"]
    assert estimate.admitted_at_s is None and estimate.reason.startswith(
        "never, as it is: it needs 5 GPUs"
    )


def test_reclaiming_a_quota_is_counted_as_immediate() -> None:
    borrowed = [
        running("own", "language", 4, started_s=900.0, duration_s=1000.0),  # ends at 1900
        running(
            "extra", "language", 4, started_s=900.0, duration_s=1000.0, last_checkpoint_at_s=990.0
        ),
    ]
    estimates = estimate_admissions(
        teams(borrow=4), CLUSTER, [*borrowed, queued("mine", "vision", 4, 5)], NOW_S
    )
    assert estimates["mine"].admitted_at_s == NOW_S
    assert list(estimates) == ["mine"]


def test_only_so_many_ends_are_looked_at() -> None:
    workloads = [queued(f"q{i}", "vision", 4, at=i, duration_s=10.0) for i in range(5)]
    estimates = estimate_admissions(teams(), CLUSTER, workloads, NOW_S, max_events=2)
    assert [e.admitted_at_s for e in estimates.values()] == [
        NOW_S,
        NOW_S + 10,
        NOW_S + 20,
        None,
        None,
    ]
    assert estimates["q3"].reason == "cannot tell: not within the next 2 ends of running work"


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_estimates_are_never_before_now_and_now_for_what_is_admitted_now(
    data: st.DataObject,
) -> None:
    durations = st.none() | st.floats(10.0, 500.0)
    workloads = []
    for i in range(data.draw(st.integers(1, 12))):
        team = data.draw(st.sampled_from(["vision", "language"]))
        gpu = data.draw(st.integers(1, 5))
        if data.draw(st.booleans()):
            started_s = data.draw(st.floats(0.0, NOW_S))
            workloads.append(running(f"r{i}", team, gpu, started_s, data.draw(durations)))
        else:
            workloads.append(queued(f"q{i}", team, gpu, float(i), data.draw(durations)))
    spec = teams(borrow=data.draw(st.integers(0, 4)))
    estimates = estimate_admissions(spec, CLUSTER, workloads, NOW_S)
    admitted_now = set(decide(spec, CLUSTER, workloads).admit)
    assert set(estimates) == {w.id for w in workloads if w.state == "queued"}
    for estimate in estimates.values():
        assert estimate.reason
        if estimate.workload in admitted_now:
            assert estimate.admitted_at_s == NOW_S
        elif estimate.admitted_at_s is not None:
            assert estimate.admitted_at_s >= NOW_S


def test_a_workload_admitted_now_is_estimated_now_even_if_a_later_round_reclaims_it() -> None:
    """Found by the property test: q5 borrows now, and when q3 ends (10 s later) the lender
    reclaims the loan for its queued q6; q5's estimate is its first admission, now."""
    workloads = [
        queued("q0", "vision", 1, 0.0, None), queued("q1", "vision", 1, 1.0, None),
        queued("q2", "vision", 1, 2.0, None), queued("q3", "language", 1, 3.0, 10.0),
        queued("q4", "language", 1, 4.0, 11.0), queued("q5", "vision", 2, 5.0, None),
        queued("q6", "language", 3, 6.0, None),
    ]  # fmt: skip
    spec = teams(borrow=1)
    assert "q5" in decide(spec, CLUSTER, workloads).admit
    assert estimate_admissions(spec, CLUSTER, workloads, NOW_S)["q5"].admitted_at_s == NOW_S
