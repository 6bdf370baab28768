"""An ingress replica's telemetry: what it offers the request log, and that it never raises.

The Ray metrics are real (``ray.util.metrics`` records without a cluster; what the metrics
agent exports is checked by the serving integration test)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from flywheel.request_log import LoggedFeedback, is_sampled, read_feedback, read_requests
from flywheel.rollout import ModelRoute
from flywheel.runtime.serve.stats import RequestRecord
from flywheel.runtime.serve.telemetry import MAX_LOGGED_ROWS, ReplicaTelemetry, records_to_logged


def _record(i: int, ok: bool = True, shadow: bool = False) -> RequestRecord:
    return RequestRecord(f"r{i}", "digits", "1", shadow, ok, 3.0, 1e9 + i, i % 10)


def _route(rate: float) -> ModelRoute:
    return ModelRoute(model="digits", champion="1", log_sample_rate=rate)


def test_a_one_row_request_is_logged_as_its_row_flattened() -> None:
    rows = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    [logged] = records_to_logged(_record(1), (rows,))
    assert logged.inputs == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] and logged.input_shape == [2, 3]
    assert (logged.request_id, logged.version, logged.prediction) == ("r1", "1", 1)
    [empty] = records_to_logged(_record(2, ok=False), ())
    assert (empty.inputs, empty.input_shape, empty.ok) == ([], [], False)


def test_each_row_of_a_batch_is_logged_with_its_own_prediction_up_to_the_cap() -> None:
    rows = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    logged = records_to_logged(_record(1), (rows,), [4, 7])
    assert [(r.request_id, r.prediction) for r in logged] == [("r1/0", 4), ("r1/1", 7)]
    assert logged[1].inputs == [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]

    many = np.zeros((MAX_LOGGED_ROWS + 5, 4), dtype=np.float32)
    capped = records_to_logged(_record(2), (many,))
    assert len(capped) == MAX_LOGGED_ROWS and all(r.prediction is None for r in capped)


def test_the_sample_of_the_route_reaches_the_log_and_the_rest_does_not(tmp_path: Path) -> None:
    telemetry = ReplicaTelemetry("digits", str(tmp_path))
    telemetry.follow(_route(0.3))
    rows = (np.ones((1, 4), dtype=np.float32),)
    for i in range(200):
        telemetry.observe(_record(i, ok=i % 7 != 0), rows)
    telemetry.feedback(LoggedFeedback("r1", "digits", "1", 1e9 + 1, 1, 1))
    telemetry.close()

    logged = read_requests(str(tmp_path), "digits")
    expected = [f"r{i}" for i in range(200) if is_sampled(f"r{i}", 0.3)]
    assert [r.request_id for r in logged] == expected and 30 < len(expected) < 90
    assert all(r.inputs == [1.0] * 4 for r in logged)
    assert [f.request_id for f in read_feedback(str(tmp_path), "digits")] == ["r1"]


def test_a_new_route_changes_the_sample_rate_of_the_running_log(tmp_path: Path) -> None:
    telemetry = ReplicaTelemetry("digits", str(tmp_path))
    telemetry.follow(_route(0.0))
    telemetry.observe(_record(1))
    telemetry.follow(_route(1.0))
    telemetry.observe(_record(2))
    telemetry.close()
    assert [r.request_id for r in read_requests(str(tmp_path), "digits")] == ["r2"]


def test_storage_trouble_never_reaches_the_request(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the storage root should be")
    telemetry = ReplicaTelemetry("digits", str(blocked))
    telemetry.follow(_route(1.0))
    for i in range(5):
        telemetry.observe(_record(i), ("not an array",))  # type: ignore[arg-type]
        telemetry.observe(_record(i, shadow=True))
    asyncio.run(telemetry.report())  # the drift alert is unreadable: logged, not raised
    telemetry.close()  # the write fails: counted, not raised
    assert telemetry.lost_records == {"queue_full": 0, "write_failed": 5}  # the shadows'
    assert read_requests(str(blocked), "digits") == []
