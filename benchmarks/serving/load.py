"""A closed-loop HTTP load generator: N concurrent clients, each sending its next request as soon
as the previous one is answered, for a fixed time. Reports requests/s and latency percentiles.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    requests: int
    failures: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float


def run_load(
    url: str, body: bytes, concurrency: int, duration_s: float, warmup_s: float = 1.0
) -> LoadResult:
    """POST ``body`` to ``url`` from ``concurrency`` clients for ``duration_s`` after a warm-up."""
    return asyncio.run(_load(url, body, concurrency, duration_s, warmup_s))


async def _load(
    url: str, body: bytes, concurrency: int, duration_s: float, warmup_s: float
) -> LoadResult:
    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(timeout=60, limits=limits, trust_env=False) as client:
        start = time.perf_counter()
        measure_from, stop_at = start + warmup_s, start + warmup_s + duration_s

        async def worker() -> None:
            nonlocal failures
            while (now := time.perf_counter()) < stop_at:
                try:
                    response = await client.post(url, content=body, headers=headers)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                done = time.perf_counter()
                if now >= measure_from:
                    if ok:
                        latencies.append((done - now) * 1000.0)
                    else:
                        failures += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    ordered = sorted(latencies) or [float("nan")]
    return LoadResult(
        concurrency=concurrency,
        requests=len(latencies),
        failures=failures,
        requests_per_s=len(latencies) / duration_s,
        p50_ms=statistics.median(ordered),
        p99_ms=ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    )
