"""What the traces say: normalized regret, speedup to target, narrowing failures, ranks.

Normalized regret of a run at a budget is ``(best - optimum) / (reference - optimum)``: 0 is the
global optimum, 1 is the median random configuration (the reference). For the digits MLP, whose
optimum is unknown, the optimum is the best value any run found and the reference the median of
the random-search trials.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from benchmarks.search_quality.methods import Trace
from benchmarks.search_quality.problems import Problem


@dataclass(frozen=True)
class Scale:
    """A problem's optimum and reference value, which normalize its regret."""

    optimum: float
    reference: float

    def regret(self, best: float) -> float:
        """Normalized regret of ``best``; inf when no trial counted yet."""
        if not math.isfinite(best):
            return math.inf
        return max(0.0, (best - self.optimum) / (self.reference - self.optimum))


@dataclass(frozen=True)
class Speedup:
    """Speedup to target of one method on one problem, read off the median regret curves.

    The target is random search's median regret after the largest budget; each side's trials
    are the first trial at which its median (over seeds) best-so-far regret reaches it.
    """

    random_trials: int
    method_trials: int | None
    """None: the method's median curve never reaches the target within the budget."""
    budget: int

    def __str__(self) -> str:
        if self.method_trials is None:  # it would need more than the budget
            return f"< {self.random_trials / self.budget:.2f}"
        return f"{self.random_trials / self.method_trials:.2f}"


class Results:
    """Every trace of a benchmark run, indexed for the measures."""

    def __init__(self, traces: Iterable[Trace], problems: Sequence[Problem]) -> None:
        self.traces = list(traces)
        self.problems = list(problems)
        self._index = {(t.problem, t.method, t.seed, t.budget): t for t in self.traces}
        self.seeds = sorted({t.seed for t in self.traces})
        self.methods = list(dict.fromkeys(t.method for t in self.traces))
        self.max_budget = max(t.budget for t in self.traces)
        self.scales = {p.name: self._scale(p) for p in self.problems}

    def missing(self, budgets: Iterable[int]) -> list[str]:
        """The (problem, method, budget) runs that some seed lacks, to report before rendering."""
        return [
            f"{method} on {problem.name} at {budget} trials"
            for problem in self.problems
            for method in self.methods
            for budget in budgets
            if any(self._find(problem.name, method, seed, budget) is None for seed in self.seeds)
        ]

    def trace(self, problem: str, method: str, seed: int, budget: int) -> Trace:
        """The run that gives ``method``'s result at ``budget``: the run of that budget, else the
        longest (the runner runs a budget-independent method once, at the largest budget)."""
        found = self._find(problem, method, seed, budget)
        if found is None:
            raise KeyError(f"no run of {method} on {problem} with seed {seed} at {budget} trials")
        return found

    def runs_once(self, problem: str, method: str) -> bool:
        """Whether ``method`` ran only at the largest budget on ``problem`` (budget-independent)."""
        return all(
            t.budget == self.max_budget
            for t in self.traces
            if t.problem == problem and t.method == method
        )

    def regrets(self, problem: str, method: str, budget: int) -> list[float]:
        """Normalized regret of the best of the first ``budget`` trials, one per seed."""
        scale = self.scales[problem]
        return [
            scale.regret(min(self.trace(problem, method, seed, budget).scores[:budget]))
            for seed in self.seeds
        ]

    def curves(self, problem: str, method: str) -> NDArray[np.float64]:
        """Normalized regret after each trial of the longest runs: seeds x trials (inf: none)."""
        scale = self.scales[problem]
        rows = []
        for seed in self.seeds:
            best = np.minimum.accumulate(self.trace(problem, method, seed, self.max_budget).scores)
            rows.append([scale.regret(float(b)) for b in best])
        return np.array(rows)

    def speedup(self, problem: str, method: str) -> Speedup:
        """Trials random search needs to reach its final median regret, over ``method``'s."""
        random = np.median(self.curves(problem, "random"), axis=0)
        mine = np.median(self.curves(problem, method), axis=0)
        target = float(random[-1])
        needed = _trials_to_reach(random, target) or self.max_budget  # random reaches it
        return Speedup(needed, _trials_to_reach(mine, target), self.max_budget)

    def coarse_beat_fine(self, method: str, budget: int) -> tuple[int, int]:
        """(runs whose best coarse trial beat every later trial, runs) on problems where all
        stages train alike: there the runtime, which returns the last stage's best, returns
        a worse configuration than one it ran."""
        runs = [
            self.trace(p.name, method, seed, budget)
            for p in self.problems
            if not p.uses_fidelity
            for seed in self.seeds
        ]
        beaten = [t for t in runs if _coarse_best_wins(t)]
        return len(beaten), len(runs)

    def epochs(self, problem: str, method: str, budget: int) -> float:
        """Median training epochs a run of ``budget`` trials spent (anytime runs: prorated)."""
        spent = []
        for seed in self.seeds:
            trace = self.trace(problem, method, seed, budget)
            spent.append(trace.epochs * min(budget, trace.budget) / trace.budget)
        return statistics.median(spent)

    def narrows(self, method: str) -> bool:
        """Whether ``method`` narrows the space on a problem with known minimizers."""
        return any(t.box_holds_optimum is not None for t in self.traces if t.method == method)

    def narrowing_failures(self, problem: str, method: str, budget: int) -> tuple[int, int]:
        """(runs whose narrowed space lost every global minimizer, runs where that is known)."""
        holds = [self.trace(problem, method, s, budget).box_holds_optimum for s in self.seeds]
        known = [h for h in holds if h is not None]
        return sum(1 for h in known if not h), len(known)

    def median_regrets(self, budget: int) -> dict[str, dict[str, float]]:
        """Median normalized regret over seeds, by problem and method."""
        return {
            p.name: {m: statistics.median(self.regrets(p.name, m, budget)) for m in self.methods}
            for p in self.problems
        }

    def ranks(self, budget: int) -> dict[str, list[float]]:
        """Each method's rank (1 = lowest median regret, ties share) on every problem."""
        ranks: dict[str, list[float]] = {m: [] for m in self.methods}
        for medians in self.median_regrets(budget).values():
            for method, value in medians.items():
                below = sum(1 for v in medians.values() if v < value)
                ties = sum(1 for v in medians.values() if v == value)
                ranks[method].append(below + (ties + 1) / 2)
        return ranks

    def wins(self, budget: int) -> dict[str, float]:
        """Problems on which each method has the lowest median regret; a tie of k gives 1/k."""
        wins = dict.fromkeys(self.methods, 0.0)
        for medians in self.median_regrets(budget).values():
            best = [m for m, v in medians.items() if v == min(medians.values())]
            for method in best:
                wins[method] += 1 / len(best)
        return wins

    def _find(self, problem: str, method: str, seed: int, budget: int) -> Trace | None:
        exact = self._index.get((problem, method, seed, budget))
        return exact or self._index.get((problem, method, seed, self.max_budget))

    def _scale(self, problem: Problem) -> Scale:
        """The problem's known optimum and reference, else both taken from the runs."""
        mine = [t for t in self.traces if t.problem == problem.name]
        optimum = problem.optimum
        if optimum is None:
            optimum = min(min(t.scores) for t in mine)
        reference = problem.reference
        if reference is None:
            samples = [s for t in mine if t.method == "random" for s in t.scores]
            reference = statistics.median(s for s in samples if math.isfinite(s))
        return Scale(optimum, reference)


def _trials_to_reach(curve: Iterable[float], target: float) -> int | None:
    """The 1-based number of trials after which ``curve`` is at most ``target``."""
    for index, value in enumerate(curve, start=1):
        if value <= target:
            return index
    return None


def _coarse_best_wins(trace: Trace) -> bool:
    """Whether the first stage's best trial beat every trial of the later stages."""
    coarse = trace.stage_sizes[0]
    return min(trace.scores[:coarse]) < min(trace.scores[coarse:], default=math.inf)
