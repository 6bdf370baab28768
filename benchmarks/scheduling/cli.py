"""Scheduling: flywheel's admission vs plain FIFO, strict quotas and Kueue-like preemption.

A seeded synthetic multi-team workload (see :mod:`benchmarks.scheduling.workload`) is replayed
on simulated clusters of 64 and 1,000 GPUs through four policies, three of them the same
``flywheel.admission.decide``:

- flywheel: quotas, borrowing of idle quota, reclaim preempting the borrowed work that loses least;
- Kueue-like: the same, but victims in Kueue's order (lowest priority, then most recently
  admitted) with no checkpoint information;
- strict quotas: ``decide`` with every borrowing limit at zero;
- plain FIFO: one queue in arrival order over the whole cluster, no quotas.

Then ``decide``'s own cost per decision with 10,000 queued workloads, against sorting that queue.

    .venv/bin/python -m benchmarks.scheduling [--hours-small 72] [--hours-large 24] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from benchmarks.scheduling.metrics import Outcome, outcome
from benchmarks.scheduling.simulate import Policy, fifo, flywheel, kueue_like, simulate
from benchmarks.scheduling.workload import (
    LARGE,
    SMALL,
    ClusterShape,
    capacity,
    generate,
    teams_file,
)
from flywheel.admission import Workload, decide, queue_order
from flywheel.specs.teams import Resources


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours-small", type=float, default=72.0)
    parser.add_argument("--hours-large", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queued", type=int, default=10_000)
    args = parser.parse_args(argv)
    for shape, hours in ((SMALL, args.hours_small), (LARGE, args.hours_large)):
        print(f"\n{shape.name}, {hours:g} hours, seed {args.seed}\n")
        print(outcome_table(compare(shape, hours, args.seed)))
    print(f"\nCost of one decision, {LARGE.name}, {args.queued:,} queued\n")
    print(cost_table(decision_cost(args.queued, args.seed)))


def compare(shape: ClusterShape, hours: float, seed: int) -> list[Outcome]:
    """Every policy on the same jobs."""
    jobs = generate(shape, hours, seed)
    cluster = capacity(shape)
    borrowing, strict = teams_file(shape, borrowing=True), teams_file(shape, borrowing=False)
    policies: dict[str, Policy] = {
        "flywheel (borrowing, checkpoint-aware reclaim)": flywheel(borrowing, cluster),
        "Kueue-like (borrowing, reclaim by priority and recency)": kueue_like(borrowing, cluster),
        "strict quotas, no borrowing": flywheel(strict, cluster),
        "plain FIFO, no quotas": fifo(cluster),
    }
    shares = {f"team-{i}": share for i, share in enumerate(shape.shares)}
    horizon_s = hours * 3600.0
    return [
        outcome(name, simulate(jobs, policy, horizon_s), shares, shape.gpus, horizon_s)
        for name, policy in policies.items()
    ]


def outcome_table(outcomes: list[Outcome]) -> str:
    rows = [
        "| policy | GPU utilization | Jain's fairness (GPU-h / quota share) | median wait (h) "
        "| p95 wait (h) | GPU-h lost to preemption | preemptions | ms per decision |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        rows.append(
            f"| {o.policy} | {o.utilization:.1%} | {o.fairness:.3f} | {o.median_wait_h:.2f} "
            f"| {o.p95_wait_h:.2f} | {o.lost_gpu_h:,.1f} | {o.preemptions} | {o.decide_ms:.1f} |"
        )
    return "\n".join(rows)


def decision_cost(queued: int, seed: int, repeats: int = 5) -> dict[str, float]:
    """Median seconds per call: ``decide``, plain FIFO, and sorting the queue (the floor)."""
    teams, cluster = teams_file(LARGE, borrowing=True), capacity(LARGE)
    workloads = _full_cluster_and_queue(queued, seed)
    fifo_policy = fifo(cluster)
    calls: dict[str, Callable[[], object]] = {
        "flywheel decide()": lambda: decide(teams, cluster, workloads),
        "plain FIFO": lambda: fifo_policy(0.0, workloads),
        "sorting the queue by priority and submission": lambda: sorted(workloads, key=queue_order),
    }
    return {name: _median_s(call, repeats) for name, call in calls.items()}


def cost_table(cost: dict[str, float]) -> str:
    floor = cost["sorting the queue by priority and submission"]
    rows = ["| | ms per call | ratio to sorting the queue |", "|---|---|---|"]
    rows += [f"| {name} | {s * 1e3:,.1f} | {s / floor:,.1f} |" for name, s in cost.items()]
    return "\n".join(rows)


def _full_cluster_and_queue(queued: int, seed: int) -> list[Workload]:
    """Each team at its quota with running jobs, then ``queued`` more jobs waiting."""
    rng = random.Random(seed)
    room = {team.name: team.quota.gpu for team in teams_file(LARGE, borrowing=True).teams}
    holding: list[Workload] = []
    waiting: list[Workload] = []
    for job in generate(LARGE, hours=24.0 * queued / 1_000, seed=seed):
        if len(waiting) >= queued:
            break
        demand = Resources(gpu=job.gpus)
        if room[job.team] < job.gpus:
            waiting.append(
                Workload(job.id, job.team, job.priority, job.arrival_s, demand, "queued")
            )
            continue
        room[job.team] -= job.gpus
        checkpoint_s = job.arrival_s + rng.uniform(0.0, job.checkpoint_interval_s)
        holding.append(
            Workload(job.id, job.team, job.priority, job.arrival_s, demand, "admitted",
                     last_checkpoint_at_s=checkpoint_s, admitted_at_s=job.arrival_s)
        )  # fmt: skip
    return holding + waiting


def _median_s(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
