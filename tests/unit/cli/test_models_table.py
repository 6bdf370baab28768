"""`flywheel models` stays readable in an 80-column terminal: no line longer, no header cut."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from flywheel.cli import render
from flywheel.serving.stats import VersionStats
from flywheel.wire import ServedVersion


def version(number: str, role: str, share: float, **stats: object) -> ServedVersion:
    observed = VersionStats.model_validate({"model": "m", "version": number, **stats})
    return ServedVersion(
        model="a-rather-long-model-name-for-digits", version=number, role=role,
        traffic_percent=share, replicas=12, stats=observed,
    )  # fmt: skip


def test_the_table_fits_80_columns_with_every_header_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = io.StringIO()
    monkeypatch.setattr(render, "out", Console(file=sink, width=80, soft_wrap=True))
    render.models_table(
        [
            version("12", "champion", 70.0, requests=1234567, errors=12, request_rate_per_s=912.3,
                    feedback=10000, online_accuracy=0.9512),
            version("13", "challenger", 30.0, requests=234567, shadow_agreement=0.97, feedback=99),
        ]
    )  # fmt: skip
    lines = sink.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80, sink.getvalue()
    header = next(line for line in lines if "role" in line)
    for column in ("ver", "role", "share", "repl", "req/s", "done", "err", "agree", "acc (n)"):
        assert column in header, header
    assert "…" not in sink.getvalue()
    assert "a-rather-long-model-name-for-digits" in lines[0]
