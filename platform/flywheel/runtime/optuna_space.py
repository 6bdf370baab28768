"""Search specs as Optuna objects: distributions for the space, a sampler for each stage."""

from __future__ import annotations

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import (
    BaseSampler,
    CmaEsSampler,
    GPSampler,
    GridSampler,
    QMCSampler,
    RandomSampler,
    TPESampler,
)

from flywheel.specs.search import ChoiceParam, IntParam, LogUniformParam, Param, Stage, UniformParam


def space_to_optuna(space: dict[str, Param]) -> dict[str, BaseDistribution]:
    """One Optuna distribution per parameter of the space."""
    return {name: param_to_optuna(param) for name, param in space.items()}


def param_to_optuna(param: Param) -> BaseDistribution:
    if isinstance(param, UniformParam):
        return FloatDistribution(param.low, param.high)
    if isinstance(param, LogUniformParam):
        return FloatDistribution(param.low, param.high, log=True)
    if isinstance(param, IntParam):
        return IntDistribution(param.low, param.high, log=param.log)
    assert isinstance(param, ChoiceParam)
    return CategoricalDistribution(list(param.values))


def stage_to_sampler(stage: Stage, space: dict[str, Param]) -> BaseSampler:
    """The Optuna sampler a stage names, seeded by the stage's seed."""
    seed = stage.seed
    if stage.sampler == "random":
        return RandomSampler(seed=seed)
    if stage.sampler == "sobol":
        return QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    if stage.sampler == "grid":
        grid = {name: list(p.values) for name, p in space.items() if isinstance(p, ChoiceParam)}
        return GridSampler(grid, seed=seed)
    if stage.sampler == "tpe":
        return TPESampler(seed=seed, multivariate=True, n_startup_trials=min(10, stage.trials))
    if stage.sampler == "gp":
        return GPSampler(seed=seed)
    return CmaEsSampler(seed=seed, warn_independent_sampling=False)
