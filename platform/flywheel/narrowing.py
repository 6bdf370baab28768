"""The pure decisions between the stages of a search: the narrowed space, and a trial's spec.

The runtime runs the trials (Ray Tune, Optuna) and records what is decided here:
:meth:`NarrowingDecision.to_dict` is the JSON it keeps as an MLflow artifact. A stage with a
``narrow`` rule (:class:`~flywheel.specs.search.Narrowing`) searches the space of the stage before
it, shrunk around the best trials so far; :func:`apply_overrides` turns one trial's parameters
into the spec it trains.

A trust region (:class:`TrustRegion`) is the reversible kind of narrowing, after TuRBO (Eriksson
et al., 2019): a box around the best trial so far that doubles after a run of batches that
improved on the best and halves after a run of batches that did not; when it has shrunk below
its floor, the search restarts over the whole space. :func:`next_region` decides the next box
from the last batch; :func:`region_space` turns it into a search space.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from flywheel.specs.base import Scalar
from flywheel.specs.experiment import ExperimentSpec
from flywheel.specs.search import (
    TRAIN_KEYS,
    ChoiceParam,
    Fidelity,
    IntParam,
    LogUniformParam,
    Narrowing,
    Param,
    UniformParam,
    check_space_key,
    scalar_key,
)

__all__ = [
    "NarrowingDecision",
    "TrialResult",
    "TrustRegion",
    "TrustRule",
    "apply_overrides",
    "narrow",
    "next_region",
    "region_space",
    "within",
]

#: Space keys that set an entry of a free-form mapping, and where that mapping is in the spec.
_FREE_MAPPINGS = {"hparams.": ("hparams",), "data.params.": ("data", "params")}


@dataclass(frozen=True)
class TrialResult:
    """A finished trial, as narrowing sees it."""

    params: dict[str, Scalar]
    """The trial's value of each parameter, by space key."""
    value: float | None
    """The search metric; None when the trial failed or stopped before reporting it."""
    stage: str
    """The stage the trial ran in."""

    @property
    def completed(self) -> bool:
        """Whether the trial reported a finite metric."""
        return self.value is not None and math.isfinite(self.value)


@dataclass(frozen=True)
class NarrowingDecision:
    """The space a stage searches, the space it came from, and why."""

    stage: str
    """The stage whose space this is."""
    old_space: dict[str, Param]
    new_space: dict[str, Param]
    used_trials: tuple[TrialResult, ...]
    """The top trials the new space was drawn around, the best first."""
    kept_previous: bool
    """True when too few trials had completed (fewer than ``min_trials``): the space is kept."""
    reason: str
    """One sentence for people."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the old and new distribution of each parameter, the trials, the reason."""
        return {
            "stage": self.stage,
            "kept_previous": self.kept_previous,
            "reason": self.reason,
            "params": {
                key: {
                    "old": param.model_dump(mode="json"),
                    "new": self.new_space[key].model_dump(mode="json"),
                }
                for key, param in self.old_space.items()
            },
            "trials": [
                {"params": dict(t.params), "value": t.value, "stage": t.stage}
                for t in self.used_trials
            ],
        }


def narrow(
    space: Mapping[str, Param],
    trials: Iterable[TrialResult],
    rule: Narrowing,
    mode: Literal["min", "max"],
    stage: str,
) -> NarrowingDecision:
    """The space of ``stage``: ``space`` narrowed around the best of ``trials``.

    Only completed trials inside ``space`` count (a wider earlier stage's trials that fall outside
    it do not). Numeric ranges shrink to the top trials' values, widened on each side by
    ``rule.margin`` of their width (in log space for log parameters), within the old bounds;
    choices keep the values the top trials used. With fewer than ``rule.min_trials`` completed
    trials the space is kept.
    """
    old = dict(space)
    ranked = sorted(
        (t for t in trials if t.completed and within(old, t.params)),
        key=_metric,
        reverse=mode == "max",
    )
    if len(ranked) < rule.min_trials:
        reason = (
            f"kept the space: {len(ranked)} completed trial{'' if len(ranked) == 1 else 's'} "
            f"in it, fewer than min_trials {rule.min_trials}"
        )
        return NarrowingDecision(stage, old, old, (), kept_previous=True, reason=reason)
    top = tuple(ranked[: _top_count(rule, len(ranked))])
    new = {
        key: _narrow_param(param, [t.params[key] for t in top], rule.margin)
        for key, param in old.items()
    }
    best = "lowest" if mode == "min" else "highest"
    reason = (
        f"narrowed around the top {len(top)} of {len(ranked)} completed trials ({best} metric "
        f"first), with a margin of {rule.margin:g} of their range on each side"
    )
    return NarrowingDecision(stage, old, new, top, kept_previous=False, reason=reason)


@dataclass(frozen=True)
class TrustRule:
    """How a trust region grows and shrinks (TuRBO's defaults, scaled to a unit box)."""

    initial_length: float = 0.8
    """The side of a new region, as a fraction of each numeric parameter's range."""
    min_length: float = 0.5**7
    """Below this side the region has collapsed: restart over the whole space."""
    max_length: float = 1.0
    success_batches: int = 3
    """Double the side after this many batches in a row that improved on the best."""
    failure_batches: int = 3
    """Halve the side after this many batches in a row that did not."""
    min_improvement: float = 1e-3
    """An improvement smaller than this fraction of the best value's magnitude is no success."""


@dataclass(frozen=True)
class TrustRegion:
    """A trust region between two batches of trials: its side, its counters and its best value."""

    length: float
    successes: int = 0
    failures: int = 0
    best: float | None = None
    """The best metric seen since the region last restarted; None: none yet."""
    restarts: int = 0


def next_region(
    region: TrustRegion, batch: Iterable[float | None], mode: Literal["min", "max"], rule: TrustRule
) -> TrustRegion:
    """The region after a batch of trials with these metrics (None or non-finite: failed).

    A batch that improves on the region's best by more than ``rule.min_improvement`` counts as a
    success, any other as a failure; ``rule.success_batches`` successes in a row double the side
    (up to ``rule.max_length``), ``rule.failure_batches`` failures in a row halve it. Below
    ``rule.min_length`` the region restarts at ``rule.initial_length`` with no best value, so
    that the next centre is the best trial of the whole search again.
    """
    values = [v for v in batch if v is not None and math.isfinite(v)]
    sign = 1.0 if mode == "min" else -1.0
    batch_best = min((sign * v for v in values), default=math.inf)
    best = math.inf if region.best is None else sign * region.best
    improved = (
        batch_best < best - rule.min_improvement * abs(best)
        if math.isfinite(best)
        else (math.isfinite(batch_best))
    )
    new_best = min(best, batch_best)
    successes = region.successes + 1 if improved else 0
    failures = 0 if improved else region.failures + 1
    length = region.length
    if successes >= rule.success_batches:
        length, successes = min(2 * length, rule.max_length), 0
    if failures >= rule.failure_batches:
        length, failures = length / 2, 0
    if length < rule.min_length:
        return TrustRegion(rule.initial_length, restarts=region.restarts + 1)
    kept = sign * new_best if math.isfinite(new_best) else None
    return TrustRegion(length, successes, failures, kept, region.restarts)


def region_space(
    space: Mapping[str, Param], center: Mapping[str, Scalar], length: float
) -> dict[str, Param]:
    """The box of side ``length`` (a fraction of each range) around ``center``, inside ``space``.

    Numeric parameters get a window of ``length`` of their range (in log space for log ones),
    centred on the centre's value and shifted, not cut, where it meets a bound; whole-number
    windows are rounded outward and hold at least two values. Choices keep every value: a
    distance between choices means nothing. ``center`` must lie in ``space``.
    """
    return {key: _window(param, center[key], length) for key, param in space.items()}


def within(space: Mapping[str, Param], params: Mapping[str, Scalar]) -> bool:
    """Whether ``params`` gives each parameter of ``space``, and nothing else, a value in it."""
    return params.keys() == space.keys() and all(
        space[key].contains(value) for key, value in params.items()
    )


def apply_overrides(
    spec: ExperimentSpec, params: Mapping[str, Scalar], fidelity: Fidelity
) -> ExperimentSpec:
    """The spec one trial trains: ``spec`` with ``params`` set, at ``fidelity``.

    Each key of ``params`` is a space key (``hparams.dropout``, ``train.optimizer.lr``). The
    epochs are capped at ``fidelity.max_epochs``, and ``data.fraction`` is scaled by
    ``fidelity.data_fraction``. The trial trains once, so its ``search`` is null. The result is
    validated like any spec; a ValueError says why it is invalid (the caller fails the trial).
    """
    data = spec.model_dump()
    data["search"] = None
    for key, value in params.items():
        _set(data, key, value)
    if fidelity.max_epochs is not None:
        data["train"]["epochs"] = min(data["train"]["epochs"], fidelity.max_epochs)
    data["data"]["fraction"] = spec.data.fraction * fidelity.data_fraction
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(_problem(err["loc"], err["msg"]) for err in e.errors())
        raise ValueError(f"parameters {dict(params)} make an invalid spec: {problems}") from e


def _metric(trial: TrialResult) -> float:
    return trial.value if trial.value is not None else math.nan


def _top_count(rule: Narrowing, completed: int) -> int:
    """How many trials to narrow around: at least one, at most all."""
    if rule.top_k is not None:
        return min(rule.top_k, completed)
    fraction = rule.top_fraction if rule.top_fraction is not None else 1.0
    # Rounded first so that 0.3 * 10 is 3, not 3.0000000000000004 (which would take 4).
    return min(max(1, math.ceil(round(fraction * completed, 9))), completed)


def _narrow_param(param: Param, values: list[Scalar], margin: float) -> Param:
    """``param`` around ``values`` (the top trials' values, all inside ``param``)."""
    if isinstance(param, ChoiceParam):
        used = {scalar_key(value) for value in values}
        kept = [value for value in param.values if scalar_key(value) in used]
        return ChoiceParam(type="choice", values=kept)
    numbers = [float(value) for value in values]
    low, high = _widened(min(numbers), max(numbers), param, margin)
    if isinstance(param, IntParam):
        return _int_range(param, low, high)
    if low >= high:  # the top trials share one value and there is no margin
        return ChoiceParam(type="choice", values=[values[0]])
    return param.model_validate({**param.model_dump(), "low": low, "high": high})


def _widened(
    lo: float, hi: float, param: UniformParam | LogUniformParam | IntParam, margin: float
) -> tuple[float, float]:
    """[lo, hi] widened by ``margin`` of its width on each side, within ``param``'s bounds.

    A single value is widened by ``margin`` of ``param``'s width instead. Log parameters are
    widened in log space. The result always contains [lo, hi], rounding notwithstanding.
    """
    floor, ceiling = float(param.low), float(param.high)
    to, back = (math.log, math.exp) if param.is_log else (_same, _same)
    width = to(hi) - to(lo)
    if width == 0:
        width = to(ceiling) - to(floor)
    pad = margin * width if margin else 0.0
    low = back(max(to(lo) - pad, to(floor)))
    high = back(min(to(hi) + pad, to(ceiling)))
    return max(min(low, lo), floor), min(max(high, hi), ceiling)


def _int_range(param: IntParam, low: float, high: float) -> IntParam:
    """[low, high] rounded outward; a single value grows by one, still within ``param``."""
    lo, hi = max(param.low, math.floor(low)), min(param.high, math.ceil(high))
    if lo == hi:
        lo, hi = (lo, hi + 1) if hi < param.high else (lo - 1, hi)
    return IntParam(type="int", low=lo, high=hi, log=param.log)


def _window(param: Param, value: Scalar, length: float) -> Param:
    """``param`` cut to a window of ``length`` of its range around ``value``."""
    if isinstance(param, ChoiceParam) or length >= 1.0:
        return param
    to, back = (math.log, math.exp) if param.is_log else (_same, _same)
    floor, ceiling = to(float(param.low)), to(float(param.high))
    half = length * (ceiling - floor) / 2
    centre = min(max(to(float(value)), floor + half), ceiling - half)
    low, high = back(centre - half), back(centre + half)
    # within the bounds, and holding the value whatever the rounding of log and exp
    low = max(min(low, float(value)), float(param.low))
    high = min(max(high, float(value)), float(param.high))
    if isinstance(param, IntParam):
        return _int_range(param, low, high)
    if low >= high:  # a window too thin for floats to tell its ends apart
        return param
    return param.model_validate({**param.model_dump(), "low": low, "high": high})


def _same(x: float) -> float:
    return x


def _set(data: dict[str, Any], key: str, value: Scalar) -> None:
    """Set the spec value that the space key ``key`` names in ``data`` (a dumped spec)."""
    try:
        check_space_key(key)
    except ValueError as e:
        raise ValueError(f"{key}: {e}") from None
    prefix = next((p for p in _FREE_MAPPINGS if key.startswith(p)), None)
    if prefix is not None:
        _dig(data, _FREE_MAPPINGS[prefix])[key.removeprefix(prefix)] = value
        return
    *parents, name = key.split(".")
    _dig(data, parents)[name] = _number(key, value)


def _dig(data: dict[str, Any], path: Iterable[str]) -> dict[str, Any]:
    for part in path:
        data = data[part]
    return data


def _number(key: str, value: Scalar) -> int | float:
    """``value`` as the number the train field ``key`` takes: whole numbers become ints."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} takes a number, not {value!r}")
    if TRAIN_KEYS[key] is float:
        return float(value)
    if not float(value).is_integer():
        raise ValueError(f"{key} takes a whole number, not {value!r}")
    return int(value)


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    where = ".".join(str(part) for part in loc)
    message = message.removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    return f"{where}: {message}" if where else message
