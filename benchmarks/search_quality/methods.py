"""The search methods, each run in-process with Optuna's ask-and-tell on one problem.

- ``coarse-to-fine``: flywheel's default plan, :meth:`SearchSpec.resolved_stages`, run stage by
  stage as ``flywheel.runtime.search`` does: a later stage with a ``narrow`` rule searches the
  space narrowed by :func:`flywheel.narrowing.narrow` around the earlier stage's trials, its
  study is warm-started with the earlier trials inside its space (the runtime's own
  ``_warm_start``), and its sampler and distributions are flywheel's (``stage_to_sampler``,
  ``space_to_optuna``). Trials run one at a time, without Ray Tune or a journal; on the digits
  MLP the coarse stage trains a third of the epochs but runs every trial to the end (the
  runtime's ASHA would stop some of them early: the benchmark spends more epochs than flywheel).
- The single-stage peers, one Optuna study each, as a user of plain Optuna would run them:
  ``tpe`` (a default ``TPESampler``), ``tpe-mv`` (``multivariate=True``), ``tpe-indep``
  (``multivariate=False``), ``gp`` (``GPSampler``), ``cmaes`` (``CmaEsSampler``) and ``random``
  (``RandomSampler``). In Optuna 5 a ``TPESampler`` whose ``multivariate`` is unset is
  multivariate on a single objective (``TPESampler._is_multivariate``), so ``tpe`` and
  ``tpe-mv`` are the same sampler; ``tpe-indep`` is the independent TPE, Optuna 4's default.
- variants of coarse-to-fine (:data:`VARIANTS`), to measure a change to the plan.

The coarse stage's random sampler is seeded like the ``random`` method, so on a seed both draw
the same first points (common random numbers: their difference is less noisy).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, CmaEsSampler, GPSampler, RandomSampler, TPESampler
from optuna.trial import TrialState

from benchmarks.search_quality.problems import Problem
from flywheel.narrowing import (
    TrialResult,
    TrustRegion,
    TrustRule,
    narrow,
    next_region,
    region_space,
    within,
)
from flywheel.runtime.optuna_space import space_to_optuna, stage_to_sampler

# The runtime's own warm start, imported rather than copied so the benchmark measures what
# flywheel runs; it only touches the Optuna study.
from flywheel.runtime.search import _warm_start
from flywheel.specs.search import Narrowing, Param, SearchSpec, Stage, bayesian_sampler

#: The single-stage peers: plain Optuna samplers by method name, each built from a seed.
PEERS: dict[str, Callable[[int], BaseSampler]] = {
    "tpe": lambda seed: TPESampler(seed=seed),
    "tpe-mv": lambda seed: TPESampler(seed=seed, multivariate=True),
    "tpe-indep": lambda seed: TPESampler(seed=seed, multivariate=False),
    "gp": lambda seed: GPSampler(seed=seed),
    "cmaes": lambda seed: CmaEsSampler(seed=seed, warn_independent_sampling=False),
    "random": lambda seed: RandomSampler(seed=seed),
}
#: Peers that are another peer under a second name in this Optuna (not run by default).
SAME_AS: dict[str, str] = {"tpe-mv": "tpe"}
COARSE_TO_FINE = "coarse-to-fine"
#: The share of the budget in the coarse stage of flywheel's previous default plan.
PREVIOUS_COARSE_SHARE = 0.2
#: The narrowing rule of flywheel's previous default plan.
PREVIOUS_RULE = Narrowing(top_fraction=0.25, margin=0.1)


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
    coarse_share: float | None = None,
    sampler: Literal["tpe", "gp"] | None = None,
    rule: Narrowing | None = None,
) -> list[Stage]:
    """The default plan with another coarse stage size, Bayesian sampler or narrowing rule.

    ``coarse_share`` None keeps flywheel's coarse stage, a share gives it that share of the
    budget (at least 10 trials, or half a smaller budget); ``sampler`` None keeps the one
    flywheel picks for the space; ``rule`` narrows the fine stage's space (None: the whole
    space, as flywheel does).
    """
    coarse, fine = default_plan(problem, budget)
    if coarse_share is not None:
        trials = min(max(1, min(10, budget // 2), round(budget * coarse_share)), budget - 1)
        coarse = coarse.model_copy(update={"trials": trials})
        fine = fine.model_copy(update={"trials": budget - trials})
    if sampler is not None:
        fine = fine.model_copy(update={"sampler": sampler})
    return [coarse, fine.model_copy(update={"narrow": rule})]


#: Coarse-to-fine plans by method name: flywheel's default and the variants measured beside it.
VARIANTS: dict[str, PlanFn] = {
    COARSE_TO_FINE: default_plan,
    # flywheel's previous default: 20% of the budget random, then TPE in a box cut around the
    # best quarter of the coarse trials.
    "c2f-narrow": functools.partial(
        modified_plan, coarse_share=PREVIOUS_COARSE_SHARE, sampler="tpe", rule=PREVIOUS_RULE
    ),
    # today's plan with the previous plan's larger coarse stage
    "c2f-share": functools.partial(modified_plan, coarse_share=PREVIOUS_COARSE_SHARE),
    # today's plan without choosing the sampler by the space: always TPE, or always a GP
    "c2f-tpe": functools.partial(modified_plan, sampler="tpe"),
    "c2f-gp": functools.partial(modified_plan, sampler="gp"),
}

#: Trust-region search: the default plan's coarse stage, then the Bayesian sampler flywheel picks
#: for the space in batches of this many trials, each inside the trust region around the best
#: trial so far (:func:`flywheel.narrowing.next_region`), warm-started with every trial inside it.
TRUST_REGION = "c2f-trust-region"
TRUST_BATCH = 5

ALL_METHODS = (*VARIANTS, TRUST_REGION, *PEERS)


def budget_independent(problem: Problem, method: str, budgets: Sequence[int]) -> bool:
    """Whether ``method``'s first n trials on ``problem`` are the same at every budget, so that
    one run at the largest budget gives every smaller one: true of the single-stage peers, and of
    a plan whose stages differ between budgets only in the last stage's trials."""
    if method in PEERS or method == TRUST_REGION:
        return True
    plan = VARIANTS[method]
    longest = plan(problem, max(budgets))
    for budget in budgets:
        stages = plan(problem, budget)
        if len(stages) != len(longest) or stages[:-1] != longest[:-1]:
            return False
        if stages[-1] != longest[-1].model_copy(update={"trials": stages[-1].trials}):
            return False
    return True


def run_method(problem: Problem, method: str, budget: int, seed: int) -> Trace:
    """Run ``method`` for ``budget`` trials of ``problem`` with ``seed``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    if method in VARIANTS:
        scores, sizes, holds, epochs = _coarse_to_fine(problem, VARIANTS[method], budget, seed)
    elif method == TRUST_REGION:
        scores, sizes, holds, epochs = _trust_region(problem, budget, seed)
    else:
        if method not in PEERS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(ALL_METHODS)}")
        scores, epochs = _single_stage(problem, PEERS[method](seed), budget)
        sizes, holds = (budget,), None
    seconds = time.perf_counter() - started
    return Trace(problem.name, method, seed, budget, scores, sizes, holds, epochs, seconds)


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


def _trust_region(
    problem: Problem, budget: int, seed: int
) -> tuple[tuple[float, ...], tuple[int, ...], bool | None, int]:
    """The default plan's coarse stage, then batches in a TuRBO-style trust region.

    Every batch is a new study over the region's space, warm-started with every earlier trial
    inside it (the runtime's ``_warm_start``), so the sampler models the region's data only.
    ``box_holds_optimum`` says whether the last region held a global minimizer. Problems with
    fidelity are run at full fidelity after the coarse stage, like the default plan.
    """
    coarse = default_plan(problem, budget)[0].model_copy(update={"seed": seed})
    study = optuna.create_study(sampler=stage_to_sampler(coarse, problem.space))
    epochs = min(coarse.fidelity.max_epochs or problem.full_epochs, problem.full_epochs)
    history = _run_trials(study, problem, problem.space, coarse.trials, epochs, "coarse")
    full = not problem.uses_fidelity or epochs == problem.full_epochs
    scores = [_score(r) if full else math.inf for r in history]
    epochs_spent = coarse.trials * _epochs_cost(problem, epochs)
    rule = TrustRule()
    region = TrustRegion(rule.initial_length)
    space: dict[str, Param] = dict(problem.space)
    stage = Stage(name="fine", sampler=bayesian_sampler(problem.space), trials=TRUST_BATCH)
    for batch_number, start in enumerate(range(coarse.trials, budget, TRUST_BATCH)):
        center = min((t for t in history if t.completed), key=_score, default=None)
        space = (
            problem.space
            if center is None
            else region_space(problem.space, center.params, region.length)
        )
        size = min(TRUST_BATCH, budget - start)
        seeded = stage.model_copy(update={"seed": seed + 1 + batch_number, "trials": size})
        study = optuna.create_study(sampler=stage_to_sampler(seeded, space))
        _warm_start(study, space, history)
        batch = _run_trials(study, problem, space, size, problem.full_epochs, "fine")
        history += batch
        scores += [_score(r) for r in batch]
        epochs_spent += size * _epochs_cost(problem, problem.full_epochs)
        region = next_region(region, [r.value for r in batch], "min", rule)
    return (
        tuple(scores),
        (coarse.trials, budget - coarse.trials),
        _holds_optimum(problem, space),
        epochs_spent,
    )


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
