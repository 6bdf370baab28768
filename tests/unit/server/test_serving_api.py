"""Serving behind the control plane: typed operations, team ownership, bad input as 4xx.

The public Client over FastAPI's TestClient, against the serving plane of :mod:`serving_helpers`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from flywheel.client import Client
from flywheel.errors import ServeInputError
from flywheel.server.app import create_app
from flywheel.settings import Settings

from .helpers import TEAMS, MemoryBackend, bearer
from .serving_helpers import serving_plane, stats_server


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[tuple[TestClient, Settings, dict[str, str]]]:
    settings = Settings(home=tmp_path / "home")
    with stats_server() as port:
        serving = serving_plane(tmp_path, port)
        app = create_app(settings, TEAMS, MemoryBackend(), run_queue=False, serving=serving)
        with TestClient(app) as http:
            admin = bearer(settings.admin_token_path.read_text().strip())
            tokens = {
                t.name: http.post(f"/api/v1/teams/{t.name}/tokens", headers=admin).json()["token"]
                for t in TEAMS.teams[:2]
            }
            yield http, settings, tokens


def client_of(plane: tuple[TestClient, Settings, dict[str, str]], team: str | None) -> Client:
    http, settings, tokens = plane
    token = tokens[team] if team else settings.admin_token_path.read_text().strip()
    return Client(settings.model_copy(update={"token": SecretStr(token)}), http=http)


def test_a_team_serves_its_own_model_through_typed_operations(
    plane: tuple[TestClient, Settings, dict[str, str]],
) -> None:
    vision = client_of(plane, TEAMS.teams[0].name)

    deployed = vision.deploy("digits-vision", version="1")
    canary = vision.rollout("digits-vision", "2", "canary", canary_percent=20)
    promoted = vision.promote("digits-vision")

    assert (deployed.champion, deployed.generation) == ("1", 1)
    assert (canary.challenger, canary.mode, canary.challenger_percent) == ("2", "canary", 20.0)
    assert (promoted.champion, promoted.challenger) == ("2", None)
    assert [(v.model, v.version, v.role) for v in vision.models()] == [
        ("digits-vision", "2", "champion")
    ]
    assert vision.cluster().serve_url == "http://127.0.0.1:1"


def test_a_team_can_neither_see_nor_touch_another_teams_model(
    plane: tuple[TestClient, Settings, dict[str, str]],
) -> None:
    vision = client_of(plane, TEAMS.teams[0].name)
    language = client_of(plane, TEAMS.teams[1].name)
    admin = client_of(plane, None)
    vision.deploy("digits-vision", version="1")

    for operation in (
        lambda: language.deploy("digits-vision", version="2"),
        lambda: language.undeploy("digits-vision"),
        lambda: language.promote("digits-vision"),
        lambda: vision.deploy("digits-nobody"),  # registered outside an experiment
        lambda: vision.deploy("no-such-model"),
    ):
        with pytest.raises(ServeInputError, match="has no registered model"):
            operation()

    assert language.models() == []
    assert [v.version for v in vision.models()] == ["1"]
    assert admin.deploy("digits-nobody").champion == "2"  # the admin serves any model
    assert {v.model for v in admin.models()} == {"digits-vision", "digits-nobody"}


def test_bad_requests_get_4xx_and_change_nothing(
    plane: tuple[TestClient, Settings, dict[str, str]],
) -> None:
    http, _, tokens = plane
    team = bearer(tokens[TEAMS.teams[0].name])
    before = http.get("/api/v1/models", headers=team).json()

    answers = [
        http.post("/api/v1/models/digits-vision/deploy", json={"version": "1"}),  # no token
        http.post("/api/v1/models/..%2Fetc/deploy", json={}, headers=team),
        http.post("/api/v1/models/digits-vision/deploy", json={"nope": 1}, headers=team),
        http.post(
            "/api/v1/models/digits-vision/rollout",
            json={"version": "2", "mode": "canary", "canary_percent": 150}, headers=team,
        ),
        http.post("/api/v1/models/digits-vision/deploy", json={"version": "9"}, headers=team),
        http.post("/api/v1/models/digits-vision/promote", headers=team),  # nothing served
    ]  # fmt: skip

    assert [a.status_code for a in answers] == [401, 404, 422, 422, 400, 400]
    assert all("error" in a.json() or "detail" in a.json() for a in answers)
    assert http.get("/api/v1/models", headers=team).json() == before
