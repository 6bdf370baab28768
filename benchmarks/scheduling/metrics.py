"""What the scheduling benchmark reports of one simulated run."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from benchmarks.scheduling.simulate import Trace


@dataclass(frozen=True)
class Outcome:
    """The figures of one policy on one cluster."""

    policy: str
    utilization: float  # GPU-hours held / GPU-hours the cluster had, after the warm-up
    fairness: float  # Jain's index of each team's GPU-hours divided by its quota share
    median_wait_h: float  # submission to first admission; work still waiting counts to the horizon
    p95_wait_h: float
    median_wait_by_priority_h: dict[int, float]  # priority value: median wait (h)
    lost_gpu_h: float  # GPU-hours of work redone after preemption (and spent draining)
    preemptions: int  # after the warm-up, as the two above
    decide_ms: float  # mean cost of one decision of the policy


def outcome(
    policy: str, trace: Trace, shares: dict[str, float], gpus: int, window_s: tuple[float, float]
) -> Outcome:
    """The figures of ``trace`` over ``window_s`` (after the warm-up, to the horizon)."""
    start_s, horizon_s = window_s
    held_gpu_s = {team: 0.0 for team in shares}
    waits_s: list[float] = []
    by_priority_s: dict[int, list[float]] = {}
    for run in trace.runs:
        for begin_s, end_s in run.held:
            overlap_s = min(end_s, horizon_s) - max(begin_s, start_s)
            held_gpu_s[run.job.team] += max(0.0, overlap_s) * run.job.gpus
        if run.state == "pending" or run.job.arrival_s < start_s:
            continue
        admitted_s = run.first_admitted_s if run.first_admitted_s is not None else horizon_s
        waits_s.append(admitted_s - run.job.arrival_s)
        by_priority_s.setdefault(run.job.priority, []).append(admitted_s - run.job.arrival_s)
    total_gpu_s = sum(held_gpu_s.values())
    losses = [loss for run in trace.runs for loss in run.losses if loss[0] >= start_s]
    return Outcome(
        policy=policy,
        utilization=total_gpu_s / (gpus * (horizon_s - start_s)),
        fairness=jain([held_gpu_s[team] / share for team, share in shares.items()]),
        median_wait_h=statistics.median(waits_s) / 3600,
        p95_wait_h=percentile(waits_s, 95) / 3600,
        median_wait_by_priority_h={
            p: statistics.median(w) / 3600 for p, w in sorted(by_priority_s.items(), reverse=True)
        },
        lost_gpu_h=sum(gpu_s for _, gpu_s in losses) / 3600,
        preemptions=len(losses),
        decide_ms=1e3 * trace.decide_s / max(1, trace.decisions),
    )


def jain(values: list[float]) -> float:
    """Jain's fairness index: 1 when all are equal, 1/n when one has everything."""
    total = sum(values)
    squares = sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares else 1.0


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
