"""Request log: what logging a request costs the caller, against writing it synchronously.

The caller is the gateway, between answering and the next request. ``RequestLogWriter``
samples by id and queues; its thread writes later. The peer writes each record where the caller
runs, the simplest way to keep a durable log: one JSON line appended to a file per request.
Both log the same records (64 floats each, a digits request) under the same temporary storage
root, in the same run; the table gives microseconds per request on the caller and the ratio.
A burst above the writer's queue (10,000 records) would drop the oldest, so the default burst
stays below it and the run checks that nothing was dropped and everything sampled was written.

    .venv/bin/python -m benchmarks.request_log [--requests 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from flywheel.request_log import LoggedRequest, RequestLogWriter, read_requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    records = [_record(i) for i in range(args.requests)]
    rows = []
    for rate in (1.0, 0.1):
        writer_us = _median_us(lambda root, r=rate: _writer(root, records, r), args)
        peer_us = _median_us(lambda root: _synchronous(root, records), args)
        rows.append((rate, writer_us, peer_us))
    print(f"{args.requests} requests of 64 floats, median of {args.repeats} runs, "
          "microseconds per request on the caller")  # fmt: skip
    print()
    print("| sample rate | RequestLogWriter (queue) | synchronous append (peer) | peer / writer |")
    print("|---:|---:|---:|---:|")
    for rate, writer_us, peer_us in rows:
        print(f"| {rate:g} | {writer_us:.1f} | {peer_us:.1f} | {peer_us / writer_us:.1f}x |")
    return 0


def _record(i: int) -> LoggedRequest:
    pixels = [((i * 7 + k) % 17) / 16 for k in range(64)]
    return LoggedRequest(
        f"request-{i}", "digits", "1", 1.8e9 + i / 100, 2.5, True, pixels, [64], i % 10
    )


def _median_us(run: Callable[[str], float], args: argparse.Namespace) -> float:
    times_s = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="fw-bench-log-") as root:
            times_s.append(run(root))
    return statistics.median(times_s) / args.requests * 1e6


def _writer(root: str, records: list[LoggedRequest], rate: float) -> float:
    """Caller's time only; then the log is closed and checked to hold the sample."""
    log = RequestLogWriter(root, rate, retention_hours=24, flush_every_s=0.5)
    start = time.perf_counter()
    sampled = sum(log.log_request(r) for r in records)
    elapsed = time.perf_counter() - start
    log.close()
    assert len(read_requests(root, "digits")) == sampled and log.dropped == 0
    return elapsed


def _synchronous(root: str, records: list[LoggedRequest]) -> float:
    path = Path(root) / "requests.jsonl"
    start = time.perf_counter()
    for record in records:
        with path.open("a") as handle:
            handle.write(json.dumps(asdict(record)) + "\n")
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
