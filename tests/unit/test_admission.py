"""Admission by example: order, quotas, borrowing, lending, capacity, reclaiming and the reasons."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from flywheel.admission import (
    Decision,
    Workload,
    decide,
    demand_of,
    loss_order,
    queue_order,
    usage_by_team,
)
from flywheel.plans import JobPlan, spec_to_job_plan
from flywheel.settings import Settings
from flywheel.specs import ExperimentSpec, load_spec
from flywheel.specs.teams import Resources, TeamsSpec, load_teams

REPO = Path(__file__).resolve().parents[2]
BIG = Resources(cpu=1000, gpu=1000, memory_gib=1000)


def teams(*specs: dict[str, Any]) -> TeamsSpec:
    return TeamsSpec.model_validate({"teams": list(specs)})


def team(name: str, gpu: int, borrow: int = 0, **extra: Any) -> dict[str, Any]:
    caps = {"max_concurrent_experiments": 100}
    return {
        "name": name,
        "quota": {"gpu": gpu},
        "borrowing_limit": {"gpu": borrow},
        **caps,
        **extra,
    }


def job(
    id: str, team: str, gpu: int, state: str = "queued", at: float = 0.0, priority: int = 500,
    **extra: Any,
) -> Workload:  # fmt: skip
    return Workload(id, team, priority, at, Resources(gpu=gpu), state, **extra)  # type: ignore[arg-type]


def waits(decision: Decision) -> dict[str, str]:
    return {w.workload: w.reason for w in decision.waiting}


TWO = teams(team("vision", 4, borrow=4), team("language", 4, borrow=4))


def test_admits_by_priority_then_submission_within_the_quota() -> None:
    queue = [
        job("a", "vision", 2, at=1),
        job("b", "vision", 2, at=2),
        job("c", "vision", 2, at=3, priority=900),
    ]
    decision = decide(teams(team("vision", 4)), BIG, queue)
    assert decision.admit == ("c", "a")
    [wait] = decision.waiting
    assert (wait.workload, wait.position, wait.blocking_resource, wait.kind) == (
        "b",
        1,
        "gpu",
        "limit",
    )
    assert set(wait.holders) == {"a", "c"}
    assert "team vision holds or is promised 4 GPUs of at most 4 GPUs" in wait.reason


def test_the_concurrency_cap_holds_and_names_who_runs() -> None:
    spec = teams({**team("vision", 8), "max_concurrent_experiments": 2})
    running = [job("a", "vision", 1, "admitted"), job("b", "vision", 1, "admitted")]
    decision = decide(spec, BIG, [*running, job("c", "vision", 1)])
    assert decision.admit == ()
    [wait] = decision.waiting
    assert wait.blocking_resource is None and wait.holders == ("a", "b")
    assert wait.kind == "concurrency"
    assert "max_concurrent_experiments" in wait.reason


def test_a_team_borrows_its_idle_neighbours_quota_up_to_its_borrowing_limit() -> None:
    queue = [job(f"v{i}", "vision", 2, at=i) for i in range(5)]
    decision = decide(TWO, BIG, queue)
    assert decision.admit == ("v0", "v1", "v2", "v3")  # 4 own + 4 borrowed
    assert "borrowing limit 4 GPUs" in waits(decision)["v4"]


def test_a_team_lends_no_more_than_its_lending_limit() -> None:
    spec = teams(team("vision", 4, borrow=4), team("language", 4, lending_limit={"gpu": 1}))
    decision = decide(spec, BIG, [job(f"v{i}", "vision", 1, at=i) for i in range(8)])
    assert len(decision.admit) == 5
    assert "cohort shared has no more idle to lend" in waits(decision)["v5"]


def test_teams_in_different_cohorts_lend_nothing_to_each_other() -> None:
    spec = teams(team("vision", 4, borrow=4), team("language", 4, cohort="other"))
    assert len(decide(spec, BIG, [job(f"v{i}", "vision", 1, at=i) for i in range(8)]).admit) == 4


def test_never_beyond_the_cluster_capacity() -> None:
    decision = decide(TWO, Resources(gpu=6), [job(f"v{i}", "vision", 2, at=i) for i in range(4)])
    assert decision.admit == ("v0", "v1", "v2")
    assert "the cluster has 0 GPUs free" in waits(decision)["v3"]


def test_admitted_work_of_a_team_no_longer_in_the_file_still_fills_the_cluster() -> None:
    gone = job("old", "retired", 6, "admitted")
    decision = decide(TWO, Resources(gpu=8), [gone, job("v", "vision", 4), job("r", "retired", 1)])
    assert decision.admit == ()
    assert "not in the teams file" in waits(decision)["r"]
    assert waits(decision)["v"].startswith("the cluster has 2 GPUs free")


def test_what_can_never_fit_says_so_and_blocks_no_one() -> None:
    spec = teams(team("vision", 4, borrow=4), team("language", 4, borrow=8))
    queue = [
        job("huge", "vision", 9, priority=900),
        job("small", "vision", 1),
        job("giant", "language", 9),
    ]
    decision = decide(spec, Resources(gpu=8), queue)
    assert decision.admit == ("small",)
    assert (
        "team vision may hold at most 8 GPUs (quota 4 GPUs + borrowing limit 4 GPUs)"
        in (waits(decision)["huge"])
    )
    assert "the whole cluster has 8 GPUs" in waits(decision)["giant"]


def test_a_higher_priority_that_waits_holds_back_lower_ones_of_its_team() -> None:
    held = job("v", "vision", 6, "admitted")
    queue = [job("urgent", "vision", 4, priority=900), job("later", "vision", 1)]
    decision = decide(TWO, BIG, [held, *queue])
    assert decision.admit == ()
    assert waits(decision)["later"].startswith("waits behind urgent, of higher priority (900)")


def test_one_of_the_same_priority_may_go_ahead_when_it_fits() -> None:
    held = job("v", "vision", 6, "admitted")
    queue = [job("big", "vision", 4, at=1), job("small", "vision", 1, at=2)]
    assert decide(TWO, BIG, [held, *queue]).admit == ("small",)


def test_work_within_its_own_quota_goes_before_borrowing_work() -> None:
    queue = [job("borrower", "language", 6, at=1), job("owner", "vision", 4, at=2)]
    decision = decide(TWO, Resources(gpu=8), queue)
    assert decision.admit == ("owner",)  # language's 6 needs 2 of vision's lendable quota


def test_idle_quota_goes_first_to_the_team_that_borrows_least() -> None:
    spec = teams(team("a", 2, borrow=8), team("b", 2, borrow=8), team("c", 6))
    held = [job("a-big", "a", 6, "admitted"), job("b-own", "b", 2, "admitted")]
    queue = [job("a-more", "a", 2, at=1), job("b-more", "b", 2, at=2)]
    decision = decide(spec, BIG, [*held, *queue])
    assert decision.admit == ("b-more",)  # a borrows 4 of the cohort's 10 already, b nothing
    assert "cohort shared has no more idle to lend" in waits(decision)["a-more"]


def test_a_higher_fair_share_weight_borrows_first() -> None:
    spec = teams(
        team("a", 2, borrow=8, fair_share_weight=4.0), team("b", 2, borrow=8), team("c", 6)
    )
    held = [job("a-big", "a", 4, "admitted"), job("b-big", "b", 4, "admitted")]
    queue = [job("b-more", "b", 2, at=1), job("a-more", "a", 2, at=2)]
    assert decide(spec, BIG, [*held, *queue]).admit == ("a-more",)


# --- reclaiming a quota --------------------------------------------------------------------------

BORROWED = [
    job("own", "language", 4, "admitted", at=1),
    job("stale", "language", 2, "admitted", at=2, last_checkpoint_at_s=100.0),
    job("fresh", "language", 2, "admitted", at=3, last_checkpoint_at_s=900.0),
]


def test_the_owner_reclaims_its_quota_from_the_borrowed_work_that_loses_least() -> None:
    decision = decide(TWO, Resources(gpu=8), [*BORROWED, job("mine", "vision", 2, at=5)])
    assert decision.admit == ()
    [preemption] = decision.preempt
    assert (preemption.victim, preemption.beneficiary) == ("fresh", "mine")
    assert "team vision needs its gpu quota back for mine" in preemption.reason
    [wait] = decision.waiting
    assert wait.holders == ("fresh",) and wait.blocking_resource == "gpu"
    assert wait.kind == "draining"
    assert wait.reason.startswith("fresh is being preempted to give team vision its gpu quota back")


def test_it_preempts_no_more_than_needed() -> None:
    decision = decide(TWO, Resources(gpu=8), [*BORROWED, job("mine", "vision", 4, at=5)])
    assert sorted(p.victim for p in decision.preempt) == ["fresh", "stale"]
    decision = decide(TWO, Resources(gpu=8), [*BORROWED, job("one", "vision", 1, at=5)])
    assert [p.victim for p in decision.preempt] == ["fresh"]


def test_the_least_loss_is_the_freshest_safe_point_then_the_lowest_priority() -> None:
    checkpointed = job("c", "language", 2, "admitted", last_checkpoint_at_s=500.0)
    just_started = job("s", "language", 2, "admitted", admitted_at_s=800.0)
    unknown = job("u", "language", 2, "admitted")
    low = job("low", "language", 2, "admitted", last_checkpoint_at_s=500.0, priority=100)
    order = sorted([checkpointed, unknown, low, just_started], key=loss_order)
    assert [w.id for w in order] == ["s", "low", "c", "u"]


def test_served_models_are_never_preempted() -> None:
    served = job("served", "language", 6, "admitted", preemptible=False)
    decision = decide(TWO, Resources(gpu=8), [served, job("mine", "vision", 4, at=5)])
    assert decision.preempt == ()
    assert "lent within cohort shared to work that cannot be preempted" in waits(decision)["mine"]


def test_work_within_its_teams_quota_is_never_preempted() -> None:
    held = job("theirs", "language", 4, "admitted")
    decision = decide(TWO, Resources(gpu=6), [held, job("mine", "vision", 4, at=5)])
    assert decision.preempt == ()
    assert waits(decision)["mine"].startswith("the cluster has 2 GPUs free")


def test_a_team_never_preempts_its_own_work() -> None:
    spec = teams(team("vision", 4, borrow=4), team("language", 4))
    held = [job("v-borrowed", "vision", 6, "admitted"), job("l", "language", 2, "admitted")]
    decision = decide(spec, Resources(gpu=8), [*held, job("v-more", "vision", 1)])
    assert decision.preempt == ()


def test_victims_being_drained_are_not_asked_twice_and_no_one_takes_their_place() -> None:
    draining = [replace(w, draining=w.id == "fresh") for w in BORROWED]
    queue = [job("mine", "vision", 2, at=5), job("theirs", "language", 1, at=6)]
    decision = decide(TWO, Resources(gpu=8), [*draining, *queue])
    assert decision.admit == () and decision.preempt == ()
    assert waits(decision)["mine"].startswith("fresh is being preempted")


def test_once_the_victim_is_requeued_the_owner_gets_in_and_the_victim_waits() -> None:
    requeued = [replace(w, state="queued") if w.id == "fresh" else w for w in BORROWED]
    decision = decide(TWO, Resources(gpu=8), [*requeued, job("mine", "vision", 2, at=5)])
    assert decision.admit == ("mine",)
    assert decision.preempt == ()
    assert "cohort shared has no more idle to lend" in waits(decision)["fresh"]


def test_one_drain_serves_two_owners_when_it_frees_enough() -> None:
    queue = [job("mine", "vision", 1, at=5), job("also", "vision", 1, at=6)]
    decision = decide(TWO, Resources(gpu=8), [*BORROWED, *queue])
    assert [p.victim for p in decision.preempt] == ["fresh"]
    assert {w.workload: w.holders for w in decision.waiting} == {
        "mine": ("fresh",),
        "also": ("fresh",),
    }


# --- determinism and input checks ----------------------------------------------------------------


def test_the_order_of_the_input_does_not_matter() -> None:
    workloads = [
        *BORROWED,
        *(job(f"q{i}", ["vision", "language"][i % 2], 1 + i % 3, at=i % 4) for i in range(12)),
    ]
    expected = decide(TWO, Resources(gpu=12), workloads)
    for seed in range(5):
        shuffled = list(workloads)
        random.Random(seed).shuffle(shuffled)
        assert decide(TWO, Resources(gpu=12), shuffled) == expected


def test_duplicate_ids_are_a_bug_of_the_caller() -> None:
    with pytest.raises(ValueError, match="'a' appears twice"):
        decide(TWO, BIG, [job("a", "vision", 1), job("a", "vision", 1)])


def test_queue_order_is_priority_then_submission_then_id() -> None:
    workloads = [
        job("b", "v", 1, at=1),
        job("a", "v", 1, at=1),
        job("c", "v", 1, at=0),
        job("d", "v", 1, at=9, priority=900),
    ]
    assert [w.id for w in sorted(workloads, key=queue_order)] == ["d", "c", "a", "b"]


def test_usage_counts_admitted_work_per_team_in_file_order() -> None:
    workloads = [
        job("a", "language", 2, "admitted"),
        job("b", "language", 1, "admitted"),
        job("c", "vision", 5),
    ]
    assert usage_by_team(TWO, workloads) == {"vision": Resources(), "language": Resources(gpu=3)}


def test_the_shipped_teams_file_admits_the_digits_search_of_vision() -> None:
    spec = load_teams(REPO / "cluster" / "teams.yaml")
    demand = demand_of(plan(load_spec(REPO / "experiments" / "digits" / "search.yaml")))
    decision = decide(
        spec, Resources(cpu=4, memory_gib=16), [Workload("d", "vision", 500, 0.0, demand, "queued")]
    )
    assert decision.admit == ("d",)


# --- demand ------------------------------------------------------------------------------------


def plan(spec: ExperimentSpec) -> JobPlan:
    return spec_to_job_plan(spec, "spec.yaml", b"", Settings(home=Path("/nonexistent")), "job-1")


def experiment(scaling: dict[str, Any], search: dict[str, Any] | None = None) -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        {
            "name": "e",
            "team": "vision",
            "task": {"module": "task"},
            "train": {"epochs": 3, "batch_size": 60, "scaling": scaling},
            "search": search,
        }
    )


def search(max_concurrent: int, trials: int = 8, **extra: Any) -> dict[str, Any]:
    space = {"train.optimizer.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}
    stage = {"name": "s", "sampler": "random", "trials": trials, "max_concurrent": max_concurrent}
    return {"space": space, "stages": [stage], **extra}


def test_demand_of_a_single_training_is_its_workers() -> None:
    assert demand_of(plan(experiment({"num_workers": 3}))) == Resources(cpu=3)
    assert demand_of(plan(experiment({"num_workers": 2, "use_gpu": True}))) == Resources(gpu=2)
    per_worker = {"CPU": 2, "GPU": 0.5, "memory": 3 * 2**30}
    assert demand_of(plan(experiment({"num_workers": 3, "resources_per_worker": per_worker}))) == (
        Resources(cpu=6, gpu=2, memory_gib=9)  # 1.5 GPUs round up
    )


def test_demand_of_a_search_is_the_peak_of_its_trials_and_its_final_training() -> None:
    assert demand_of(plan(experiment({"num_workers": 2}, search(4)))) == Resources(cpu=4)
    assert demand_of(plan(experiment({"num_workers": 6}, search(4)))) == Resources(cpu=6)
    assert demand_of(plan(experiment({"num_workers": 1}, search(4, trials=3)))) == Resources(cpu=3)
    gpu = {"num_workers": 1, "use_gpu": True}
    assert demand_of(plan(experiment(gpu, search(2)))) == Resources(cpu=2, gpu=2)
    sharded = experiment(
        {"num_workers": 2, "resources_per_worker": {"CPU": 1}}, search(3, trial_workers=2)
    )
    assert demand_of(plan(sharded)) == Resources(cpu=6)


def test_demand_of_the_default_search_plan_uses_its_stages() -> None:
    assert demand_of(
        plan(experiment({"num_workers": 1}, {**search(1), "stages": None, "budget": 12}))
    ) == (
        Resources(cpu=2)  # both default stages run 2 trials at a time
    )
