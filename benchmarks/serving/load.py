"""A light closed-loop HTTP/1.1 load generator on raw asyncio streams, run in its own process.

``concurrency`` keep-alive connections each send the same pre-encoded request and send the next
one as soon as the answer has been read (by ``Content-Length``, or chunk by chunk), for
``warmup_s`` + ``duration_s`` seconds. Requests that start inside the measured window are timed
with ``perf_counter_ns``; requests/s counts the successful answers that arrive inside it. The
process's own CPU time over the window is reported too (100 % = one core busy), so that a table
shows whether the generator, not the server, was the limit. A connection the server closes is
counted as a failure and opened again.

``run_load`` starts ``python -m benchmarks.serving.load``, which reads a :class:`LoadSpec` as JSON
on stdin and prints a :class:`LoadResult` as JSON. This module imports only the standard library,
so the process starts in a fraction of a second.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

#: Seconds the in-flight requests get to finish after the window; those that do not are failures.
GRACE_S = 30.0
#: Seconds a connection waits before opening again after a failure (no busy loop on a dead port).
RECONNECT_PAUSE_S = 0.01


@dataclass(frozen=True)
class LoadSpec:
    """What to send where, how many connections, for how long."""

    host: str
    port: int
    path: str
    body: bytes
    concurrency: int
    duration_s: float
    warmup_s: float = 1.0

    def request(self) -> bytes:
        """The request bytes, encoded once and sent as they are on every connection."""
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n\r\n"
        )
        return head.encode() + self.body


@dataclass
class Measurement:
    """What the connections saw in the measured window, raw."""

    latencies_ns: list[int] = field(default_factory=list)
    answered_in_window: int = 0
    failures: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0


@dataclass(frozen=True)
class LoadResult:
    """One measurement, summarised."""

    concurrency: int
    requests: int
    failures: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    generator_cpu_percent: float


def run_load(spec: LoadSpec) -> LoadResult:
    """Measure in a fresh generator process (its own interpreter, its own core if one is free)."""
    document = {**asdict(spec), "body": base64.b64encode(spec.body).decode()}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.serving.load"], input=json.dumps(document),
        capture_output=True, text=True, check=False,
        timeout=spec.warmup_s + spec.duration_s + GRACE_S + 60,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stderr[-2000:]}")
    return LoadResult(**json.loads(done.stdout))


def summarize(spec: LoadSpec, measured: Measurement) -> LoadResult:
    """Requests/s in the window, latency percentiles (nearest rank) and the generator's CPU %."""
    ordered = sorted(measured.latencies_ns)

    def percentile_ms(share: float) -> float:
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] / 1e6

    cpu_percent = 100.0 * measured.cpu_s / measured.wall_s if measured.wall_s else 0.0
    return LoadResult(
        concurrency=spec.concurrency,
        requests=measured.answered_in_window,
        failures=measured.failures,
        requests_per_s=measured.answered_in_window / spec.duration_s,
        p50_ms=percentile_ms(0.50),
        p99_ms=percentile_ms(0.99),
        generator_cpu_percent=cpu_percent,
    )


async def measure(spec: LoadSpec) -> Measurement:
    """Run the closed loop in this event loop; returns the raw measurement."""
    measured = Measurement()
    request = spec.request()
    start = time.perf_counter_ns()
    window = (
        start + int(spec.warmup_s * 1e9),
        start + int((spec.warmup_s + spec.duration_s) * 1e9),
    )
    workers = [
        asyncio.create_task(_connection(spec, request, window, measured))
        for _ in range(spec.concurrency)
    ]
    await _clock_cpu(window, measured)
    _, pending = await asyncio.wait(workers, timeout=GRACE_S)
    for worker in pending:
        worker.cancel()
    measured.failures += len(pending)
    return measured


async def _connection(
    spec: LoadSpec, request: bytes, window: tuple[int, int], measured: Measurement
) -> None:
    """One keep-alive connection: send, read the whole answer, repeat until the window ends."""
    measure_from, stop_at = window
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    while (started := time.perf_counter_ns()) < stop_at:
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(spec.host, spec.port)
            writer.write(request)
            status, keep_alive = await _read_response(reader)
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError):
            if started >= measure_from:
                measured.failures += 1
            _close(writer)
            writer = None
            await asyncio.sleep(RECONNECT_PAUSE_S)
            continue
        done = time.perf_counter_ns()
        if started >= measure_from:
            if 200 <= status < 300:
                measured.latencies_ns.append(done - started)
                measured.answered_in_window += done <= stop_at
            else:
                measured.failures += 1
        if not keep_alive:
            _close(writer)
            writer = None
    _close(writer)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one answer; returns its status and whether the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        await reader.readexactly(int(lower[at + 17 : lower.index(b"\r\n", at + 2)]))
    elif b"\r\ntransfer-encoding: chunked" in lower:
        await _read_chunks(reader)
    else:
        raise ValueError("answer without Content-Length or chunked encoding")
    return status, b"\r\nconnection: close" not in lower


async def _read_chunks(reader: asyncio.StreamReader) -> None:
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        await reader.readexactly(size + 2)
    await reader.readuntil(b"\r\n")  # no trailers: the empty line after the last chunk


async def _clock_cpu(window: tuple[int, int], measured: Measurement) -> None:
    """This process's CPU time (user + system) and the wall time across the window."""
    measure_from, stop_at = window
    await asyncio.sleep(max(0.0, (measure_from - time.perf_counter_ns()) / 1e9))
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.sleep(max(0.0, (stop_at - time.perf_counter_ns()) / 1e9))
    measured.cpu_s, measured.wall_s = time.process_time() - cpu, time.perf_counter() - wall


def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()


def main() -> None:
    document = json.loads(sys.stdin.read())
    spec = LoadSpec(**{**document, "body": base64.b64decode(document["body"])})
    print(json.dumps(asdict(summarize(spec, asyncio.run(measure(spec))))))


if __name__ == "__main__":
    main()
