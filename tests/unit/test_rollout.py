"""Pure rollout decisions: which version answers, and what a progressive step decides."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from flywheel.rollout import (
    ModelRoute,
    Observation,
    choose_version,
    percentile,
    progressive_decision,
    serve_target,
    sticky_draw,
)
from flywheel.settings import Settings
from flywheel.specs.serving import RolloutSpec, ServeSpec, SloSpec

SLO = SloSpec(max_error_rate=0.05, max_p95_latency_ms=100.0, min_requests=20)
STEPS = [10.0, 50.0, 100.0]


def route(mode: str | None, percent: float = 0.0) -> ModelRoute:
    challenger = "2" if mode else None
    return ModelRoute.model_validate(
        {"model": "m", "champion": "1", "challenger": challenger, "mode": mode,
         "challenger_percent": percent}
    )  # fmt: skip


@given(st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_without_a_challenger_the_champion_answers_everything(draw: float) -> None:
    assert choose_version(route(None), draw).version == "1"


@given(
    st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    st.floats(min_value=0.0, max_value=100.0),
)
def test_canary_answers_exactly_when_the_draw_falls_in_its_share(draw: float, pct: float) -> None:
    choice = choose_version(route("canary", pct), draw)
    assert choice.version == ("2" if draw * 100 < pct else "1")
    assert choice.shadow is None


def test_a_uniform_grid_of_draws_splits_by_the_weight() -> None:
    draws = [i / 1000 for i in range(1000)]
    answered = [choose_version(route("canary", 10.0), d).version for d in draws]
    assert answered.count("2") == 100


@given(st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_a_shadow_never_answers_but_always_gets_a_copy(draw: float) -> None:
    choice = choose_version(route("shadow"), draw)
    assert (choice.version, choice.shadow) == ("1", "2")


def test_traffic_shares_add_up() -> None:
    canary = route("canary", 30.0)
    assert (canary.traffic_percent("1"), canary.traffic_percent("2")) == (70.0, 30.0)
    shadow = route("shadow")
    assert (shadow.traffic_percent("1"), shadow.traffic_percent("2")) == (100.0, 0.0)


def decide(observed: Observation, step: int = 0, waited_s: float = 60.0, max_wait_s: float = 600.0):  # type: ignore[no-untyped-def]
    return progressive_decision(observed, SLO, step, STEPS, waited_s, 60.0, max_wait_s)


def healthy(requests: int = 50) -> Observation:
    return Observation(requests=requests, errors=0, latencies_ms=(10.0,) * requests)


def test_a_healthy_step_advances_and_the_last_one_promotes() -> None:
    assert decide(healthy()).action == "advance"
    assert decide(healthy(), step=2).action == "promote"


def test_a_step_holds_until_its_duration_and_enough_requests() -> None:
    assert decide(healthy(), waited_s=10.0).action == "hold"
    assert decide(healthy(requests=5)).action == "hold"


def test_a_step_that_never_gets_enough_traffic_is_rolled_back() -> None:
    decision = decide(healthy(requests=5), waited_s=600.0)
    assert decision.action == "rollback" and "5 requests" in decision.reason


def test_slow_answers_roll_back() -> None:
    slow = Observation(requests=50, errors=0, latencies_ms=(10.0,) * 40 + (500.0,) * 10)
    decision = decide(slow)
    assert decision.action == "rollback" and "p95" in decision.reason


def test_errors_roll_back_even_before_the_step_can_be_judged() -> None:
    early = Observation(requests=5, errors=3, latencies_ms=(10.0,) * 2)
    assert decide(early, waited_s=1.0).action == "rollback"


def test_online_accuracy_gates_when_asked_and_enough_labels_exist() -> None:
    slo = SLO.model_copy(update={"min_online_accuracy": 0.9, "min_feedback": 10})
    poor = Observation(requests=50, errors=0, latencies_ms=(10.0,) * 50, feedback=20, correct=10)
    few = Observation(requests=50, errors=0, latencies_ms=(10.0,) * 50, feedback=5, correct=0)
    assert progressive_decision(poor, slo, 0, STEPS, 60.0, 60.0, 600.0).action == "rollback"
    assert progressive_decision(few, slo, 0, STEPS, 60.0, 60.0, 600.0).action == "advance"


@given(
    requests=st.integers(min_value=0, max_value=500),
    errors=st.integers(min_value=0, max_value=500),
    latency_ms=st.floats(min_value=0.1, max_value=1000.0),
    step=st.integers(min_value=0, max_value=2),
    waited_s=st.floats(min_value=0.0, max_value=1000.0),
)
def test_a_promotion_or_advance_always_meets_every_objective(
    requests: int, errors: int, latency_ms: float, step: int, waited_s: float
) -> None:
    errors = min(errors, requests)
    observed = Observation(requests, errors, (latency_ms,) * (requests - errors))
    decision = decide(observed, step=step, waited_s=waited_s)
    if decision.action in ("advance", "promote"):
        assert requests >= SLO.min_requests and waited_s >= 60.0
        assert observed.error_rate <= SLO.max_error_rate
        assert latency_ms <= SLO.max_p95_latency_ms
        assert (decision.action == "promote") == (step == len(STEPS) - 1)


@given(st.lists(st.floats(min_value=0.0, max_value=1e6), min_size=1, max_size=200))
def test_percentile_is_one_of_the_values_and_bounds_most_of_them(values: list[float]) -> None:
    p95 = percentile(values, 95.0)
    assert p95 in values
    assert sum(v <= p95 for v in values) >= 0.95 * len(values)


def test_rollout_steps_must_increase_to_100() -> None:
    for steps in ([10, 50], [50, 10, 100], [0, 100], [10, 10, 100]):
        with pytest.raises(ValidationError):
            RolloutSpec(steps=steps)
    assert RolloutSpec(steps=[25, 100]).steps == [25.0, 100.0]


def test_autoscaling_max_must_not_be_below_min() -> None:
    with pytest.raises(ValidationError, match="below min_replicas"):
        ServeSpec.model_validate({"autoscaling": {"min_replicas": 3, "max_replicas": 2}})


def test_a_sticky_draw_is_fixed_by_its_key_and_spreads_keys_over_the_split() -> None:
    assert sticky_draw("req-7") == sticky_draw("req-7")
    draws = [sticky_draw(f"req-{i}") for i in range(2000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    canary = route("canary", 25.0)
    share = sum(choose_version(canary, d).version == "2" for d in draws) / len(draws)
    assert 0.21 < share < 0.29  # Binomial(2000, 0.25): 4 standard deviations either way


def test_the_serving_target_comes_from_the_cluster_settings() -> None:
    settings = Settings(host="127.0.0.1", serve_port=18000, mlflow_port=15000)
    target = serve_target(settings)
    assert (target.port, target.tracking_uri) == (18000, "http://127.0.0.1:15000")
    assert target.dashboard_url == settings.jobs_url
