"""Narrowing a search space around the best trials, and the spec each trial trains."""

from __future__ import annotations

import json
import math
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from flywheel.narrowing import NarrowingDecision, TrialResult, apply_overrides, narrow, within
from flywheel.specs import (
    ChoiceParam,
    ExperimentSpec,
    Fidelity,
    IntParam,
    LogUniformParam,
    Narrowing,
    Param,
    UniformParam,
)
from flywheel.specs.base import Scalar
from flywheel.specs.search import scalar_key

PARAM = TypeAdapter(Param)
Mode = Literal["min", "max"]
EXAMPLES = settings(max_examples=100, deadline=None)

# -- strategies ----------------------------------------------------------------------------------

uniforms = st.builds(
    lambda low, width: UniformParam(type="uniform", low=low, high=low + width),
    st.floats(-1e6, 1e6),
    st.floats(1e-3, 1e6),
)
loguniforms = st.builds(
    lambda exponent, decades: LogUniformParam(
        type="loguniform", low=10**exponent, high=10 ** (exponent + decades)
    ),
    st.floats(-8, 3),
    st.floats(0.01, 8),
)
ints = st.builds(
    lambda low, width: IntParam(type="int", low=low, high=low + width),
    st.integers(-1000, 1000),
    st.integers(1, 1000),
)
log_ints = st.builds(
    lambda low, width: IntParam(type="int", low=low, high=low + width, log=True),
    st.integers(1, 1000),
    st.integers(1, 10_000),
)
choices = st.builds(
    lambda values: ChoiceParam(type="choice", values=values),
    st.lists(
        st.one_of(st.integers(-3, 3), st.sampled_from(["relu", "gelu", "tanh"]), st.booleans()),
        min_size=1,
        max_size=6,
        unique_by=scalar_key,
    ),
)
params = st.one_of(uniforms, loguniforms, ints, log_ints, choices)
spaces = st.dictionaries(
    st.sampled_from([f"hparams.p{i}" for i in range(5)]), params, min_size=1, max_size=4
)
rules = st.one_of(
    st.builds(
        Narrowing, top_fraction=st.floats(0.01, 1.0), margin=st.floats(0, 2), min_trials=st.just(1)
    ),
    st.builds(Narrowing, top_k=st.integers(1, 10), margin=st.floats(0, 2), min_trials=st.just(1)),
)
metrics = st.one_of(
    st.floats(-100, 100), st.none(), st.sampled_from([math.nan, math.inf, -math.inf])
)


def value_in(param: Param) -> st.SearchStrategy[Scalar]:
    if isinstance(param, ChoiceParam):
        return st.sampled_from(param.values)
    if isinstance(param, IntParam):
        return st.integers(param.low, param.high)
    return st.floats(param.low, param.high)


@st.composite
def searches(draw: st.DrawFn) -> tuple[dict[str, Param], list[TrialResult]]:
    """A space and trials inside it, some of them failed or without a finite metric."""
    space = draw(spaces)
    assignment = st.fixed_dictionaries({key: value_in(param) for key, param in space.items()})
    trials = draw(
        st.lists(st.builds(TrialResult, assignment, metrics, st.just("coarse")), max_size=30)
    )
    return space, trials


def decide(
    space: dict[str, Param], trials: list[TrialResult], rule: Narrowing, mode: Mode = "min"
) -> NarrowingDecision:
    return narrow(space, trials, rule, mode, "fine")


def completed(trials: list[TrialResult]) -> list[TrialResult]:
    return [t for t in trials if t.value is not None and math.isfinite(t.value)]


# -- properties ----------------------------------------------------------------------------------


@EXAMPLES
@given(searches(), rules, st.sampled_from(["min", "max"]))
def test_the_new_space_is_valid_and_inside_the_old_one(
    search: tuple[dict[str, Param], list[TrialResult]], rule: Narrowing, mode: Mode
) -> None:
    space, trials = search
    decision = decide(space, trials, rule, mode)
    assert decision.new_space.keys() == space.keys()
    for key, new in decision.new_space.items():
        old = space[key]
        assert PARAM.validate_python(new.model_dump()) == new
        if isinstance(new, ChoiceParam):
            assert all(old.contains(value) for value in new.values)
        else:
            assert type(new) is type(old)
            assert not isinstance(old, ChoiceParam)
            assert old.low <= new.low < new.high <= old.high
            assert new.is_log == old.is_log


@EXAMPLES
@given(searches(), rules, st.sampled_from(["min", "max"]))
def test_the_new_space_holds_every_top_trial_and_they_are_the_best(
    search: tuple[dict[str, Param], list[TrialResult]], rule: Narrowing, mode: Mode
) -> None:
    space, trials = search
    decision = decide(space, trials, rule, mode)
    done = completed(trials)
    if not done:
        assert decision.kept_previous
        return
    top = decision.used_trials
    expected = rule.top_k or math.ceil(round((rule.top_fraction or 1.0) * len(done), 9))
    assert len(top) == min(max(expected, 1), len(done))
    assert all(within(decision.new_space, t.params) for t in top)
    values = [t.value for t in top if t.value is not None]
    sign = 1 if mode == "min" else -1
    assert values == sorted(values, key=lambda v: sign * v)
    rest = [t.value for t in done if t not in top and t.value is not None]
    assert all(sign * v >= sign * values[-1] for v in rest)


@EXAMPLES
@given(searches(), rules)
def test_choices_keep_exactly_the_top_trials_values_in_their_order(
    search: tuple[dict[str, Param], list[TrialResult]], rule: Narrowing
) -> None:
    space, trials = search
    decision = decide(space, trials, rule)
    for key, old in space.items():
        if not isinstance(old, ChoiceParam) or decision.kept_previous:
            continue
        new = decision.new_space[key]
        assert isinstance(new, ChoiceParam)
        used = {scalar_key(t.params[key]) for t in decision.used_trials}
        assert new.values == [v for v in old.values if scalar_key(v) in used]


@EXAMPLES
@given(searches(), st.integers(1, 40))
def test_too_few_completed_trials_keep_the_space(
    search: tuple[dict[str, Param], list[TrialResult]], min_trials: int
) -> None:
    space, trials = search
    rule = Narrowing(top_fraction=0.5, min_trials=min_trials)
    decision = decide(space, trials, rule)
    if len(completed(trials)) >= min_trials:
        assert not decision.kept_previous
        return
    assert decision.kept_previous
    assert decision.new_space == decision.old_space == space
    assert decision.used_trials == ()
    count = len(completed(trials))
    noun = "trial" if count == 1 else "trials"
    assert decision.reason == (
        f"kept the space: {count} completed {noun} in it, fewer than min_trials {min_trials}"
    )


# -- worked examples -----------------------------------------------------------------------------


def trials_at(
    key: str, values: list[Scalar], metrics: list[float] | None = None
) -> list[TrialResult]:
    metrics = metrics if metrics is not None else [float(i) for i in range(len(values))]
    return [TrialResult({key: v}, m, "coarse") for v, m in zip(values, metrics, strict=True)]


def narrowed(param: Param, values: list[Scalar], margin: float) -> Param:
    """``param`` narrowed around all of ``values``."""
    rule = Narrowing(top_fraction=1.0, margin=margin, min_trials=1)
    return narrow({"p": param}, trials_at("p", values), rule, "min", "fine").new_space["p"]


def test_a_log_range_is_narrowed_in_log_space() -> None:
    lr = LogUniformParam(type="loguniform", low=1e-5, high=1e-1)
    new = narrowed(lr, [1e-4, 1e-2], margin=0.25)
    # Two decades wide; a quarter of that is half a decade on each side.
    assert isinstance(new, LogUniformParam)
    assert new.low == pytest.approx(1e-4 / 10**0.5)
    assert new.high == pytest.approx(1e-2 * 10**0.5)
    # On a linear scale the low side would have been clipped to 1e-5 and the high one 0.012475.
    linear = narrowed(UniformParam(type="uniform", low=1e-5, high=1e-1), [1e-4, 1e-2], 0.25)
    assert isinstance(linear, UniformParam)
    assert (linear.low, linear.high) == (1e-5, pytest.approx(0.012475))


def test_a_log_int_range_is_narrowed_in_log_space_and_rounded_outward() -> None:
    hidden = IntParam(type="int", low=1, high=1000, log=True)
    # log10 from 1 to 2, widened half a decade: 10 ** 0.5 = 3.16 and 10 ** 2.5 = 316.2.
    assert narrowed(hidden, [10, 100], margin=0.5) == IntParam(
        type="int", low=3, high=317, log=True
    )


def test_a_linear_range_is_widened_by_the_margin_and_clipped() -> None:
    dropout = UniformParam(type="uniform", low=0.0, high=1.0)
    assert narrowed(dropout, [0.2, 0.4], 0.5) == UniformParam(type="uniform", low=0.1, high=0.5)
    assert narrowed(dropout, [0.1, 0.9], 0.5) == dropout


def test_a_single_value_is_widened_by_the_margin_of_the_old_range() -> None:
    x = UniformParam(type="uniform", low=0.0, high=10.0)
    assert narrowed(x, [5.0, 5.0], 0.1) == UniformParam(type="uniform", low=4.0, high=6.0)
    lr = LogUniformParam(type="loguniform", low=1e-4, high=1.0)
    new = narrowed(lr, [1e-2], 0.25)  # four decades: one decade each side
    assert isinstance(new, LogUniformParam)
    assert (new.low, new.high) == (pytest.approx(1e-3), pytest.approx(1e-1))


def test_a_single_value_without_a_margin_becomes_a_choice() -> None:
    x = UniformParam(type="uniform", low=0.0, high=10.0)
    assert narrowed(x, [5.0, 5.0], 0.0) == ChoiceParam(type="choice", values=[5.0])


def test_a_single_int_grows_by_one_within_the_old_range() -> None:
    n = IntParam(type="int", low=0, high=100)
    assert narrowed(n, [10], 0.0) == IntParam(type="int", low=10, high=11)
    assert narrowed(n, [100], 0.0) == IntParam(type="int", low=99, high=100)


def test_choices_keep_booleans_apart_from_numbers() -> None:
    flag = ChoiceParam(type="choice", values=[0, 1, True, "1"])
    assert narrowed(flag, [True, "1", True], 0.1) == ChoiceParam(type="choice", values=[True, "1"])


def test_the_top_fraction_rounds_up_and_max_mode_takes_the_highest() -> None:
    space: dict[str, Param] = {"p": IntParam(type="int", low=0, high=100)}
    trials = trials_at("p", list(range(10)), [float(i) for i in range(10)])
    decision = narrow(space, trials, Narrowing(top_fraction=0.25), "max", "fine")
    assert [t.params["p"] for t in decision.used_trials] == [9, 8, 7]  # ceil(2.5)
    # 7 - 0.2 and 9 + 0.2, rounded outward.
    assert decision.new_space["p"] == IntParam(type="int", low=6, high=10)
    assert decision.reason == (
        "narrowed around the top 3 of 10 completed trials (highest metric first), "
        "with a margin of 0.1 of their range on each side"
    )
    tenth = narrow(space, trials, Narrowing(top_fraction=0.3, margin=0), "min", "fine")
    assert len(tenth.used_trials) == 3  # 0.3 * 10 is 3, not 3.0000000000000004


def test_failed_trials_and_trials_outside_the_space_are_left_out() -> None:
    space: dict[str, Param] = {"p": UniformParam(type="uniform", low=0.0, high=1.0)}
    trials = [
        TrialResult({"p": 0.5}, None, "coarse"),
        TrialResult({"p": 0.6}, math.nan, "coarse"),
        TrialResult({"p": 0.7}, -math.inf, "coarse"),
        TrialResult({"p": 1.5}, -10.0, "wide"),  # an earlier, wider stage's trial
        TrialResult({"p": 0.1}, 1.0, "coarse"),
        TrialResult({"p": 0.3}, 2.0, "coarse"),
    ]
    decision = narrow(space, trials, Narrowing(top_k=2, margin=0, min_trials=2), "min", "fine")
    assert decision.used_trials == (trials[4], trials[5])
    assert decision.new_space["p"] == UniformParam(type="uniform", low=0.1, high=0.3)
    kept = narrow(space, trials, Narrowing(top_k=2, min_trials=3), "min", "fine")
    assert kept.kept_previous
    assert kept.reason == "kept the space: 2 completed trials in it, fewer than min_trials 3"


def test_the_decision_is_json_ready() -> None:
    space: dict[str, Param] = {
        "train.optimizer.lr": LogUniformParam(type="loguniform", low=1e-4, high=1.0),
        "hparams.act": ChoiceParam(type="choice", values=["relu", "gelu"]),
    }
    trials = [
        TrialResult({"train.optimizer.lr": 0.01, "hparams.act": "gelu"}, 0.5, "coarse"),
        TrialResult({"train.optimizer.lr": 0.1, "hparams.act": "relu"}, 0.9, "coarse"),
    ]
    decision = narrow(space, trials, Narrowing(top_k=1, min_trials=1), "min", "fine")
    data = json.loads(json.dumps(decision.to_dict()))
    assert data == {
        "stage": "fine",
        "kept_previous": False,
        "reason": decision.reason,
        "params": {
            "train.optimizer.lr": {
                "old": {"type": "loguniform", "low": 1e-4, "high": 1.0},
                # One trial: a tenth of the old four decades on each side.
                "new": {
                    "type": "loguniform",
                    "low": pytest.approx(10**-2.4),
                    "high": pytest.approx(10**-1.6),
                },
            },
            "hparams.act": {
                "old": {"type": "choice", "values": ["relu", "gelu"]},
                "new": {"type": "choice", "values": ["gelu"]},
            },
        },
        "trials": [
            {
                "params": {"train.optimizer.lr": 0.01, "hparams.act": "gelu"},
                "value": 0.5,
                "stage": "coarse",
            }
        ],
    }


# -- within --------------------------------------------------------------------------------------

SPACE: dict[str, Param] = {
    "hparams.x": UniformParam(type="uniform", low=0.0, high=1.0),
    "hparams.n": IntParam(type="int", low=1, high=8),
    "hparams.act": ChoiceParam(type="choice", values=["relu", 1]),
}


@pytest.mark.parametrize(
    ("params", "inside"),
    [
        ({"hparams.x": 0.0, "hparams.n": 8, "hparams.act": "relu"}, True),
        ({"hparams.x": 1.0, "hparams.n": 3.0, "hparams.act": 1.0}, True),
        ({"hparams.x": 1.01, "hparams.n": 3, "hparams.act": "relu"}, False),
        ({"hparams.x": 0.5, "hparams.n": 3.5, "hparams.act": "relu"}, False),
        ({"hparams.x": 0.5, "hparams.n": 9, "hparams.act": "relu"}, False),
        ({"hparams.x": 0.5, "hparams.n": 3, "hparams.act": "gelu"}, False),
        ({"hparams.x": 0.5, "hparams.n": 3, "hparams.act": True}, False),
        ({"hparams.x": True, "hparams.n": 3, "hparams.act": "relu"}, False),
        ({"hparams.x": math.nan, "hparams.n": 3, "hparams.act": "relu"}, False),
        ({"hparams.x": "0.5", "hparams.n": 3, "hparams.act": "relu"}, False),
        ({"hparams.x": 0.5, "hparams.n": 3}, False),
        ({"hparams.x": 0.5, "hparams.n": 3, "hparams.act": "relu", "hparams.y": 1}, False),
    ],
)
def test_within(params: dict[str, Scalar], inside: bool) -> None:
    assert within(SPACE, params) is inside


# -- apply_overrides -----------------------------------------------------------------------------

SPEC = ExperimentSpec.model_validate(
    {
        "name": "digits",
        "team": "vision",
        "task": {"module": "task"},
        "train": {"epochs": 30, "batch_size": 64, "scaling": {"num_workers": 2}},
        "data": {"fraction": 0.5, "params": {"subset": 1000}},
        "hparams": {"hidden": 64, "dropout": 0.1},
        "search": {"budget": 4, "space": {"hparams.hidden": {"type": "int", "low": 8, "high": 9}}},
    }
)


def test_overrides_set_each_kind_of_key() -> None:
    params: dict[str, Scalar] = {
        "hparams.hidden": 128,
        "hparams.act": "gelu",
        "data.params.subset": 500,
        "train.optimizer.lr": 0.01,
        "train.optimizer.weight_decay": 1,
        "train.optimizer.momentum": 0.5,
        "train.batch_size": 32.0,
        "train.epochs": 12,
        "train.grad_clip_norm": 2.0,
    }
    spec = apply_overrides(SPEC, params, Fidelity())
    assert spec.hparams == {"hidden": 128, "dropout": 0.1, "act": "gelu"}
    assert spec.data.params == {"subset": 500}
    optimizer = spec.train.optimizer
    assert (optimizer.lr, optimizer.weight_decay, optimizer.momentum) == (0.01, 1.0, 0.5)
    assert (spec.train.batch_size, spec.train.epochs, spec.train.grad_clip_norm) == (32, 12, 2.0)
    assert type(spec.train.batch_size) is int
    assert spec.search is None  # a trial trains once
    assert spec.data.fraction == 0.5
    assert SPEC.hparams == {"hidden": 64, "dropout": 0.1}  # the original is untouched


def test_the_fidelity_caps_the_epochs_and_scales_the_data() -> None:
    low = Fidelity(max_epochs=10, data_fraction=0.25)
    spec = apply_overrides(SPEC, {}, low)
    assert (spec.train.epochs, spec.data.fraction) == (10, 0.125)
    assert apply_overrides(SPEC, {"train.epochs": 4}, low).train.epochs == 4
    assert apply_overrides(SPEC, {}, Fidelity(max_epochs=100)).train.epochs == 30


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"train.batch_size": 33},
            "parameters {'train.batch_size': 33} make an invalid spec: train: batch_size 33 "
            "does not split evenly over 2 workers; use a multiple of 2",
        ),
        (
            {"train.optimizer.momentum": 1.5},
            "parameters {'train.optimizer.momentum': 1.5} make an invalid spec: "
            "train.optimizer.momentum: input should be less than 1",
        ),
        ({"train.batch_size": 32.5}, "train.batch_size takes a whole number, not 32.5"),
        ({"train.optimizer.lr": True}, "train.optimizer.lr takes a number, not True"),
        ({"train.optimizer.lr": "fast"}, "train.optimizer.lr takes a number, not 'fast'"),
        (
            {"train.precision": "bf16"},
            "train.precision: unknown search parameter; use hparams.<name>, data.params.<name> "
            "or one of train.optimizer.lr, train.optimizer.weight_decay, "
            "train.optimizer.momentum, train.batch_size, train.epochs, train.grad_clip_norm",
        ),
    ],
)
def test_overrides_that_make_an_invalid_spec_raise_value_error(
    params: dict[str, Scalar], message: str
) -> None:
    with pytest.raises(ValueError) as info:
        apply_overrides(SPEC, params, Fidelity())
    assert str(info.value) == message
