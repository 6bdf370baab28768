"""Every (problem, method, budget, seed) run, spread over worker processes, with a progress bar.

A method whose first n trials do not depend on the budget (the single-stage peers, and a plan
whose budgets differ only in its last stage's trials) runs once, at the largest budget; another
runs once per budget. Workers are spawned (not forked) so that each builds its
own torch and Optuna state; a worker builds each problem once.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from benchmarks.search_quality.methods import Trace, budget_independent, run_method
from benchmarks.search_quality.problems import get_problem


@dataclass(frozen=True)
class Task:
    """One run to do."""

    problem: str
    method: str
    budget: int
    seed: int


def plan_tasks(
    problems: Iterable[str], methods: Iterable[str], budgets: list[int], seeds: int
) -> list[Task]:
    """The runs that give every method's result at every budget, slowest first."""
    tasks = [
        Task(problem, method, budget, seed)
        for problem in problems
        for method in methods
        for budget in _run_budgets(problem, method, budgets)
        for seed in range(seeds)
    ]
    return sorted(tasks, key=lambda t: (not t.problem.startswith("digits"), -_cost(t)))


def _cost(task: Task) -> float:
    """A rough cost, to start the slowest runs first: a GP's trials cost more the more there are."""
    gp = task.method in ("gp", "c2f-gp", "coarse-to-fine", "c2f-share", "c2f-trust-region")
    return task.budget**2 if gp else task.budget


def _run_budgets(problem: str, method: str, budgets: list[int]) -> list[int]:
    if budget_independent(get_problem(problem), method, budgets):
        return [max(budgets)]
    return budgets


def run_task(task: Task) -> Trace:
    """Run one task (in a worker process), on one thread: there is one worker per core, and
    a GP sampler's torch threads fighting over the cores made it four times slower."""
    torch.set_num_threads(1)
    return run_method(get_problem(task.problem), task.method, task.budget, task.seed)


def run_tasks(tasks: list[Task], jobs: int, save: Path | None = None) -> list[Trace]:
    """Run ``tasks`` on ``jobs`` processes (1: in this process), showing progress on stderr.

    With ``save``, the traces finished so far are written there after each run, so that a run
    stopped halfway keeps what it measured (``--load`` renders it once it is complete).
    """
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    done: list[Trace] = []

    def finished(trace: Trace) -> None:
        done.append(trace)
        if save is not None:
            save_traces(done, save)
        progress.advance(bar)

    with progress:
        bar = progress.add_task("search-quality runs", total=len(tasks))
        if jobs == 1:
            for task in tasks:
                finished(run_task(task))
            return done
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures: list[Future[Trace]] = [pool.submit(run_task, task) for task in tasks]
            for future in as_completed(futures):
                finished(future.result())
            return [future.result() for future in futures]


def save_traces(traces: list[Trace], path: Path) -> None:
    """Write the traces as JSON, to render them again with ``--load``."""
    path.write_text(json.dumps([asdict(t) for t in traces]))


def load_traces(path: Path) -> list[Trace]:
    """Read traces written by :func:`save_traces`."""
    rows = json.loads(path.read_text())
    return [
        Trace(**{**row, "scores": tuple(row["scores"]), "stage_sizes": tuple(row["stage_sizes"])})
        for row in rows
    ]
