"""The serving benchmark's verdicts come from the measured numbers alone."""

from __future__ import annotations

from benchmarks.serving import report
from benchmarks.serving.load import LoadResult


def _result(concurrency: int, requests_per_s: float, p50_ms: float = 1.0) -> LoadResult:
    return LoadResult(concurrency, int(requests_per_s), 0, requests_per_s, p50_ms, 2 * p50_ms, 5.0)


def test_each_target_is_judged_from_the_measurements() -> None:
    results = {
        report.CEILING: [_result(1, 5000.0), _result(8, 9000.0)],
        report.FASTAPI: [_result(1, 400.0, p50_ms=2.0), _result(8, 1000.0)],
        report.SERVE_HAPROXY: [_result(1, 300.0, p50_ms=3.0), _result(8, 600.0)],
        report.FLYWHEEL: [_result(1, 250.0, p50_ms=4.5), _result(8, 400.0)],
        report.FLYWHEEL_CANARY: [_result(1, 240.0), _result(8, 300.0)],
        report.FLYWHEEL_LOG_OFF: [_result(1, 250.0, p50_ms=4.0), _result(8, 400.0, p50_ms=10.0)],
        report.FLYWHEEL_LOG_ALL: [_result(1, 245.0, p50_ms=4.1), _result(8, 360.0, p50_ms=11.0)],
    }

    generator, throughput, latency, canary, log = report.verdicts(results)

    assert ": met (c=1: 5000 vs 400 req/s (12.5x); c=8: 9000 vs 1000 req/s (9.0x))" in generator
    assert "NOT met (400 vs 1000 req/s = 0.40x, 0.10x short)" in throughput
    assert "NOT met (4.50 vs 3.00 ms, +1.50 ms, 0.50 ms over)" in latency
    assert "NOT met (c=1: +4.0 %; c=8: +25.0 %)" in canary
    assert "NOT met (c=1: req/s -2.0 %, p50 +2.5 %; c=8: req/s -10.0 %, p50 +10.0 %)" in log


def test_a_target_whose_servers_were_left_out_is_not_measured() -> None:
    results = {report.CEILING: [_result(8, 9000.0)], report.FASTAPI: [_result(8, 1000.0)]}

    verdicts = report.verdicts(results)

    assert verdicts[0].endswith("met (c=8: 9000 vs 1000 req/s (9.0x))")
    assert all(line.endswith(": not measured") for line in verdicts[1:])


def test_the_table_gives_ratios_to_the_fastapi_peer() -> None:
    results = {report.FASTAPI: [_result(8, 1000.0)], report.FLYWHEEL: [_result(8, 500.0, 2.0)]}

    table = report.markdown(results, duration_s=5, warmup_s=1, settle_s=5)

    assert "| flywheel, batching off | 8 | 500 | 2.00 | 4.00 | 0 | 5 | 0.50x | 2.00x |" in table
