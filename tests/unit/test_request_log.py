"""The request log: sampled by id, partitioned by hour, written off the caller, pruned."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.request_log import (
    LoggedFeedback,
    LoggedRequest,
    RequestLogWriter,
    is_sampled,
    log_url,
    read_feedback,
    read_requests,
)

NOW_S = 1_796_032_800.0  # 2026-11-30 10:00 UTC
HOUR_S = 3600.0


def _request(i: int, time_s: float, version: str = "1") -> LoggedRequest:
    return LoggedRequest(
        request_id=f"r{i}", model="digits", version=version, time_s=time_s, latency_ms=2.0,
        ok=True, inputs=[0.0, 1.0], input_shape=[2], prediction=i % 10,
    )  # fmt: skip


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[RequestLogWriter]:
    """A writer whose background thread never fires during a test: tests flush themselves."""
    log = RequestLogWriter(str(tmp_path), 1.0, retention_hours=2, flush_every_s=3600,
                           clock=lambda: NOW_S)  # fmt: skip
    yield log
    log.close()


def test_the_sample_depends_on_the_id_only_and_has_the_configured_rate() -> None:
    ids = [f"request-{i}" for i in range(20_000)]
    sampled = [i for i in ids if is_sampled(i, 0.1)]

    assert 0.09 < len(sampled) / len(ids) < 0.11
    assert sampled == [i for i in ids if is_sampled(i, 0.1)]
    assert all(is_sampled(i, 1.0) for i in ids[:100])
    assert not any(is_sampled(i, 0.0) for i in ids[:100])


def test_records_are_written_per_hour_and_read_back_oldest_first(
    writer: RequestLogWriter, tmp_path: Path
) -> None:
    for i in range(6):
        writer.log_request(_request(i, NOW_S - 3 * HOUR_S + i * HOUR_S / 2))
    writer.log_feedback(LoggedFeedback("r1", "digits", "1", NOW_S, label=1, prediction=1))
    writer.flush()

    hours = sorted(p.name for p in Path(log_url(str(tmp_path), "digits", "requests")).glob("*/*"))
    assert hours == ["hour=07", "hour=08", "hour=09"]
    assert [r.request_id for r in read_requests(str(tmp_path), "digits")] == [
        f"r{i}" for i in range(6)
    ]
    assert [r.request_id for r in read_requests(str(tmp_path), "digits", last_n=3)] == [
        "r3", "r4", "r5",
    ]  # fmt: skip
    since = read_requests(str(tmp_path), "digits", since_s=NOW_S - HOUR_S)
    assert [r.request_id for r in since] == ["r4", "r5"]
    [feedback] = read_feedback(str(tmp_path), "digits")
    assert feedback.correct is True and feedback.label == 1


def test_unsampled_requests_are_not_logged(tmp_path: Path) -> None:
    log = RequestLogWriter(str(tmp_path), 0.1, 24, flush_every_s=3600)
    logged = [log.log_request(_request(i, NOW_S)) for i in range(200)]
    log.close()

    assert len(read_requests(str(tmp_path), "digits")) == sum(logged)
    assert 5 < sum(logged) < 40


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    log = RequestLogWriter(str(tmp_path), 1.0, 24, flush_every_s=3600)
    log.log_request(_request(0, NOW_S))
    log.close()

    assert [r.request_id for r in read_requests(str(tmp_path), "digits")] == ["r0"]


def test_a_full_queue_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    log = RequestLogWriter(str(tmp_path), 1.0, 24, flush_every_s=3600, max_queued=3)
    for i in range(5):
        log.log_request(_request(i, NOW_S + i))
    log.close()

    assert log.dropped == 2
    assert [r.request_id for r in read_requests(str(tmp_path), "digits")] == ["r2", "r3", "r4"]


def test_partitions_older_than_the_retention_are_deleted(
    writer: RequestLogWriter, tmp_path: Path
) -> None:
    writer.log_request(_request(0, NOW_S - 5 * HOUR_S))
    writer.log_request(_request(1, NOW_S - 0.5 * HOUR_S))
    writer.log_feedback(LoggedFeedback("r0", "digits", "1", NOW_S - 5 * HOUR_S, label=3))
    writer.flush()

    assert writer.prune() == 2  # the old hour of requests and of feedback

    assert [r.request_id for r in read_requests(str(tmp_path), "digits")] == ["r1"]
    assert read_feedback(str(tmp_path), "digits") == []


def test_reading_skips_torn_lines_and_ignores_unknown_fields(
    writer: RequestLogWriter, tmp_path: Path
) -> None:
    writer.log_request(_request(0, NOW_S))
    writer.flush()
    [file] = Path(log_url(str(tmp_path), "digits", "requests")).glob("*/*/*.jsonl")
    line = file.read_text().strip()
    line = line.replace('"shadow"', '"region": "eu", "shadow"').replace('"1"', "1")  # a number
    file.write_text(line + '\n{"request_id\n')

    [record] = read_requests(str(tmp_path), "digits")
    assert record == _request(0, NOW_S)


def test_a_file_that_cannot_be_written_is_dropped_and_counted(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the log wants a folder")
    log = RequestLogWriter(str(blocked), 1.0, 24, flush_every_s=3600)
    for i in range(3):
        log.log_request(_request(i, NOW_S))
    log.flush()  # does not raise
    log.close()

    assert log.failed == 3 and log.dropped == 0
