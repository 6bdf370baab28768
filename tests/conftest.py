"""Fixtures shared by unit and integration tests: an S3 API server (moto) and a bucket per test.

Cost: the server starts in well under a second, once per session, and is stopped after.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.s3_server import S3Server, running_s3_server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 on a free port, for the whole session."""
    with running_s3_server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new, empty bucket (its name), with the AWS variables pointing at the server; the
    bucket is deleted after the test. Three attempts per request keep failing tests quick."""
    for name, value in s3_server.env(max_attempts=3).items():
        monkeypatch.setenv(name, value)
    bucket = s3_server.new_bucket()
    yield bucket
    if not s3_server.running:
        s3_server.start()
    s3_server.delete_bucket(bucket)
