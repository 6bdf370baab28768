"""Retraining data: feedback joined to logged requests, mistakes repeated."""

from __future__ import annotations

import numpy as np
import pytest

from flywheel.request_log import LoggedFeedback, LoggedRequest
from flywheel.retraining import RetrainRecord, retrain_due, retraining_data
from flywheel.specs.serving import MonitorSpec
from flywheel.wire import AlertState


def _request(request_id: str, prediction: int | None, value: float) -> LoggedRequest:
    return LoggedRequest(request_id, "digits", "1", 1.0, 2.0, True, [value] * 4, [2, 2], prediction)


def _feedback(request_id: str, label: int | str) -> LoggedFeedback:
    return LoggedFeedback(request_id, "digits", "1", 2.0, label)


def test_mistakes_are_repeated_and_right_answers_kept_once() -> None:
    requests = [_request("a", 3, 0.1), _request("b", 5, 0.2), _request("c", 8, 0.3)]
    feedback = [_feedback("a", 3), _feedback("b", 2), _feedback("c", "8")]

    data = retraining_data(requests, feedback, wrong_repeats=3)

    assert data.request_ids == ("a", "b", "b", "b", "c")
    assert data.labels.tolist() == [3, 2, 2, 2, 8]
    assert data.features.shape == (5, 2, 2) and data.features.dtype == np.float32
    np.testing.assert_allclose(data.features[1], np.full((2, 2), 0.2))
    assert (data.wrong, data.right, data.skipped) == (1, 2, 0)
    assert data.mistaken == (False, True, True, True, False)


def test_feedback_without_a_logged_request_or_a_class_label_is_skipped() -> None:
    requests = [_request("a", 1, 0.0), _request("b", 1, 0.0)]
    feedback = [_feedback("a", "cat"), _feedback("unsampled", 4), _feedback("b", 1)]

    data = retraining_data(requests, feedback)

    assert data.request_ids == ("b",) and data.skipped == 2


def test_the_last_feedback_of_a_request_wins_and_failed_requests_are_ignored() -> None:
    failed = LoggedRequest("f", "digits", "1", 1.0, 2.0, False)
    data = retraining_data([_request("a", 1, 0.0), failed],
                           [_feedback("a", 7), _feedback("a", 1), _feedback("f", 1)])  # fmt: skip

    assert data.request_ids == ("a",) and data.labels.tolist() == [1] and data.skipped == 1


def test_no_feedback_is_empty_data_and_repeats_must_be_positive() -> None:
    assert retraining_data([], []).features.shape == (0,)
    with pytest.raises(ValueError, match="wrong_repeats"):
        retraining_data([], [], wrong_repeats=0)


RULES = MonitorSpec(retrain_on_alert=True, retrain_cooldown_hours=1.0)
RAISED = AlertState(active=True, since_s=1000.0, reasons=["x0 drifted"], checked_s=1000.0)


def test_a_raised_alert_retrains_once_per_incident() -> None:
    first = RetrainRecord(incident_s=1000.0, submitted_s=1000.0, experiment_id="e1")

    assert retrain_due(RAISED, RULES, None, now_s=1000.0)
    assert not retrain_due(RAISED, RULES, first, now_s=1000.0 + 10 * 3600)


def test_a_new_incident_within_the_cool_down_waits_for_it() -> None:
    first = RetrainRecord(incident_s=1000.0, submitted_s=1000.0, experiment_id="e1")
    again = RAISED.model_copy(update={"since_s": 2000.0})

    assert not retrain_due(again, RULES, first, now_s=2000.0)
    assert retrain_due(again, RULES, first, now_s=1000.0 + 3600.0)


def test_no_retraining_without_the_setting_or_without_a_raised_alert() -> None:
    assert not retrain_due(RAISED, MonitorSpec(), None, now_s=1000.0)
    assert not retrain_due(AlertState(), RULES, None, now_s=1000.0)
