"""``/healthz`` (liveness) and ``/readyz`` (readiness) of the control plane, on SQLite.

Readiness asks the database: it must answer and be migrated to the newest revision. Neither
probe needs a token, and neither says more than ready or not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from flywheel.settings import Settings

from .helpers import TEAMS, ControlPlane, MemoryBackend, running_plane


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    with running_plane(Settings(home=tmp_path / "home"), TEAMS, MemoryBackend()) as plane:
        yield plane


def test_a_migrated_database_is_ready_without_a_token(plane: ControlPlane) -> None:
    answer = plane.http.get("/readyz")
    assert (answer.status_code, answer.json()) == (200, {"status": "ready"})
    assert plane.http.get("/healthz").json() == {"status": "ok"}


def test_a_schema_behind_head_is_not_ready(plane: ControlPlane) -> None:
    with plane.app.state.context.sessions.begin() as session:
        session.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    answer = plane.http.get("/readyz")
    assert (answer.status_code, answer.json()) == (503, {"status": "not ready"})
    assert plane.http.get("/healthz").status_code == 200  # alive: restarting would not help


def test_a_database_that_does_not_answer_is_not_ready(plane: ControlPlane, tmp_path: Path) -> None:
    gone = create_engine(f"sqlite:///{tmp_path}/no-such-folder/control.db")
    context = plane.app.state.context
    plane.app.state.context = dataclasses.replace(context, sessions=sessionmaker(gone))
    answer = plane.http.get("/readyz")
    assert answer.status_code == 503
    assert answer.text == '{"status":"not ready"}'  # no error text, no URL
    assert plane.http.get("/healthz").status_code == 200


def test_the_probes_are_not_in_the_api_schema(plane: ControlPlane) -> None:
    paths = plane.http.get("/openapi.json").json()["paths"]
    assert "/readyz" not in paths and "/healthz" not in paths
