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
    utilization: float  # GPU-hours held / GPU-hours the cluster had, over the horizon
    fairness: float  # Jain's index of each team's GPU-hours divided by its quota share
    median_wait_h: float  # submission to first admission; work still waiting counts to the horizon
    p95_wait_h: float
    lost_gpu_h: float  # GPU-hours of work redone after preemption (and spent draining)
    preemptions: int
    decide_ms: float  # mean cost of one decision of the policy


def outcome(
    policy: str, trace: Trace, shares: dict[str, float], gpus: int, horizon_s: float
) -> Outcome:
    """The figures of ``trace``."""
    held_gpu_s = {team: 0.0 for team in shares}
    waits_s: list[float] = []
    for run in trace.runs:
        if run.state == "pending":
            continue
        for start_s, end_s in run.held:
            held_gpu_s[run.job.team] += (min(end_s, horizon_s) - start_s) * run.job.gpus
        admitted_s = run.first_admitted_s if run.first_admitted_s is not None else horizon_s
        waits_s.append(admitted_s - run.job.arrival_s)
    total_gpu_s = sum(held_gpu_s.values())
    return Outcome(
        policy=policy,
        utilization=total_gpu_s / (gpus * horizon_s),
        fairness=jain([held_gpu_s[team] / share for team, share in shares.items()]),
        median_wait_h=statistics.median(waits_s) / 3600,
        p95_wait_h=percentile(waits_s, 95) / 3600,
        lost_gpu_h=sum(run.lost_gpu_s for run in trace.runs) / 3600,
        preemptions=trace.preemptions,
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
