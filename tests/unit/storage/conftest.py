"""A storage root of each kind: a local folder and a prefix in a bucket of moto's S3 server."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "root")
    bucket: str = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/fw"
