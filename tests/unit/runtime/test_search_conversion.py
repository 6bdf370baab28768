"""Spec -> Optuna and spec -> Tune conversions, and picking the best trial."""

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import (
    CmaEsSampler,
    GPSampler,
    GridSampler,
    QMCSampler,
    RandomSampler,
    TPESampler,
)
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

from flywheel.errors import FlywheelError
from flywheel.narrowing import TrialResult
from flywheel.runtime.optuna_space import space_to_optuna, stage_to_sampler
from flywheel.runtime.search import _scheduler, best_trial
from flywheel.specs.search import SearchSpec, Stage

SEARCH = SearchSpec.model_validate(
    {
        "space": {
            "train.optimizer.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
            "hparams.dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
            "hparams.hidden": {"type": "int", "low": 16, "high": 256, "log": True},
            "hparams.layers": {"type": "int", "low": 1, "high": 4},
            "train.batch_size": {"type": "choice", "values": [32, 64]},
        },
        "budget": 10,
    }
)


def test_space_to_optuna_keeps_types_bounds_and_scales() -> None:
    assert space_to_optuna(SEARCH.space) == {
        "train.optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True),
        "hparams.dropout": FloatDistribution(0.0, 0.5),
        "hparams.hidden": IntDistribution(16, 256, log=True),
        "hparams.layers": IntDistribution(1, 4),
        "train.batch_size": CategoricalDistribution([32, 64]),
    }


@pytest.mark.parametrize(
    ("sampler", "kind"),
    [
        ("random", RandomSampler),
        ("sobol", QMCSampler),
        ("tpe", TPESampler),
        ("gp", GPSampler),
        ("cmaes", CmaEsSampler),
    ],
)
def test_each_stage_sampler_maps_to_its_optuna_sampler(sampler: str, kind: type) -> None:
    stage = Stage(name="s", sampler=sampler, trials=3, seed=1)  # type: ignore[arg-type]
    assert isinstance(stage_to_sampler(stage, SEARCH.space), kind)


def test_grid_sampler_gets_every_choice() -> None:
    space = {"train.batch_size": SEARCH.space["train.batch_size"]}
    stage = Stage(name="g", sampler="grid", trials=2)
    sampler = stage_to_sampler(stage, space)
    assert isinstance(sampler, GridSampler)
    assert sampler._search_space == {"train.batch_size": [32, 64]}


def test_default_plan_schedulers_convert_to_tune() -> None:
    coarse, fine = SEARCH.resolved_stages(full_epochs=9)
    asha = _scheduler(coarse, max_epochs=3)
    assert isinstance(asha, AsyncHyperBandScheduler)
    assert asha._max_t == 3 and asha._time_attr == "epoch"
    assert isinstance(_scheduler(fine, max_epochs=9), FIFOScheduler)


def test_best_trial_prefers_the_last_stage_and_respects_the_mode() -> None:
    coarse = [TrialResult({"x": 1}, 0.1, "coarse"), TrialResult({"x": 2}, None, "coarse")]
    fine = [TrialResult({"x": 3}, 0.5, "fine"), TrialResult({"x": 4}, 0.3, "fine")]
    assert best_trial(coarse + fine, fine, "min").params == {"x": 4}
    assert best_trial(coarse + fine, fine, "max").params == {"x": 3}
    failed = [TrialResult({"x": 5}, None, "fine")]
    assert best_trial(coarse + failed, failed, "min").params == {"x": 1}


def test_no_completed_trial_is_an_error() -> None:
    with pytest.raises(FlywheelError, match="no search trial completed"):
        best_trial([], [], "min")
