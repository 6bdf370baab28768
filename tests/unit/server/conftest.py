"""A control plane on a real database, driven through FastAPI's TestClient, over the in-memory
experiment backend of :mod:`helpers`.

Every test that uses ``control`` runs twice: on a SQLite file and on a real PostgreSQL server
(the pgserver wheel, started once per session: about 5 s; each test gets a database of its own).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pgserver
import pytest

from flywheel.settings import Settings

from .helpers import TEAMS, ControlPlane, MemoryBackend, running_plane


@pytest.fixture(scope="session")
def postgres() -> Iterator[pgserver.PostgresServer]:
    """A PostgreSQL server under a short temporary folder (its unix socket lives there)."""
    server = pgserver.get_server(tempfile.mkdtemp(prefix="pg-"), cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """None: SQLite under the home (the default); else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    server: pgserver.PostgresServer = request.getfixturevalue("postgres")
    name = f"t_{uuid.uuid4().hex[:12]}"
    server.psql(f"CREATE DATABASE {name};")
    return server.get_uri(name).replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def control(tmp_path: Path, database_url: str | None) -> Iterator[ControlPlane]:
    settings = Settings(
        home=tmp_path / "home", max_bundle_bytes=64 * 1024, database_url=database_url
    )
    with running_plane(settings, TEAMS, MemoryBackend()) as plane:
        yield plane
