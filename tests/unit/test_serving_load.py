"""The serving benchmark's load generator against the trivial responder, on loopback.

Cost: about 2 s (short windows; one test starts the generator as its own process).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from benchmarks.serving import responder
from benchmarks.serving.load import (
    LoadSpec,
    Measurement,
    _read_response,
    measure,
    run_load,
    summarize,
)

BODY = b'{"inputs": [{"name": "input-0", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}'


async def _measure_against_responder(
    concurrency: int, close_every: int | None = None
) -> tuple[Measurement, list[responder.Responder], LoadSpec]:
    connections: list[responder.Responder] = []
    server = await responder.start("127.0.0.1", 0, close_every, connections)
    port = server.sockets[0].getsockname()[1]
    spec = LoadSpec("127.0.0.1", port, "/v2/models/m/infer", BODY, concurrency, 0.3, warmup_s=0.0)
    async with server:
        measured = await measure(spec)
    return measured, connections, spec


def test_every_answer_is_counted_and_timed() -> None:
    measured, connections, spec = asyncio.run(_measure_against_responder(concurrency=4))

    answered = sum(c.answered for c in connections)
    assert len(connections) == 4
    assert measured.failures == 0
    assert answered > 0
    # Without a warm-up every request starts in the window and is timed; the few in flight when
    # the window closes are answered after it and not counted as throughput.
    assert len(measured.latencies_ns) == answered
    assert answered - spec.concurrency <= measured.answered_in_window <= answered
    assert all(latency > 0 for latency in measured.latencies_ns)
    result = summarize(spec, measured)
    assert result.requests_per_s == pytest.approx(measured.answered_in_window / 0.3)
    assert 0 < result.p50_ms <= result.p99_ms
    assert measured.wall_s == pytest.approx(0.3, abs=0.1)


def test_a_closed_connection_is_a_failure_and_is_opened_again() -> None:
    measured, connections, _ = asyncio.run(_measure_against_responder(2, close_every=5))

    closed = sum(c.seen == 5 for c in connections)  # closed instead of answering the 5th
    assert closed > 0
    assert len(connections) > 2  # a closed connection is opened again
    assert measured.failures == closed
    assert len(measured.latencies_ns) == sum(c.answered for c in connections)


def test_chunked_answers_are_read_whole() -> None:
    async def read() -> tuple[int, bool, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nNEXT"
        )
        reader.feed_eof()
        status, keep_alive = await _read_response(reader)
        return status, keep_alive, await reader.read()

    assert asyncio.run(read()) == (200, False, b"NEXT")


@pytest.fixture
def responder_port() -> Iterator[int]:
    """The trivial responder on a free port, in a thread of its own."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(responder.start("127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        server.close()
        loop.close()


def test_the_generator_process_reports_throughput_latency_and_its_cpu(responder_port: int) -> None:
    spec = LoadSpec("127.0.0.1", responder_port, "/", BODY, 2, duration_s=0.3, warmup_s=0.1)

    result = run_load(spec)

    assert result.concurrency == 2
    assert result.failures == 0
    assert result.requests > 0
    assert result.requests_per_s == pytest.approx(result.requests / 0.3)
    assert 0 < result.p50_ms <= result.p99_ms
    assert 0 < result.generator_cpu_percent <= 200
