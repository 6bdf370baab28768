"""The synthetic multi-team workload the scheduling benchmark replays, seeded.

Teams own unequal shares of the cluster and ask for more than their share on average (from
1.0 to 1.4 times it), in bursts: each team alternates busy and quiet phases (from its own random
offset), so that idle quota is there to borrow and owners come back for it. Every job has an
arrival time, a duration, a GPU demand, a priority and a checkpoint interval.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from flywheel.specs.teams import Resources, TeamsSpec

#: Priority values of the default priority classes, and how often jobs get each.
PRIORITY_WEIGHTS = {100: 0.2, 500: 0.7, 1000: 0.1}

#: Checkpoint intervals (s) jobs are given, equally often.
CHECKPOINT_INTERVALS_S = (15 * 60.0, 30 * 60.0, 60 * 60.0)

#: Median job duration (s) and the spread of its log-normal distribution; durations are capped.
MEDIAN_DURATION_S = 3600.0
DURATION_SIGMA = 1.0
MAX_DURATION_S = 12 * 3600.0

#: A team's busy and quiet phases (s): it submits only while busy, so that its quota lies idle
#: (to borrow) while it is quiet, and it comes back for it.
BUSY_S = 6 * 3600.0
QUIET_S = 4 * 3600.0


@dataclass(frozen=True)
class Job:
    """One experiment of the synthetic workload."""

    id: str
    team: str
    arrival_s: float
    duration_s: float  # GPU time it needs, uninterrupted
    gpus: int
    priority: int
    checkpoint_interval_s: float


@dataclass(frozen=True)
class ClusterShape:
    """A simulated cluster: its GPUs, its teams' shares and loads, and its job sizes."""

    name: str
    gpus: int
    shares: tuple[float, ...]  # each team's share of the GPUs (its nominal quota)
    loads: tuple[float, ...]  # each team's offered load, as a multiple of its share
    sizes: dict[int, float]  # GPUs per job, and how often


SMALL = ClusterShape(
    name="64 GPUs, 4 teams",
    gpus=64,
    shares=(0.4, 0.3, 0.2, 0.1),
    loads=(1.4, 1.2, 1.05, 1.0),
    sizes={1: 0.4, 2: 0.3, 4: 0.2, 8: 0.1},
)

LARGE = ClusterShape(
    name="1,000 GPUs, 8 teams",
    gpus=1000,
    shares=(0.25, 0.2, 0.15, 0.1, 0.1, 0.1, 0.05, 0.05),
    loads=(1.4, 1.3, 1.2, 1.1, 1.05, 1.0, 1.0, 1.0),
    sizes={1: 0.2, 2: 0.2, 4: 0.2, 8: 0.25, 16: 0.1, 32: 0.05},
)


def teams_file(shape: ClusterShape, borrowing: bool) -> TeamsSpec:
    """Teams with quotas by share; with ``borrowing``, each may borrow up to half the cluster."""
    quotas = _quotas(shape)
    borrow = shape.gpus // 2 if borrowing else 0
    return TeamsSpec.model_validate(
        {
            "teams": [
                {
                    "name": f"team-{i}",
                    "quota": {"gpu": quota},
                    "borrowing_limit": {"gpu": borrow},
                    "max_concurrent_experiments": 10_000,
                }
                for i, quota in enumerate(quotas)
            ]
        }
    )


def capacity(shape: ClusterShape) -> Resources:
    return Resources(gpu=shape.gpus)


def generate(shape: ClusterShape, hours: float, seed: int) -> list[Job]:
    """Every job arriving within ``hours``, in arrival order."""
    rng = random.Random(seed)
    mean_gpus = sum(size * p for size, p in shape.sizes.items())
    mean_duration_s = min(MEDIAN_DURATION_S * math.exp(DURATION_SIGMA**2 / 2), MAX_DURATION_S)
    busy_share = BUSY_S / (BUSY_S + QUIET_S)
    jobs: list[Job] = []
    for team, (share, load) in enumerate(zip(shape.shares, shape.loads, strict=True)):
        gpu_s_per_s = share * shape.gpus * load
        rate_per_s = gpu_s_per_s / (mean_gpus * mean_duration_s) / busy_share
        jobs += _team_jobs(rng, shape, f"team-{team}", rate_per_s, hours * 3600.0)
    jobs.sort(key=lambda j: (j.arrival_s, j.id))
    return jobs


def _team_jobs(
    rng: random.Random, shape: ClusterShape, team: str, rate_per_s: float, horizon_s: float
) -> list[Job]:
    """Poisson arrivals in the team's busy phases; the phases repeat from a random offset."""
    jobs: list[Job] = []
    period_s = BUSY_S + QUIET_S
    offset_s = rng.uniform(0.0, period_s)
    sizes, size_weights = list(shape.sizes), list(shape.sizes.values())
    priorities, priority_weights = list(PRIORITY_WEIGHTS), list(PRIORITY_WEIGHTS.values())
    time_s = 0.0
    while True:
        time_s += rng.expovariate(rate_per_s)
        if (time_s + offset_s) % period_s >= BUSY_S:  # quiet: skip to the next busy phase
            time_s += period_s - (time_s + offset_s) % period_s
        if time_s >= horizon_s:
            return jobs
        duration_s = rng.lognormvariate(math.log(MEDIAN_DURATION_S), DURATION_SIGMA)
        jobs.append(
            Job(
                id=f"{team}-{len(jobs):05d}",
                team=team,
                arrival_s=time_s,
                duration_s=min(max(60.0, duration_s), MAX_DURATION_S),
                gpus=rng.choices(sizes, size_weights)[0],
                priority=rng.choices(priorities, priority_weights)[0],
                checkpoint_interval_s=rng.choice(CHECKPOINT_INTERVALS_S),
            )
        )


def _quotas(shape: ClusterShape) -> list[int]:
    """Whole-GPU quotas by share that add up to the cluster."""
    quotas = [int(share * shape.gpus) for share in shape.shares]
    quotas[0] += shape.gpus - sum(quotas)
    return quotas
