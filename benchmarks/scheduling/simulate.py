"""A discrete-event simulation of a shared GPU cluster under one admission policy.

Jobs arrive, wait, run, end; the policy decides once per scheduling cycle (``cycle_s``, when
anything changed), as a control plane's loop would. A preempted job is asked to stop, holds its
GPUs for ``drain_s`` more, and is requeued; it resumes from its last periodic checkpoint, so the
work since then is lost. The same loss model applies to every policy that preempts: what differs
is which victims they choose.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from benchmarks.scheduling.workload import Job
from flywheel.admission import Decision, Workload, decide
from flywheel.specs.teams import Resources, TeamsSpec

#: A policy: given the time and every waiting and holding job, what to admit and to preempt.
Policy = Callable[[float, Sequence[Workload]], Decision]


@dataclass
class _Run:
    """One job's life in the simulation."""

    job: Job
    state: str = "pending"  # pending | waiting | running | draining | done
    remaining_s: float = 0.0  # work left when it (re)started
    started_s: float = 0.0
    first_admitted_s: float | None = None
    held: list[tuple[float, float]] = field(default_factory=list)  # intervals holding its GPUs
    lost_gpu_s: float = 0.0
    token: int = 0  # invalidates the end event of an interrupted run


@dataclass(frozen=True)
class Trace:
    """What happened to every job, and what the policy cost."""

    runs: list[_Run]
    preemptions: int
    decisions: int
    decide_s: float  # total time spent in the policy


def simulate(
    jobs: list[Job], policy: Policy, horizon_s: float, cycle_s: float = 60.0, drain_s: float = 60.0
) -> Trace:
    """Replay ``jobs`` under ``policy`` until ``horizon_s``."""
    runs = {job.id: _Run(job, remaining_s=job.duration_s) for job in jobs}
    events: list[tuple[float, int, str, str, int]] = []
    for seq, job in enumerate(jobs):
        heapq.heappush(events, (job.arrival_s, seq, "arrive", job.id, 0))
    seq, now_s, preemptions, decisions, decide_s = len(jobs), 0.0, 0, 0, 0.0
    demands: dict[int, Resources] = {}
    while now_s < horizon_s:
        changed = False
        while events and events[0][0] <= now_s:
            _, _, kind, job_id, token = heapq.heappop(events)
            changed |= _happen(runs[job_id], kind, token)
        if changed:
            workloads = [
                _workload(run, now_s, demands) for run in runs.values() if run.state in _LIVE
            ]
            started = time.perf_counter()
            decision = policy(now_s, workloads)
            decide_s += time.perf_counter() - started
            decisions += 1
            for job_id in decision.admit:
                end_s = _start(runs[job_id], now_s)
                seq += 1
                heapq.heappush(events, (end_s, seq, "end", job_id, runs[job_id].token))
            for preemption in decision.preempt:
                _preempt(runs[preemption.victim], now_s, drain_s)
                preemptions += 1
                seq += 1
                heapq.heappush(events, (now_s + drain_s, seq, "drained", preemption.victim, 0))
        now_s += cycle_s
    for run in runs.values():  # close what still holds GPUs at the horizon
        if run.state in ("running", "draining") and run.held and math.isinf(run.held[-1][1]):
            run.held[-1] = (run.held[-1][0], horizon_s)
    return Trace(list(runs.values()), preemptions, decisions, decide_s)


_LIVE = ("waiting", "running", "draining")


def _happen(run: _Run, kind: str, token: int) -> bool:
    if kind == "arrive":
        run.state = "waiting"
        return True
    if kind == "end" and run.state == "running" and token == run.token:
        run.state = "done"
        start_s, _ = run.held[-1]
        run.held[-1] = (start_s, run.started_s + run.remaining_s)
        return True
    if kind == "drained" and run.state == "draining":
        run.state = "waiting"
        return True
    return False


def _start(run: _Run, now_s: float) -> float:
    run.state, run.started_s = "running", now_s
    run.token += 1
    if run.first_admitted_s is None:
        run.first_admitted_s = now_s
    run.held.append((now_s, math.inf))
    return now_s + run.remaining_s


def _preempt(run: _Run, now_s: float, drain_s: float) -> None:
    """Stop a run: it keeps what its last checkpoint saved and holds its GPUs while draining."""
    elapsed_s = now_s - run.started_s
    saved_s = math.floor(elapsed_s / run.job.checkpoint_interval_s) * run.job.checkpoint_interval_s
    run.remaining_s -= saved_s
    run.lost_gpu_s += (elapsed_s - saved_s + drain_s) * run.job.gpus
    run.state = "draining"
    run.token += 1
    start_s, _ = run.held[-1]
    run.held[-1] = (start_s, now_s + drain_s)


def _workload(run: _Run, now_s: float, demands: dict[int, Resources]) -> Workload:
    job = run.job
    demand = demands.get(job.gpus) or demands.setdefault(job.gpus, Resources(gpu=job.gpus))
    if run.state == "waiting":
        return Workload(job.id, job.team, job.priority, job.arrival_s, demand, "queued")
    interval_s = job.checkpoint_interval_s
    checkpoint_s = run.started_s + math.floor((now_s - run.started_s) / interval_s) * interval_s
    return Workload(
        job.id, job.team, job.priority, job.arrival_s, demand, "admitted",
        last_checkpoint_at_s=checkpoint_s, admitted_at_s=run.started_s,
        draining=run.state == "draining",
    )  # fmt: skip


# --- the policies ---------------------------------------------------------------------------------


def flywheel(teams: TeamsSpec, capacity: Resources) -> Policy:
    """flywheel's ``decide``: quotas, borrowing, checkpoint-aware reclaim."""
    return lambda now_s, workloads: decide(teams, capacity, workloads)


def kueue_like(teams: TeamsSpec, capacity: Resources) -> Policy:
    """The same rules, with Kueue's victim order and no checkpoint information.

    Kueue preempts the lowest priority first, then the most recently admitted. ``decide`` orders
    victims by their safe point (the later of checkpoint and admission), then priority; hiding
    the checkpoints and shifting each admission time down by its priority makes that order
    Kueue's exactly.
    """

    def policy(now_s: float, workloads: Sequence[Workload]) -> Decision:
        blind = [w if w.state == "queued" else _kueue_view(w) for w in workloads]
        return decide(teams, capacity, blind)

    return policy


def _kueue_view(workload: Workload) -> Workload:
    """No checkpoint; an admission time that sorts by priority first, then recency."""
    admitted_at_s = (workload.admitted_at_s or 0.0) - workload.priority * _PRIORITY_SHIFT_S
    return replace(workload, last_checkpoint_at_s=None, admitted_at_s=admitted_at_s)


#: Larger than any simulated time: one priority step outweighs any difference of admission time.
_PRIORITY_SHIFT_S = 1e9


def fifo(capacity: Resources) -> Policy:
    """Plain FIFO over the whole cluster: in arrival order while the head fits; no quotas."""

    def policy(now_s: float, workloads: Sequence[Workload]) -> Decision:
        free = capacity.gpu - sum(w.demand.gpu for w in workloads if w.state == "admitted")
        admit: list[str] = []
        for workload in sorted(
            (w for w in workloads if w.state == "queued"), key=lambda w: (w.submitted_at_s, w.id)
        ):
            if workload.demand.gpu > free:
                break
            free -= workload.demand.gpu
            admit.append(workload.id)
        return Decision(admit=tuple(admit), preempt=(), waiting=())

    return policy
