"""The search spec: every mistake reported at its line, and the default coarse-to-fine plan."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flywheel.errors import SpecError
from flywheel.specs import (
    AshaScheduler,
    ChoiceParam,
    ExperimentSpec,
    Fidelity,
    FifoScheduler,
    IntParam,
    LogUniformParam,
    Narrowing,
    SearchSpec,
    Stage,
    UniformParam,
    load_spec,
)

MINIMAL = """\
name: digits
team: vision
task:
  module: task
"""

#: The start of a search section, up to its space (lines 5-7 after MINIMAL).
HEAD = "search:\n  budget: 10\n  space:\n"

#: A valid space, for cases about the rest of the search section.
SPACE = "  space:\n    hparams.x: {type: uniform, low: 0, high: 1}\n"

KEYS = (
    "train.optimizer.lr, train.optimizer.weight_decay, train.optimizer.momentum, "
    "train.batch_size, train.epochs, train.grad_clip_norm"
)
TYPES = "'uniform', 'loguniform', 'int' or 'choice'"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    """The problems ``load_spec`` reports, as the lines a user sees."""
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return [str(p) for p in info.value.problems]


def search(data: dict[str, object]) -> SearchSpec:
    return SearchSpec.model_validate(data)


# Each case: the spec text (after MINIMAL, which takes lines 1-4) and the expected problems.
INVALID_AFTER_MINIMAL = {
    "a misspelled distribution type, at the line of `type`": (
        HEAD + "    train.optimizer.lr:\n      type: logunifrom\n"
        "      low: 1.0e-4\n      high: 0.1\n",
        [f"9: search.space['train.optimizer.lr'].type: input should be {TYPES} (got 'logunifrom')"],
    ),
    "a distribution without a type": (
        HEAD + "    hparams.x: {low: 1, high: 2}\n",
        [f"8: search.space['hparams.x'].type: field required; one of {TYPES}"],
    ),
    "a number instead of a distribution": (
        HEAD + "    hparams.x: 0.1\n",
        ["8: search.space['hparams.x']: input should be a mapping of field: value (got 0.1)"],
    ),
    "reversed bounds": (
        HEAD + "    hparams.x: {type: uniform, low: 1, high: 0.1}\n",
        ["8: search.space['hparams.x']: low must be below high (got low=1, high=0.1)"],
    ),
    "equal int bounds": (
        HEAD + "    hparams.x: {type: int, low: 4, high: 4}\n",
        ["8: search.space['hparams.x']: low must be below high (got low=4, high=4)"],
    ),
    "a log range from 0": (
        HEAD + "    train.optimizer.weight_decay: {type: loguniform, low: 0, high: 0.1}\n",
        ["8: search.space['train.optimizer.weight_decay']: a log scale needs low > 0 (got low=0)"],
    ),
    "a log int range across 0": (
        HEAD + "    hparams.x: {type: int, low: -1, high: 5, log: true}\n",
        ["8: search.space['hparams.x']: a log scale needs low > 0 (got low=-1)"],
    ),
    "a misspelled bound": (
        HEAD + "    hparams.x: {type: uniform, low: 0, hihg: 1}\n",
        [
            "8: search.space['hparams.x'].high: field required",
            "8: search.space['hparams.x'].hihg: unknown field; did you mean 'high'?",
        ],
    ),
    "a bound on a choice": (
        HEAD + "    hparams.x: {type: choice, values: [1, 2], low: 1}\n",
        ["8: search.space['hparams.x'].low: unknown field; known fields: type, values"],
    ),
    "an infinite bound": (
        HEAD + "    hparams.x: {type: uniform, low: 0, high: .inf}\n",
        ["8: search.space['hparams.x'].high: input should be a finite number (got inf)"],
    ),
    "a choice without values": (
        HEAD + "    hparams.act: {type: choice, values: []}\n",
        ["8: search.space['hparams.act'].values: a choice needs at least one value"],
    ),
    "a choice listing a value twice": (
        HEAD + "    hparams.act: {type: choice, values: [relu, gelu, relu]}\n",
        ["8: search.space['hparams.act'].values: 'relu' is listed twice; list each value once"],
    ),
    "a choice listing 1 and 1.0": (
        HEAD + "    hparams.n: {type: choice, values: [1, 1.0]}\n",
        ["8: search.space['hparams.n'].values: 1.0 is listed twice; list each value once"],
    ),
    "a list as a choice value": (
        HEAD + "    hparams.n: {type: choice, values: [[1, 2]]}\n",
        ["8: search.space['hparams.n'].values[0]: input should be a boolean, number or string"],
    ),
    "a misspelled train field": (
        HEAD + "    train.optimzer.lr: {type: loguniform, low: 1.0e-4, high: 0.1}\n",
        [
            "8: search.space['train.optimzer.lr']: unknown search parameter; "
            "did you mean 'train.optimizer.lr'?"
        ],
    ),
    "a parameter that is not a path": (
        HEAD + "    lr: {type: loguniform, low: 1.0e-4, high: 0.1}\n",
        [
            "8: search.space.lr: unknown search parameter; use hparams.<name>, "
            f"data.params.<name> or one of {KEYS}"
        ],
    ),
    "a train field a search cannot set": (
        HEAD + "    train.precision: {type: choice, values: [fp32]}\n",
        [
            "8: search.space['train.precision']: unknown search parameter; use hparams.<name>, "
            f"data.params.<name> or one of {KEYS}"
        ],
    ),
    "hparams without a name": (
        HEAD + "    hparams.: {type: uniform, low: 0, high: 1}\n",
        [
            "8: search.space['hparams.']: unknown search parameter; use hparams.<name>, "
            f"data.params.<name> or one of {KEYS}"
        ],
    ),
    "an empty space": (
        "search:\n  budget: 10\n  space: {}\n",
        [
            "7: search.space: the search space is empty; add a parameter, such as "
            "`train.optimizer.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}`"
        ],
    ),
    "no space": (
        "search:\n  budget: 10\n",
        ["5: search.space: field required"],
    ),
    "a fractional batch size range": (
        HEAD + "    train.batch_size: {type: uniform, low: 8, high: 64}\n",
        [
            "8: search.space['train.batch_size']: train.batch_size takes whole numbers; "
            "use `type: int` or a choice of integers"
        ],
    ),
    "a fractional epoch count among the choices": (
        HEAD + "    train.epochs: {type: choice, values: [5, 7.5]}\n",
        ["8: search.space['train.epochs'].values: train.epochs takes whole numbers, not 7.5"],
    ),
    "a word as a learning rate": (
        HEAD + "    train.optimizer.lr: {type: choice, values: [0.1, fast, true]}\n",
        [
            "8: search.space['train.optimizer.lr'].values: train.optimizer.lr takes numbers, "
            "not 'fast' or True"
        ],
    ),
    "batch sizes that do not split over the workers": (
        "train:\n  batch_size: 16\n  scaling: {num_workers: 4}\nsearch:\n  budget: 10\n"
        "  space:\n    train.batch_size: {type: choice, values: [16, 30, 64, 66]}\n",
        [
            "11: search.space['train.batch_size'].values: batch sizes must be multiples of 4, "
            "the number of workers, to split evenly; not 30, 66"
        ],
    ),
    "a batch size range over several workers": (
        "train:\n  batch_size: 16\n  scaling: {num_workers: 4}\nsearch:\n  budget: 10\n"
        "  space:\n    train.batch_size: {type: int, low: 8, high: 64}\n",
        [
            "11: search.space['train.batch_size']: with 4 workers, search batch sizes as a "
            "choice of multiples of 4, so that every batch splits evenly"
        ],
    ),
    "neither budget nor stages": (
        "search:\n" + SPACE,
        ["5: search: give a `budget` for the default plan, or the `stages`"],
    ),
    "a budget of one trial": (
        "search:\n  budget: 1\n" + SPACE,
        ["6: search.budget: input should be greater than or equal to 2 (got 1)"],
    ),
    "stages that do not add up to the budget": (
        "search:\n  budget: 10\n" + SPACE + "  stages:\n"
        "    - {name: coarse, sampler: random, trials: 3}\n"
        "    - {name: fine, sampler: tpe, trials: 3, narrow: {top_k: 2}}\n",
        [
            "6: search.budget: the stages' trials add up to 6, not to the budget 10; "
            "change one of them, or leave the budget out"
        ],
    ),
    "an empty list of stages": (
        "search:\n" + SPACE + "  stages: []\n",
        ["8: search.stages: list should have at least 1 item after validation, not 0"],
    ),
    "a stage of zero trials": (
        "search:\n" + SPACE + "  stages:\n"
        "    - {name: coarse, sampler: random, trials: 3}\n"
        "    - name: fine\n      sampler: tpe\n      trials: 0\n",
        ["12: search.stages[1].trials: input should be greater than or equal to 1 (got 0)"],
    ),
    "a misspelled stage field": (
        "search:\n" + SPACE + "  stages:\n"
        "    - name: coarse\n      sampler: random\n      trials: 3\n      fidelty: {}\n",
        ["12: search.stages[0].fidelty: unknown field; did you mean 'fidelity'?"],
    ),
    "an unknown sampler": (
        "search:\n" + SPACE + "  stages:\n    - {name: coarse, sampler: bayes, trials: 3}\n",
        [
            "9: search.stages[0].sampler: input should be 'random', 'sobol', 'grid', 'tpe', "
            "'gp' or 'cmaes' (got 'bayes')"
        ],
    ),
    "a stage name with a capital": (
        "search:\n" + SPACE + "  stages:\n    - {name: Coarse, sampler: random, trials: 3}\n",
        [
            "9: search.stages[0].name: must be lower case letters, digits and dashes, start and "
            "end with a letter or digit, and be at most 63 characters (got 'Coarse')"
        ],
    ),
    "two stages of one name": (
        "search:\n" + SPACE + "  stages:\n"
        "    - {name: coarse, sampler: random, trials: 3}\n"
        "    - name: coarse\n      sampler: tpe\n      trials: 3\n",
        [
            "10: search.stages[1].name: another stage is named 'coarse'; "
            "give each stage its own name"
        ],
    ),
    "narrowing in the first stage": (
        "search:\n" + SPACE + "  stages:\n"
        "    - name: coarse\n      sampler: random\n      trials: 3\n      narrow: {top_k: 2}\n",
        [
            "12: search.stages[0].narrow: the first stage has no earlier trials to narrow "
            "around; remove `narrow`"
        ],
    ),
    "a grid over a range": (
        "search:\n  space:\n    hparams.x: {type: uniform, low: 0, high: 1}\n"
        "    hparams.act: {type: choice, values: [relu, gelu]}\n"
        "    hparams.n: {type: int, low: 1, high: 4}\n"
        "  stages:\n    - name: grid\n      sampler: grid\n      trials: 6\n",
        [
            "12: search.stages[0].sampler: the grid sampler needs every parameter to be a "
            "choice; not a choice: hparams.x, hparams.n"
        ],
    ),
    "narrowing with both rules": (
        "search:\n" + SPACE + "  stages:\n"
        "    - {name: coarse, sampler: random, trials: 3}\n"
        "    - name: fine\n      sampler: tpe\n      trials: 3\n"
        "      narrow: {top_k: 2, top_fraction: 0.5}\n",
        ["13: search.stages[1].narrow: give exactly one of top_fraction or top_k"],
    ),
    "narrowing with no rule": (
        "search:\n" + SPACE + "  stages:\n"
        "    - {name: coarse, sampler: random, trials: 3}\n"
        "    - {name: fine, sampler: tpe, trials: 3, narrow: {margin: 0.2}}\n",
        ["10: search.stages[1].narrow: give exactly one of top_fraction or top_k"],
    ),
    "a top fraction above 1 and a negative margin": (
        "search:\n" + SPACE + "  stages:\n"
        "    - {name: coarse, sampler: random, trials: 3}\n"
        "    - name: fine\n      sampler: tpe\n      trials: 3\n      narrow:\n"
        "        top_fraction: 1.5\n        margin: -0.1\n",
        [
            "14: search.stages[1].narrow.top_fraction: input should be less than or equal to 1 "
            "(got 1.5)",
            "15: search.stages[1].narrow.margin: input should be greater than or equal to 0 "
            "(got -0.1)",
        ],
    ),
    "a misspelled scheduler type": (
        "search:\n" + SPACE + "  stages:\n"
        "    - name: coarse\n      sampler: random\n      trials: 3\n"
        "      scheduler:\n        type: hyperband\n",
        ["13: search.stages[0].scheduler.type: input should be 'fifo' or 'asha' (got 'hyperband')"],
    ),
    "an ASHA reduction factor of 1": (
        "search:\n" + SPACE + "  stages:\n"
        "    - name: coarse\n      sampler: random\n      trials: 3\n"
        "      scheduler: {type: asha, reduction_factor: 1}\n",
        ["12: search.stages[0].scheduler.reduction_factor: input should be greater than 1 (got 1)"],
    ),
    "an ASHA setting for FIFO": (
        "search:\n" + SPACE + "  stages:\n"
        "    - name: coarse\n      sampler: random\n      trials: 3\n"
        "      scheduler: {type: fifo, grace_period: 2}\n",
        ["12: search.stages[0].scheduler.grace_period: unknown field; known fields: type"],
    ),
    "an ASHA grace period past the stage's epochs": (
        "search:\n" + SPACE + "  stages:\n"
        "    - name: coarse\n      sampler: random\n      trials: 3\n"
        "      fidelity: {max_epochs: 2}\n"
        "      scheduler:\n        type: asha\n        grace_period: 3\n",
        [
            "15: search.stages[0].scheduler.grace_period: grace_period 3 is longer than the "
            "stage's fidelity.max_epochs 2; make it at most 2"
        ],
    ),
    "a fidelity of no data and no epochs": (
        "search:\n" + SPACE + "  stages:\n"
        "    - name: coarse\n      sampler: random\n      trials: 3\n"
        "      fidelity:\n        max_epochs: 0\n        data_fraction: 0\n",
        [
            "13: search.stages[0].fidelity.max_epochs: input should be greater than or equal "
            "to 1 (got 0)",
            "14: search.stages[0].fidelity.data_fraction: input should be greater than 0 (got 0)",
        ],
    ),
    "an unknown mode": (
        "search:\n  budget: 10\n  mode: minimize\n" + SPACE,
        ["7: search.mode: input should be 'min' or 'max' (got 'minimize')"],
    ),
    "a data fraction above 1": (
        "data:\n  fraction: 1.5\n",
        ["6: data.fraction: input should be less than or equal to 1 (got 1.5)"],
    ),
}


@pytest.mark.parametrize(
    ("text", "expected"), INVALID_AFTER_MINIMAL.values(), ids=INVALID_AFTER_MINIMAL.keys()
)
def test_invalid_search_is_reported_with_file_line_and_path(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = write(tmp_path, MINIMAL + text)
    assert problems(path) == [f"{path}:{message}" for message in expected]


def test_a_full_search_loads_with_every_value(tmp_path: Path) -> None:
    text = MINIMAL + textwrap.dedent(
        """\
        train:
          epochs: 30
          batch_size: 64
          scaling: {num_workers: 2}
        search:
          metric: val_accuracy
          mode: max
          budget: 20
          space:
            train.optimizer.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}
            train.batch_size: {type: choice, values: [32, 64, 128]}
            hparams.hidden: {type: int, low: 16, high: 512, log: true}
            hparams.dropout: {type: uniform, low: 0.0, high: 0.5}
            data.params.augment: {type: choice, values: [true, false]}
          stages:
            - name: coarse
              sampler: sobol
              trials: 12
              max_concurrent: 4
              fidelity: {max_epochs: 5, data_fraction: 0.25}
              scheduler: {type: asha, grace_period: 2, reduction_factor: 2}
              seed: 7
            - name: fine
              sampler: gp
              trials: 8
              narrow: {top_k: 4, margin: 0.2, min_trials: 5}
        """
    )
    spec = load_spec(write(tmp_path, text))
    assert spec.search is not None
    assert (spec.search.metric, spec.search.mode, spec.search.budget) == ("val_accuracy", "max", 20)
    assert spec.search.space == {
        "train.optimizer.lr": LogUniformParam(type="loguniform", low=1e-4, high=0.1),
        "train.batch_size": ChoiceParam(type="choice", values=[32, 64, 128]),
        "hparams.hidden": IntParam(type="int", low=16, high=512, log=True),
        "hparams.dropout": UniformParam(type="uniform", low=0.0, high=0.5),
        "data.params.augment": ChoiceParam(type="choice", values=[True, False]),
    }
    coarse, fine = spec.search.resolved_stages(spec.train.epochs)
    assert coarse == Stage(
        name="coarse",
        sampler="sobol",
        trials=12,
        max_concurrent=4,
        fidelity=Fidelity(max_epochs=5, data_fraction=0.25),
        scheduler=AshaScheduler(type="asha", grace_period=2, reduction_factor=2.0),
        seed=7,
    )
    assert fine.narrow == Narrowing(top_k=4, margin=0.2, min_trials=5)
    assert (fine.sampler, fine.max_concurrent, fine.fidelity, fine.scheduler) == (
        "gp",
        2,
        Fidelity(),
        FifoScheduler(type="fifo"),
    )


def test_a_spec_without_a_search_trains_once_on_all_the_data(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.search is None
    assert spec.data.fraction == 1.0


def test_the_default_plan_for_a_budget() -> None:
    spec = search({"budget": 40, "space": {"hparams.x": {"type": "uniform", "low": 0, "high": 1}}})
    assert spec.resolved_stages(full_epochs=30) == [
        Stage(
            name="coarse",
            sampler="random",
            trials=10,
            max_concurrent=2,
            fidelity=Fidelity(max_epochs=10, data_fraction=1.0),
            scheduler=AshaScheduler(type="asha", grace_period=1, reduction_factor=3.0),
            narrow=None,
        ),
        Stage(
            name="fine",
            sampler="gp",
            trials=30,
            max_concurrent=2,
            fidelity=Fidelity(max_epochs=None, data_fraction=1.0),
            scheduler=FifoScheduler(type="fifo"),
            narrow=None,
        ),
    ]


@pytest.mark.parametrize(
    ("space", "sampler"),
    [
        ({"hparams.x": {"type": "uniform", "low": 0, "high": 1}}, "gp"),
        (
            {
                "train.optimizer.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
                "hparams.layers": {"type": "int", "low": 1, "high": 4},
            },
            "gp",
        ),
        (
            {f"hparams.x{i}": {"type": "uniform", "low": 0, "high": 1} for i in range(10)},
            "gp",
        ),
        (
            {f"hparams.x{i}": {"type": "uniform", "low": 0, "high": 1} for i in range(11)},
            "tpe",
        ),
        (
            {
                "hparams.x": {"type": "uniform", "low": 0, "high": 1},
                "hparams.act": {"type": "choice", "values": ["relu", "gelu"]},
            },
            "tpe",
        ),
    ],
    ids=["one-float", "log-and-int", "ten-numbers", "eleven-numbers", "with-a-choice"],
)
def test_the_default_plan_picks_its_bayesian_sampler_by_the_space(
    space: dict[str, object], sampler: str
) -> None:
    spec = search({"budget": 30, "space": space})
    assert spec.resolved_stages(full_epochs=3)[-1].sampler == sampler


@pytest.mark.parametrize(
    ("budget", "full_epochs", "coarse_trials", "fine_trials", "coarse_epochs"),
    [
        (2, 1, 1, 1, 1),
        (3, 2, 1, 2, 1),
        (5, 3, 2, 3, 1),
        (10, 10, 5, 5, 3),
        (19, 10, 9, 10, 3),
        (25, 9, 10, 15, 3),
        (41, 30, 10, 31, 10),
        (50, 30, 10, 40, 10),
        (100, 100, 10, 90, 33),
        (1000, 30, 10, 990, 10),
    ],
)
def test_the_default_plan_splits_every_budget_into_two_real_stages(
    budget: int, full_epochs: int, coarse_trials: int, fine_trials: int, coarse_epochs: int
) -> None:
    spec = search({"budget": budget, "space": {"hparams.x": {"type": "int", "low": 0, "high": 9}}})
    coarse, fine = spec.resolved_stages(full_epochs)
    assert (coarse.trials, fine.trials) == (coarse_trials, fine_trials)
    assert coarse.fidelity.max_epochs == coarse_epochs
    assert fine.narrow is None  # narrowing lost the optimum too often to be the default


def test_given_stages_are_the_plan_and_may_agree_with_the_budget() -> None:
    stages = [
        {"name": "wide", "sampler": "random", "trials": 5},
        {"name": "narrow", "sampler": "cmaes", "trials": 5, "narrow": {"top_fraction": 0.5}},
    ]
    space = {"hparams.x": {"type": "uniform", "low": 0, "high": 1}}
    with_budget = search({"budget": 10, "space": space, "stages": stages})
    without = search({"space": space, "stages": stages})
    assert with_budget.resolved_stages(30) == without.resolved_stages(30)
    assert [stage.name for stage in without.resolved_stages(30)] == ["wide", "narrow"]


def test_a_grid_over_choices_is_valid() -> None:
    space = {"hparams.act": {"type": "choice", "values": ["relu", "gelu"]}}
    spec = search({"space": space, "stages": [{"name": "g", "sampler": "grid", "trials": 2}]})
    assert spec.resolved_stages(10)[0].sampler == "grid"


def test_the_default_plan_needs_at_least_one_epoch() -> None:
    spec = search({"budget": 4, "space": {"hparams.x": {"type": "int", "low": 0, "high": 9}}})
    with pytest.raises(ValueError, match=r"^full_epochs must be at least 1 \(got 0\)$"):
        spec.resolved_stages(0)


def test_a_spec_with_a_search_survives_a_json_round_trip() -> None:
    """A job plan carries the spec as JSON: the union members and choice types must survive."""
    spec = ExperimentSpec.model_validate(
        {
            "name": "digits",
            "team": "vision",
            "task": {"module": "task"},
            "search": {
                "budget": 4,
                "space": {
                    "hparams.n": {"type": "choice", "values": [1, 1.5, "two", True]},
                    "hparams.lr": {"type": "loguniform", "low": 1e-4, "high": 0.1},
                },
            },
        }
    )
    again = ExperimentSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert again.search is not None
    values = again.search.space["hparams.n"]
    assert isinstance(values, ChoiceParam)
    assert [type(v) for v in values.values] == [int, float, str, bool]
