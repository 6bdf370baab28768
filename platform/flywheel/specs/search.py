"""The search spec: which settings to search, over what ranges, in which stages.

A search runs in stages, coarse to fine. Each stage samples ``trials`` assignments of the space
(random, Sobol, grid, or Bayesian: TPE, GP, CMA-ES), trains each one at the stage's fidelity, and
a later stage may narrow the space around the best trials so far (:mod:`flywheel.narrowing`).
Given only a ``budget``, :meth:`SearchSpec.resolved_stages` derives the default plan.

Pure pydantic models: Ray Tune and Optuna run the search in :mod:`flywheel.runtime`.
"""

from __future__ import annotations

import difflib
import math
from typing import Annotated, Literal, TypeGuard

from pydantic import AfterValidator, Field, field_validator, model_validator

from flywheel.specs.base import SLUG_PATTERN, NestedValueError, Scalar, StrictModel

#: The fields of the ``train`` section a search may set, by space key, with the type each takes.
TRAIN_KEYS: dict[str, type[int] | type[float]] = {
    "train.optimizer.lr": float,
    "train.optimizer.weight_decay": float,
    "train.optimizer.momentum": float,
    "train.batch_size": int,
    "train.epochs": int,
    "train.grad_clip_norm": float,
}

#: Space keys that set a free-form value: ``hparams.<name>`` and ``data.params.<name>``.
FREE_PREFIXES = ("hparams.", "data.params.")

#: The default plan's coarse stage: this many random trials (half a smaller budget), the same
#: number Optuna's Bayesian samplers draw at random before they model. Measured in
#: docs/benchmarks.md against a coarse stage of 20% of the budget.
COARSE_TRIALS = 10
#: The default plan's Bayesian stage is a Gaussian process when the space has at most this many
#: parameters, all numeric; multivariate TPE otherwise (docs/benchmarks.md measures both).
GP_MAX_PARAMS = 10


def check_space_key(key: str) -> str:
    """Return ``key`` if a search may set it; raise ValueError naming the allowed forms if not."""
    if key in TRAIN_KEYS or any(key.startswith(p) and key != p for p in FREE_PREFIXES):
        return key
    close = difflib.get_close_matches(key, list(TRAIN_KEYS), n=1)
    if close:
        raise ValueError(f"unknown search parameter; did you mean {close[0]!r}?")
    raise ValueError(
        "unknown search parameter; use hparams.<name>, data.params.<name> "
        f"or one of {', '.join(TRAIN_KEYS)}"
    )


def scalar_key(value: Scalar) -> tuple[bool, Scalar]:
    """What makes two values the same choice: ``1`` and ``1.0`` are, ``1`` and ``true`` are not."""
    return isinstance(value, bool), value


class UniformParam(StrictModel):
    """A real number drawn uniformly between `low` and `high`."""

    type: Literal["uniform"] = Field(description="Selects this distribution.")
    low: float = Field(allow_inf_nan=False, description="Lowest value.")
    high: float = Field(allow_inf_nan=False, description="Highest value; above `low`.")

    @property
    def is_log(self) -> bool:
        """Whether the range is searched (and narrowed) on a log scale."""
        return False

    @model_validator(mode="after")
    def _bounds(self) -> UniformParam:
        _check_bounds(self.low, self.high, log=False)
        return self

    def contains(self, value: Scalar) -> bool:
        """Whether ``value`` is a number in the range."""
        return _is_number(value) and self.low <= value <= self.high


class LogUniformParam(StrictModel):
    """A positive real number whose logarithm is drawn uniformly: for rates and decays."""

    type: Literal["loguniform"] = Field(description="Selects this distribution.")
    low: float = Field(allow_inf_nan=False, description="Lowest value; above 0.")
    high: float = Field(allow_inf_nan=False, description="Highest value; above `low`.")

    @property
    def is_log(self) -> bool:
        """Whether the range is searched (and narrowed) on a log scale."""
        return True

    @model_validator(mode="after")
    def _bounds(self) -> LogUniformParam:
        _check_bounds(self.low, self.high, log=True)
        return self

    def contains(self, value: Scalar) -> bool:
        """Whether ``value`` is a number in the range."""
        return _is_number(value) and self.low <= value <= self.high


class IntParam(StrictModel):
    """A whole number from `low` to `high`, both included."""

    type: Literal["int"] = Field(description="Selects this distribution.")
    low: int = Field(description="Lowest value.")
    high: int = Field(description="Highest value; above `low`.")
    log: bool = Field(default=False, description="Draw on a log scale; needs `low` above 0.")

    @property
    def is_log(self) -> bool:
        """Whether the range is searched (and narrowed) on a log scale."""
        return self.log

    @model_validator(mode="after")
    def _bounds(self) -> IntParam:
        _check_bounds(self.low, self.high, log=self.log)
        return self

    def contains(self, value: Scalar) -> bool:
        """Whether ``value`` is a whole number in the range (``3.0`` counts as 3)."""
        return _is_number(value) and float(value).is_integer() and self.low <= value <= self.high


class ChoiceParam(StrictModel):
    """One of a list of values: numbers, strings or booleans."""

    type: Literal["choice"] = Field(description="Selects this distribution.")
    values: list[Scalar] = Field(description="The values to choose from; not empty, each once.")

    @field_validator("values")
    @classmethod
    def _distinct(cls, values: list[Scalar]) -> list[Scalar]:
        if not values:
            raise ValueError("a choice needs at least one value")
        seen: set[tuple[bool, Scalar]] = set()
        for value in values:
            if scalar_key(value) in seen:
                raise ValueError(f"{value!r} is listed twice; list each value once")
            seen.add(scalar_key(value))
        return values

    def contains(self, value: Scalar) -> bool:
        """Whether ``value`` is one of the values."""
        return scalar_key(value) in {scalar_key(v) for v in self.values}


#: A parameter's distribution, told apart by its ``type``.
Param = Annotated[
    UniformParam | LogUniformParam | IntParam | ChoiceParam, Field(discriminator="type")
]

#: A space key, checked when the spec is loaded.
SpaceKey = Annotated[str, AfterValidator(check_space_key)]


class Fidelity(StrictModel):
    """How much training each trial of a stage gets: fewer epochs and less data are cheaper."""

    max_epochs: int | None = Field(
        default=None,
        ge=1,
        description="Train each trial at most this many epochs; null: the spec's `train.epochs`.",
    )
    data_fraction: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="Fraction of the spec's training data each trial uses.",
    )


class FifoScheduler(StrictModel):
    """Run every trial to the end."""

    type: Literal["fifo"] = Field(description="Selects this scheduler.")


class AshaScheduler(StrictModel):
    """ASHA: stop the trials that trail the others at each rung, so the budget goes to the best."""

    type: Literal["asha"] = Field(description="Selects this scheduler.")
    grace_period: int = Field(
        default=1, ge=1, description="Epochs every trial trains before it can be stopped."
    )
    reduction_factor: float = Field(
        default=3.0,
        gt=1.0,
        allow_inf_nan=False,
        description="At each rung, keep about 1 / reduction_factor of the trials.",
    )


#: When trials stop, told apart by its ``type``.
Scheduler = Annotated[FifoScheduler | AshaScheduler, Field(discriminator="type")]


class Narrowing(StrictModel):
    """Narrowing the space around the best trials so far: give `top_fraction` or `top_k`."""

    top_fraction: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Narrow around this fraction of the completed trials, the best first.",
    )
    top_k: int | None = Field(
        default=None, ge=1, description="Narrow around this many of the best completed trials."
    )
    margin: float = Field(
        default=0.1,
        ge=0.0,
        allow_inf_nan=False,
        description=(
            "Widen the top trials' range by this fraction of its width on each side "
            "(in log space for log parameters)."
        ),
    )
    min_trials: int = Field(
        default=3,
        ge=1,
        description="With fewer completed trials than this, keep the space as it was.",
    )

    @model_validator(mode="after")
    def _one_rule(self) -> Narrowing:
        if (self.top_fraction is None) == (self.top_k is None):
            raise ValueError("give exactly one of top_fraction or top_k")
        return self


class Stage(StrictModel):
    """One stage of the search: a sampler, a number of trials and how much each one trains."""

    name: str = Field(
        pattern=SLUG_PATTERN, description="Stage name (lower case, digits, dashes); unique."
    )
    sampler: Literal["random", "sobol", "grid", "tpe", "gp", "cmaes"] = Field(
        description=(
            "How trials are drawn: `random`, `sobol` (quasi-random), `grid` (every combination "
            "of choices), or Bayesian: `tpe`, `gp` (Gaussian process), `cmaes`."
        ),
    )
    trials: int = Field(ge=1, description="Number of trials in this stage.")
    max_concurrent: int = Field(default=2, ge=1, description="Trials that run at the same time.")
    fidelity: Fidelity = Field(
        default_factory=Fidelity, description="Training per trial; default: full."
    )
    scheduler: Scheduler = Field(
        default=FifoScheduler(type="fifo"), description="When trials stop early."
    )
    narrow: Narrowing | None = Field(
        default=None,
        description="Narrow the space around the best trials so far first; null: keep it.",
    )
    seed: int | None = Field(default=None, description="Seed of the sampler; null: random.")

    @model_validator(mode="after")
    def _grace_within_epochs(self) -> Stage:
        epochs = self.fidelity.max_epochs
        if not isinstance(self.scheduler, AshaScheduler) or epochs is None:
            return self
        if self.scheduler.grace_period > epochs:
            raise NestedValueError(
                ("scheduler", "grace_period"),
                f"grace_period {self.scheduler.grace_period} is longer than the stage's "
                f"fidelity.max_epochs {epochs}; make it at most {epochs}",
            )
        return self


class SearchSpec(StrictModel):
    """Hyperparameter search: the space, the metric, and the stages (or a budget for them)."""

    metric: str = Field(
        default="val_loss", min_length=1, description="Metric to optimize, as trials report it."
    )
    mode: Literal["min", "max"] = Field(default="min", description="Minimize or maximize it.")
    space: dict[SpaceKey, Param] = Field(
        description=(
            "Parameters to search, by the spec value each sets: `hparams.<name>`, "
            "`data.params.<name>`, " + ", ".join(f"`{key}`" for key in TRAIN_KEYS) + "."
        ),
    )
    budget: int | None = Field(
        default=None,
        ge=2,
        description=(
            "Total trials. Alone: the default plan, a coarse random stage with ASHA at a third "
            "of the epochs (10 trials, or half a smaller budget), then a Bayesian stage over the "
            "whole space, warm-started with the coarse trials: a Gaussian process for up to 10 "
            "numeric parameters, multivariate TPE with choices or more parameters. With "
            "`stages`: their trials must add up to it."
        ),
    )
    stages: list[Stage] | None = Field(
        default=None, min_length=1, description="Stages, run in order; null: the default plan."
    )
    trial_workers: int = Field(
        default=1,
        ge=1,
        description=(
            "Training workers per trial, each with the spec's `train.scaling` resources "
            "(fractional GPUs allowed). 1: the trial trains in its own process, unsharded; more: "
            "with Ray Train and the spec's `train.strategy` (fsdp+tp keeps `mesh.tp`). The final "
            "model trains with `train.scaling`."
        ),
    )

    @field_validator("space")
    @classmethod
    def _not_empty(cls, space: dict[str, Param]) -> dict[str, Param]:
        if not space:
            raise ValueError(
                "the search space is empty; add a parameter, such as "
                "`train.optimizer.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}`"
            )
        return space

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpec:
        _check_space_types(self.space)
        if self.stages is None:
            if self.budget is None:
                raise ValueError("give a `budget` for the default plan, or the `stages`")
            return self
        total = sum(stage.trials for stage in self.stages)
        if self.budget is not None and total != self.budget:
            raise NestedValueError(
                ("budget",),
                f"the stages' trials add up to {total}, not to the budget {self.budget}; "
                "change one of them, or leave the budget out",
            )
        _check_stages(self.stages, self.space)
        return self

    def resolved_stages(self, full_epochs: int) -> list[Stage]:
        """The stages to run: the spec's, or the default plan derived from the budget.

        ``full_epochs`` is the spec's ``train.epochs``: the coarse stage trains a third of it.
        The default plan draws :data:`COARSE_TRIALS` random trials with ASHA, then spends the
        rest of the budget on the Bayesian sampler that suits the space
        (:func:`bayesian_sampler`), warm-started with every coarse trial, over the whole space:
        a hard cut around a few coarse trials lost the optimum too often (docs/benchmarks.md).
        """
        if self.stages is not None:
            return list(self.stages)
        if full_epochs < 1:
            raise ValueError(f"full_epochs must be at least 1 (got {full_epochs})")
        assert self.budget is not None  # the validator requires a budget or stages
        coarse = coarse_trials(self.budget)
        return [
            Stage(
                name="coarse",
                sampler="random",
                trials=coarse,
                fidelity=Fidelity(max_epochs=max(1, full_epochs // 3)),
                scheduler=AshaScheduler(type="asha", grace_period=1, reduction_factor=3.0),
            ),
            Stage(name="fine", sampler=bayesian_sampler(self.space), trials=self.budget - coarse),
        ]


def coarse_trials(budget: int, count: int = COARSE_TRIALS) -> int:
    """Trials of the default plan's coarse stage: ``count``, or half a budget below twice that,
    always at least one and always leaving the fine stage at least one trial."""
    return min(max(1, min(count, budget // 2)), budget - 1)


def bayesian_sampler(space: dict[str, Param]) -> Literal["gp", "tpe"]:
    """The default plan's Bayesian sampler for ``space``: a Gaussian process for a small, all
    numeric space (at most :data:`GP_MAX_PARAMS` parameters, no choices), where it models the
    objective best; multivariate TPE for choices or larger spaces, where a GP's kernel fits
    poorly and its cost grows."""
    numeric = not any(isinstance(param, ChoiceParam) for param in space.values())
    return "gp" if numeric and len(space) <= GP_MAX_PARAMS else "tpe"


def _check_bounds(low: float, high: float, *, log: bool) -> None:
    if log and low <= 0:
        raise ValueError(f"a log scale needs low > 0 (got low={_num(low)})")
    if low >= high:
        raise ValueError(f"low must be below high (got low={_num(low)}, high={_num(high)})")


def _check_space_types(space: dict[str, Param]) -> None:
    """The train fields take numbers, and the whole-number ones only whole numbers."""
    for key, param in space.items():
        kind = TRAIN_KEYS.get(key)
        if kind is None:
            continue
        if kind is int and isinstance(param, UniformParam | LogUniformParam):
            message = f"{key} takes whole numbers; use `type: int` or a choice of integers"
            raise NestedValueError(("space", key), message)
        if isinstance(param, ChoiceParam):
            wrong = [v for v in param.values if not _is_number(v) or (kind is int and _frac(v))]
            if wrong:
                what = "whole numbers" if kind is int else "numbers"
                message = f"{key} takes {what}, not {_or([repr(v) for v in wrong])}"
                raise NestedValueError(("space", key, "values"), message)


def _check_stages(stages: list[Stage], space: dict[str, Param]) -> None:
    names: set[str] = set()
    not_choices = [key for key, param in space.items() if not isinstance(param, ChoiceParam)]
    for i, stage in enumerate(stages):
        if stage.name in names:
            message = f"another stage is named {stage.name!r}; give each stage its own name"
            raise NestedValueError(("stages", i, "name"), message)
        names.add(stage.name)
        if i == 0 and stage.narrow is not None:
            message = "the first stage has no earlier trials to narrow around; remove `narrow`"
            raise NestedValueError(("stages", 0, "narrow"), message)
        if stage.sampler == "grid" and not_choices:
            message = (
                "the grid sampler needs every parameter to be a choice; "
                f"not a choice: {', '.join(not_choices)}"
            )
            raise NestedValueError(("stages", i, "sampler"), message)


def _is_number(value: Scalar) -> TypeGuard[int | float]:
    """A finite int or float; booleans are not numbers here."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _frac(value: Scalar) -> bool:
    """Whether a number has a fractional part."""
    return not float(value).is_integer()


def _num(value: float) -> str:
    """A bound as a user wrote it: ``1`` rather than ``1.0``, ``0.0001`` as is."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def _or(items: list[str]) -> str:
    return f"{', '.join(items[:-1])} or {items[-1]}" if len(items) > 1 else "".join(items)
