"""The search methods, each run in-process with Optuna's ask-and-tell on one problem.

- ``coarse-to-fine``: flywheel's default plan, :meth:`SearchSpec.resolved_stages`, run stage by
  stage as ``flywheel.runtime.search`` does: each later stage's space is narrowed by
  :func:`flywheel.narrowing.narrow` around the earlier stage's trials, its study is warm-started
  with the earlier trials inside that space (the runtime's own ``_warm_start``), and its sampler
  and distributions are flywheel's (``stage_to_sampler``, ``space_to_optuna``). Trials run one at
  a time, without Ray Tune, ASHA or a journal.
- ``tpe``: one Optuna study with a default ``TPESampler``, as a user of plain Optuna would run it.
- ``random``: one Optuna study with ``RandomSampler``.
- variants of coarse-to-fine (:data:`VARIANTS`), to measure a change to the plan.

The coarse stage's random sampler is seeded like the ``random`` method, so on a seed both draw
the same first points (common random numbers: their difference is less noisy).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.trial import TrialState

from benchmarks.search_quality.problems import Problem
from flywheel.narrowing import TrialResult, narrow, within
from flywheel.runtime.optuna_space import space_to_optuna, stage_to_sampler

# The runtime's own warm start, imported rather than copied so the benchmark measures what
# flywheel runs; it only touches the Optuna study.
from flywheel.runtime.search import _warm_start
from flywheel.specs.search import Narrowing, Param, SearchSpec, Stage, coarse_trials

#: Methods whose first n trials do not depend on the budget: one run at the largest budget
#: gives every smaller one.
ANYTIME_METHODS = ("tpe", "random")
COARSE_TO_FINE = "coarse-to-fine"
#: The coarse share of flywheel's first default plan, kept as a variant to show the change.
LONG_COARSE_SHARE = 0.6
#: A looser narrowing rule than flywheel's (top quarter, 10 % margin): top half, 25 % margin.
WIDER_RULE = Narrowing(top_fraction=0.5, margin=0.25)


@dataclass(frozen=True)
class Trace:
    """One run of one method on one problem with one seed and budget."""

    problem: str
    method: str
    seed: int
    budget: int
    scores: tuple[float, ...]
    """Each trial's value in the order run; inf where it failed or ran at a lower fidelity."""
    stage_sizes: tuple[int, ...]
    """Trials per stage (one stage for single-stage methods)."""
    box_holds_optimum: bool | None
    """Coarse-to-fine: whether the narrowed space held a global minimizer; None: unknown."""
    epochs: int
    """Training epochs spent by all trials (digits only; 0 elsewhere)."""
    seconds: float


#: A plan: the stages of a coarse-to-fine search of ``budget`` trials on a problem.
PlanFn = Callable[[Problem, int], list[Stage]]


def default_plan(problem: Problem, budget: int) -> list[Stage]:
    """flywheel's default plan for a budget, as ``SearchSpec.resolved_stages`` derives it."""
    search = SearchSpec(space=problem.space, budget=budget)
    return search.resolved_stages(problem.full_epochs)


def modified_plan(
    problem: Problem,
    budget: int,
    *,
    coarse_share: float | None,
    rule: Narrowing | Literal["flywheel"] | None,
) -> list[Stage]:
    """The default plan with another coarse share or narrowing rule.

    ``coarse_share`` None keeps flywheel's (:data:`flywheel.specs.search.COARSE_SHARE`); ``rule``
    None searches the fine stage over the whole space, warm-started with every coarse trial;
    "flywheel" keeps the default rule.
    """
    coarse, fine = default_plan(problem, budget)
    if coarse_share is not None:
        trials = coarse_trials(budget, coarse_share)
        coarse = coarse.model_copy(update={"trials": trials})
        fine = fine.model_copy(update={"trials": budget - trials})
    if rule != "flywheel":
        fine = fine.model_copy(update={"narrow": rule})
    return [coarse, fine]


#: Coarse-to-fine plans by method name: flywheel's default and the variants measured beside it.
VARIANTS: dict[str, PlanFn] = {
    COARSE_TO_FINE: default_plan,
    "c2f-wider": functools.partial(modified_plan, coarse_share=None, rule=WIDER_RULE),
    "c2f-no-narrowing": functools.partial(modified_plan, coarse_share=None, rule=None),
    "c2f-long": functools.partial(modified_plan, coarse_share=LONG_COARSE_SHARE, rule="flywheel"),
    "c2f-long-no-narrowing": functools.partial(
        modified_plan, coarse_share=LONG_COARSE_SHARE, rule=None
    ),
}

ALL_METHODS = (*VARIANTS, *ANYTIME_METHODS)


def run_method(problem: Problem, method: str, budget: int, seed: int) -> Trace:
    """Run ``method`` for ``budget`` trials of ``problem`` with ``seed``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    if method in VARIANTS:
        scores, sizes, holds, epochs = _coarse_to_fine(problem, VARIANTS[method], budget, seed)
    else:
        sampler = _single_sampler(method, seed)
        scores, epochs = _single_stage(problem, sampler, budget)
        sizes, holds = (budget,), None
    seconds = time.perf_counter() - started
    return Trace(problem.name, method, seed, budget, scores, sizes, holds, epochs, seconds)


def _single_sampler(method: str, seed: int) -> BaseSampler:
    if method == "tpe":
        return TPESampler(seed=seed)
    if method == "random":
        return RandomSampler(seed=seed)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(ALL_METHODS)}")


def _single_stage(
    problem: Problem, sampler: BaseSampler, budget: int
) -> tuple[tuple[float, ...], int]:
    """``budget`` trials of one study over the whole space, at full fidelity."""
    study = optuna.create_study(sampler=sampler)
    results = _run_trials(study, problem, problem.space, budget, problem.full_epochs, "single")
    return tuple(_score(r) for r in results), budget * _epochs_cost(problem, problem.full_epochs)


def _coarse_to_fine(
    problem: Problem, plan: PlanFn, budget: int, seed: int
) -> tuple[tuple[float, ...], tuple[int, ...], bool | None, int]:
    """Run the plan's stages in order, as ``flywheel.runtime.search.run_search`` does."""
    space: dict[str, Param] = dict(problem.space)
    previous: list[TrialResult] = []
    scores: list[float] = []
    holds: bool | None = None
    epochs_spent = 0
    stages = [s.model_copy(update={"seed": seed + i}) for i, s in enumerate(plan(problem, budget))]
    for stage in stages:
        if stage.narrow is not None:
            space = dict(narrow(space, previous, stage.narrow, "min", stage.name).new_space)
            holds = _holds_optimum(problem, space)
        study = optuna.create_study(sampler=stage_to_sampler(stage, space))
        _warm_start(study, space, previous)
        epochs = min(stage.fidelity.max_epochs or problem.full_epochs, problem.full_epochs)
        previous = _run_trials(study, problem, space, stage.trials, epochs, stage.name)
        full = not problem.uses_fidelity or epochs == problem.full_epochs
        scores.extend(_score(r) if full else math.inf for r in previous)
        epochs_spent += stage.trials * _epochs_cost(problem, epochs)
    return tuple(scores), tuple(stage.trials for stage in stages), holds, epochs_spent


def _run_trials(
    study: optuna.Study,
    problem: Problem,
    space: dict[str, Param],
    trials: int,
    epochs: int,
    stage: str,
) -> list[TrialResult]:
    """Ask, evaluate and tell ``trials`` times; a non-finite value fails its trial."""
    distributions: dict[str, BaseDistribution] = space_to_optuna(space)
    results = []
    for _ in range(trials):
        trial = study.ask(distributions)
        value = problem.objective(trial.params, epochs)
        if math.isfinite(value):
            study.tell(trial, value)
        else:
            study.tell(trial, state=TrialState.FAIL)
        finite = value if math.isfinite(value) else None
        results.append(TrialResult(dict(trial.params), finite, stage))
    return results


def _score(result: TrialResult) -> float:
    return result.value if result.value is not None else math.inf


def _epochs_cost(problem: Problem, epochs: int) -> int:
    return epochs if problem.uses_fidelity else 0


def _holds_optimum(problem: Problem, space: dict[str, Param]) -> bool | None:
    """Whether ``space`` contains one of the problem's known global minimizers."""
    if not problem.minimizers:
        return None
    return any(within(space, minimizer) for minimizer in problem.minimizers)
