"""The serving benchmark's table and its verdict on each of the issue's targets, from the
measurements alone (pure functions: the numbers decide)."""

from __future__ import annotations

import math

from benchmarks.serving.load import LoadResult

CEILING = "trivial responder (generator ceiling)"
FASTAPI = "FastAPI + uvicorn (1 process)"
SERVE_PROXY = "plain Serve, Python proxy"
SERVE_HAPROXY = "plain Serve, HAProxy"
MLFLOW = "mlflow models serve"
FLYWHEEL = "flywheel, batching off"
FLYWHEEL_BATCHED = "flywheel, batching on"
FLYWHEEL_CANARY = "flywheel, 10 % canary"
FLYWHEEL_LOG_OFF = "flywheel, request log off (sample rate 0)"
FLYWHEEL_LOG_ALL = "flywheel, request log of every request (sample rate 1)"
#: The request log at sample rate 1 may cost at most this share of req/s (the run's noise).
LOG_COST_LIMIT = 0.05

#: The generator's ceiling must be at least this many times the fastest peer's requests/s.
CEILING_FACTOR = 2.0

Results = dict[str, list[LoadResult]]


def markdown(results: Results, duration_s: float, warmup_s: float, settle_s: float) -> str:
    """One row per server and concurrency; ratios are to the FastAPI peer at that concurrency."""
    fastapi = {r.concurrency: r for r in results.get(FASTAPI, [])}
    lines = [
        f"Closed-loop keep-alive load, one-row OIP v2 requests, {duration_s:g} s per level after "
        f"a {warmup_s:g} s warm-up; each server idle {settle_s:g} s first, once it answers. "
        "Generator CPU: its process's CPU time over the window (100 % = one core).",
        "",
        "| server | concurrency | req/s | p50 ms | p99 ms | failed | generator CPU % "
        "| req/s vs FastAPI | p50 vs FastAPI |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, measured in results.items():
        for r in measured:
            peer = fastapi.get(r.concurrency)
            rps = _ratio(r.requests_per_s, peer.requests_per_s if peer else None)
            p50 = _ratio(r.p50_ms, peer.p50_ms if peer else None)
            lines.append(
                f"| {name} | {r.concurrency} | {r.requests_per_s:.0f} | {r.p50_ms:.2f} | "
                f"{r.p99_ms:.2f} | {r.failures} | {r.generator_cpu_percent:.0f} | {rps} | {p50} |"
            )
    return "\n".join(lines)


def verdicts(results: Results) -> list[str]:
    """One line per target: met or not, with the measured figures; 'not measured' if a server
    the target needs was left out of the run."""
    return [
        _generator(results),
        _throughput(results),
        _latency(results),
        _canary(results),
        _request_log(results),
    ]


def _generator(results: Results) -> str:
    target = f"generator ceiling >= {CEILING_FACTOR:g}x the fastest peer's req/s at each level"
    ceiling = _by_concurrency(results, CEILING)
    peers = [r for name, rs in results.items() if name != CEILING for r in rs]
    if not ceiling or not peers:
        return f"- {target}: not measured"
    parts, met = [], True
    for c, top in sorted(ceiling.items()):
        fastest = max((r.requests_per_s for r in peers if r.concurrency == c), default=0.0)
        factor = top.requests_per_s / fastest if fastest else math.inf
        met &= factor >= CEILING_FACTOR
        parts.append(f"c={c}: {top.requests_per_s:.0f} vs {fastest:.0f} req/s ({factor:.1f}x)")
    return f"- {target}: {'met' if met else 'NOT met'} ({'; '.join(parts)})"


def _throughput(results: Results) -> str:
    target = "flywheel >= 0.5x the FastAPI peer's req/s at c=8"
    flywheel, fastapi = _at(results, FLYWHEEL, 8), _at(results, FASTAPI, 8)
    if flywheel is None or fastapi is None or not fastapi.requests_per_s:
        return f"- {target}: not measured"
    ratio = flywheel.requests_per_s / fastapi.requests_per_s
    distance = "" if ratio >= 0.5 else f", {0.5 - ratio:.2f}x short"
    return (
        f"- {target}: {'met' if ratio >= 0.5 else 'NOT met'} ({flywheel.requests_per_s:.0f} vs "
        f"{fastapi.requests_per_s:.0f} req/s = {ratio:.2f}x{distance})"
    )


def _latency(results: Results) -> str:
    target = "flywheel p50 at c=1 within 1 ms of plain Serve behind HAProxy"
    flywheel, serve = _at(results, FLYWHEEL, 1), _at(results, SERVE_HAPROXY, 1)
    if flywheel is None or serve is None:
        return f"- {target}: not measured"
    gap = flywheel.p50_ms - serve.p50_ms
    met = gap <= 1.0
    distance = "" if met else f", {gap - 1.0:.2f} ms over"
    return (
        f"- {target}: {'met' if met else 'NOT met'} ({flywheel.p50_ms:.2f} vs "
        f"{serve.p50_ms:.2f} ms, {gap:+.2f} ms{distance})"
    )


def _canary(results: Results) -> str:
    target = "a 10 % canary costs under 10 % of flywheel's req/s (batching off), at each level"
    canary, alone = _by_concurrency(results, FLYWHEEL_CANARY), _by_concurrency(results, FLYWHEEL)
    levels = sorted(set(canary) & set(alone))
    if not levels:
        return f"- {target}: not measured"
    parts, met = [], True
    for c in levels:
        base = alone[c].requests_per_s
        cost = 1.0 - canary[c].requests_per_s / base if base else math.nan
        met &= cost < 0.10
        parts.append(f"c={c}: {100 * cost:+.1f} %")
    return f"- {target}: {'met' if met else 'NOT met'} ({'; '.join(parts)})"


def _request_log(results: Results) -> str:
    target = (
        f"logging every request costs under {100 * LOG_COST_LIMIT:g} % of the req/s and p50 "
        "without the log, at each level"
    )
    logged, off = (
        _by_concurrency(results, FLYWHEEL_LOG_ALL),
        _by_concurrency(results, FLYWHEEL_LOG_OFF),
    )
    levels = sorted(set(logged) & set(off))
    if not levels:
        return f"- {target}: not measured"
    parts, met = [], True
    for c in levels:
        base = off[c]
        cost = (
            1.0 - logged[c].requests_per_s / base.requests_per_s
            if base.requests_per_s
            else math.nan
        )
        slower = logged[c].p50_ms / base.p50_ms - 1.0 if base.p50_ms else math.nan
        met &= cost < LOG_COST_LIMIT and slower < LOG_COST_LIMIT
        parts.append(f"c={c}: req/s {100 * -cost:+.1f} %, p50 {100 * slower:+.1f} %")
    return f"- {target}: {'met' if met else 'NOT met'} ({'; '.join(parts)})"


def _by_concurrency(results: Results, name: str) -> dict[int, LoadResult]:
    return {r.concurrency: r for r in results.get(name, [])}


def _at(results: Results, name: str, concurrency: int) -> LoadResult | None:
    return _by_concurrency(results, name).get(concurrency)


def _ratio(value: float, reference: float | None) -> str:
    if reference is None or not reference or math.isnan(reference) or math.isnan(value):
        return "-"
    return f"{value / reference:.2f}x"


def operations_markdown(operations: list[tuple[str, float]]) -> str:
    """How long each flywheel serving operation took, as the client waited for it (through the
    control plane, until Serve runs the new document)."""
    lines = ["| flywheel serving operation (in order) | seconds |", "|---|---:|"]
    lines += [f"| {what} | {seconds:.1f} |" for what, seconds in operations]
    return "\n".join(lines)
