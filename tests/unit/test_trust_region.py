"""The trust region: how it grows, shrinks and restarts, and the space it gives a batch."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel.narrowing import TrustRegion, TrustRule, next_region, region_space, within
from flywheel.specs import ChoiceParam, IntParam, LogUniformParam, Param, UniformParam
from flywheel.specs.base import Scalar

EXAMPLES = settings(max_examples=200, deadline=None)
RULE = TrustRule(initial_length=0.8, min_length=0.1, success_batches=2, failure_batches=2)
SPACE: dict[str, Param] = {
    "hparams.x": UniformParam(type="uniform", low=0.0, high=10.0),
    "train.optimizer.lr": LogUniformParam(type="loguniform", low=1e-4, high=1.0),
    "hparams.layers": IntParam(type="int", low=1, high=8),
    "hparams.act": ChoiceParam(type="choice", values=["relu", "gelu"]),
}


def test_a_run_of_improving_batches_doubles_the_side_up_to_the_maximum() -> None:
    region = TrustRegion(0.4, best=10.0)
    region = next_region(region, [9.0, 12.0], "min", RULE)
    assert (region.length, region.successes, region.best) == (0.4, 1, 9.0)
    region = next_region(region, [8.0], "min", RULE)
    assert (region.length, region.successes, region.best) == (0.8, 0, 8.0)
    region = next_region(next_region(region, [7.0], "min", RULE), [6.0], "min", RULE)
    assert region.length == RULE.max_length


def test_a_run_of_failed_batches_halves_the_side_and_one_success_resets_the_count() -> None:
    region = TrustRegion(0.8, best=1.0)
    region = next_region(region, [2.0], "min", RULE)
    region = next_region(region, [0.5], "min", RULE)  # a success between two failures
    region = next_region(region, [3.0, None, math.nan], "min", RULE)
    assert (region.length, region.failures, region.best) == (0.8, 1, 0.5)
    region = next_region(region, [None], "min", RULE)
    assert (region.length, region.failures) == (0.4, 0)


def test_an_improvement_below_the_threshold_is_a_failure() -> None:
    region = next_region(TrustRegion(0.8, best=100.0), [99.95], "min", RULE)
    assert (region.successes, region.failures, region.best) == (0, 1, 99.95)


def test_max_mode_counts_higher_values_as_improvements() -> None:
    region = next_region(TrustRegion(0.8, best=0.5), [0.9, 0.1], "max", RULE)
    assert (region.successes, region.best) == (1, 0.9)


def test_a_collapsed_region_restarts_with_no_best_value() -> None:
    region = TrustRegion(0.15, failures=1, best=1.0, restarts=2)
    assert next_region(region, [2.0], "min", RULE) == TrustRegion(0.8, restarts=3)


def test_the_first_finite_value_is_a_success() -> None:
    region = next_region(TrustRegion(0.8), [None, 4.0], "min", RULE)
    assert (region.successes, region.best) == (1, 4.0)


def test_a_window_is_centred_and_shifted_inside_the_bounds() -> None:
    center: dict[str, Scalar] = {
        "hparams.x": 9.5,
        "train.optimizer.lr": 1e-2,
        "hparams.layers": 1,
        "hparams.act": "gelu",
    }
    space = region_space(SPACE, center, 0.5)
    assert space["hparams.x"] == UniformParam(type="uniform", low=5.0, high=10.0)
    lr = space["train.optimizer.lr"]
    assert isinstance(lr, LogUniformParam)
    assert (lr.low, lr.high) == pytest.approx((1e-3, 1e-1))
    assert space["hparams.layers"] == IntParam(type="int", low=1, high=5)
    assert space["hparams.act"] == SPACE["hparams.act"]  # choices are kept whole


def test_a_full_length_region_is_the_whole_space() -> None:
    center: dict[str, Scalar] = {
        "hparams.x": 1.0,
        "train.optimizer.lr": 1e-3,
        "hparams.layers": 3,
        "hparams.act": "relu",
    }
    assert region_space(SPACE, center, 1.0) == SPACE


@st.composite
def centres(draw: st.DrawFn) -> dict[str, Scalar]:
    return {
        "hparams.x": draw(st.floats(0.0, 10.0)),
        "train.optimizer.lr": draw(st.floats(1e-4, 1.0)),
        "hparams.layers": draw(st.integers(1, 8)),
        "hparams.act": draw(st.sampled_from(["relu", "gelu"])),
    }


@EXAMPLES
@given(centres(), st.floats(1e-6, 1.0))
def test_the_region_lies_inside_the_space_and_holds_its_centre(
    center: dict[str, Scalar], length: float
) -> None:
    space = region_space(SPACE, center, length)
    assert within(space, center)
    for key, param in space.items():
        old = SPACE[key]
        if isinstance(param, ChoiceParam):
            assert param == old
            continue
        assert not isinstance(old, ChoiceParam)
        assert old.low <= param.low < param.high <= old.high


@EXAMPLES
@given(
    st.floats(0.01, 1.0),
    st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), max_size=6),
    st.one_of(st.none(), st.floats(-1e6, 1e6)),
    st.sampled_from(["min", "max"]),
)
def test_the_side_stays_between_floor_and_ceiling_and_the_best_never_worsens(
    length: float, batch: list[float | None], best: float | None, mode: str
) -> None:
    region = next_region(TrustRegion(length, best=best), batch, mode, RULE)  # type: ignore[arg-type]
    assert RULE.min_length <= region.length <= RULE.max_length
    if region.restarts == 0 and best is not None:
        assert region.best is not None
        assert (region.best <= best) if mode == "min" else (region.best >= best)
