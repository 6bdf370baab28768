"""A control plane on a real SQLite file, driven through FastAPI's TestClient, over the in-memory
experiment backend of :mod:`helpers`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flywheel.server.app import create_app
from flywheel.settings import Settings

from .helpers import TEAMS, ControlPlane, MemoryBackend, bearer


@pytest.fixture
def control(tmp_path: Path) -> Iterator[ControlPlane]:
    settings = Settings(home=tmp_path / "home", max_bundle_bytes=64 * 1024)
    backend = MemoryBackend()
    app = create_app(settings, TEAMS, backend, run_queue=False)
    with TestClient(app) as http:
        admin = bearer(settings.admin_token_path.read_text().strip())
        tokens = {
            team: bearer(http.post(f"/api/v1/teams/{team}/tokens", headers=admin).json()["token"])
            for team in ("vision", "language")
        }
        yield ControlPlane(app, http, backend, settings, admin, tokens["vision"],
                           tokens["language"])  # fmt: skip
