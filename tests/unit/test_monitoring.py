"""The monitor report and drift alerts, from a request log of digits traffic (pure, seeded)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from flywheel.alerts import read_alert, record_check
from flywheel.monitoring import monitor_report, next_alert
from flywheel.profiles import TrainingProfile, build_profile
from flywheel.request_log import LoggedFeedback, LoggedRequest
from flywheel.specs.serving import MonitorSpec
from flywheel.wire import AlertState, MonitorReport

SECRET_WEBHOOK = "https://hooks.example/services/T0KEN-SECRET"


class Traffic:
    """A digits model, its profile, and logged requests drawn from held-out digits."""

    def __init__(self) -> None:
        x, y = load_digits(return_X_y=True)
        self.x, self.y = x / 16.0, y
        order = np.random.default_rng(0).permutation(len(x))
        self.train, self.pool = order[:1200], order[1200:]
        self.model = LogisticRegression(max_iter=300).fit(self.x[self.train], y[self.train])
        predicted = self.model.predict(self.x[self.train])
        self.profile: TrainingProfile = build_profile(self.x[self.train], predicted, "classes", 10)

    def requests(self, version: str, rows: np.ndarray, scale: float = 1.0) -> list[LoggedRequest]:
        inputs = self.x[rows] * scale
        predictions = self.model.predict(inputs)
        return [
            LoggedRequest(
                request_id=f"{version}-{i}", model="digits", version=version, time_s=1000.0 + i,
                latency_ms=float(2 + i % 5), ok=i % 50 != 7, inputs=inputs[k].tolist(),
                input_shape=[64], prediction=int(predictions[k]),
            )
            for k, i in enumerate(rows)
        ]  # fmt: skip


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return Traffic()


def _report(traffic: Traffic) -> MonitorReport:
    steady = traffic.requests("1", traffic.pool[:150])
    shifted = traffic.requests("2", traffic.pool[150:250], scale=0.6)
    feedback = [
        LoggedFeedback(r.request_id, "digits", r.version, r.time_s, int(traffic.y[i]), r.prediction)
        for r, i in zip(steady[:40], traffic.pool[:40], strict=True)
    ]
    profiles = {"1": traffic.profile, "2": traffic.profile}
    return monitor_report("digits", steady + shifted, feedback, profiles, MonitorSpec())


def test_the_report_flags_the_drifted_version_and_scores_every_feature(traffic: Traffic) -> None:
    report = _report(traffic)

    assert report.drift is True and report.requests == 250
    first, second = report.versions
    assert (first.version, first.drift, second.version, second.drift) == ("1", False, "2", True)
    assert len(report.features) == 64 and report.features == first.features
    assert second.reasons and any(f.drifted for f in second.features)
    payload = json.loads(report.model_dump_json())
    assert isinstance(payload["drift"], bool) and payload["features"][0]["name"] == "x0"


def test_the_report_has_online_accuracy_latency_and_errors_per_version(traffic: Traffic) -> None:
    first = _report(traffic).versions[0]
    expected = traffic.model.score(traffic.x[traffic.pool[:40]], traffic.y[traffic.pool[:40]])

    assert first.feedback == 40 and first.online_accuracy == pytest.approx(expected)
    failed = sum(int(i) % 50 == 7 for i in traffic.pool[:150])
    assert first.errors == failed and first.error_rate == pytest.approx(failed / 150)
    assert first.latency_p50_ms is not None and 2.0 <= first.latency_p50_ms <= 6.0


def test_a_version_without_a_profile_or_enough_requests_gets_no_verdict(traffic: Traffic) -> None:
    requests = traffic.requests("3", traffic.pool[:20], scale=0.5)
    unprofiled = monitor_report("digits", requests, [], {"3": None}, MonitorSpec())
    few = monitor_report("digits", requests, [], {"3": traffic.profile}, MonitorSpec())

    assert not unprofiled.drift and not unprofiled.versions[0].profiled
    assert not few.drift and not few.versions[0].enough_requests


def test_an_alert_is_raised_once_kept_while_drift_lasts_then_cleared(traffic: Traffic) -> None:
    drifted = _report(traffic)
    quiet = monitor_report(
        "digits", traffic.requests("1", traffic.pool[:150]), [], {"1": traffic.profile},
        MonitorSpec(),
    )  # fmt: skip
    raised = next_alert(AlertState(), drifted, now_s=10.0)
    kept = next_alert(raised, drifted, now_s=20.0)
    cleared = next_alert(kept, quiet, now_s=30.0)

    assert raised.active and raised.since_s == 10.0 and raised.reasons[0].startswith("v2: ")
    assert kept.active and kept.since_s == 10.0 and kept.checked_s == 20.0
    assert not cleared.active and cleared.since_s is None


def test_a_window_too_small_to_judge_leaves_the_alert_as_it_was(traffic: Traffic) -> None:
    raised = next_alert(AlertState(), _report(traffic), now_s=10.0)
    small = monitor_report("digits", traffic.requests("2", traffic.pool[:10]), [],
                           {"2": traffic.profile}, MonitorSpec())  # fmt: skip

    assert next_alert(raised, small, now_s=50.0) == raised.model_copy(update={"checked_s": 50.0})


def test_the_webhook_hears_each_change_once_and_the_log_never_shows_its_url(
    traffic: Traffic, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = str(tmp_path)
    received: list[dict[str, object]] = []

    def webhook(request: httpx.Request) -> httpx.Response:
        received.append(json.loads(request.content))
        return httpx.Response(200)

    transport = httpx.MockTransport(webhook)
    drifted = _report(traffic)
    quiet = monitor_report("digits", traffic.requests("1", traffic.pool[:150]), [],
                           {"1": traffic.profile}, MonitorSpec())  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="flywheel.alerts"):
        for now_s, report in ((1.0, drifted), (2.0, drifted), (3.0, quiet)):
            record_check(root, "digits", report, now_s, SECRET_WEBHOOK, transport)

    assert [r["event"] for r in received] == ["raised", "cleared"]
    assert received[0]["model"] == "digits" and received[0]["since_s"] == 1.0
    assert not read_alert(root, "digits").active
    assert "drift alert raised for model digits" in caplog.text
    assert "T0KEN" not in caplog.text


def test_a_failing_webhook_is_logged_and_the_state_still_stored(
    traffic: Traffic, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(500))
    with caplog.at_level(logging.WARNING, logger="flywheel.alerts"):
        state = record_check(str(tmp_path), "digits", _report(traffic), 1.0, SECRET_WEBHOOK,
                             transport)  # fmt: skip

    assert state.active and read_alert(str(tmp_path), "digits") == state
    assert "webhook failed (HTTPStatusError)" in caplog.text and "T0KEN" not in caplog.text
