"""Served models count against their team's quota as admitted work that training never preempts.

A real control plane (SQLite) over FastAPI's TestClient, the real serving service over an
in-memory Serve backend and a SQLite MLflow registry (:mod:`serving_helpers`); the queue driver
is stepped by the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from flywheel.server.app import create_app
from flywheel.settings import Settings

from .helpers import (
    SPEC,
    TEAMS,
    MemoryBackend,
    bearer,
    experiment_folder,
    folder_tar_gz,
    team_tokens,
)
from .serving_helpers import serving_plane, stats_server


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FastAPI, TestClient, dict[str, dict[str, str]]]]:
    """vision serves digits-vision (one replica of one CPU) on a 2-CPU cluster."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=uri)
    with stats_server() as port:
        plane = serving_plane(tmp_path, port)
        app = create_app(settings, TEAMS, MemoryBackend(capacity_cpu=2.0), run_queue=False,
                         serving=plane)  # fmt: skip
        with TestClient(app) as http:
            tokens = team_tokens(http, settings, TEAMS)
            headers = {team: bearer(token) for team, token in tokens.items()}
            headers["admin"] = bearer(settings.admin_token_path.read_text().strip())
            deployed = http.post("/api/v1/models/digits-vision/deploy", json={"version": "1"},
                                 headers=headers["vision"])  # fmt: skip
            assert deployed.status_code == 200, deployed.text
            yield app, http, headers


def _submit(http: TestClient, folder: Path, headers: dict[str, str], team: str = "vision") -> str:
    spec = SPEC.replace("team: vision", f"team: {team}")
    response = http.post(
        "/api/v1/experiments", headers=headers, data={"spec_file": "train.yaml"},
        files={"bundle": ("b.tar.gz", folder_tar_gz(experiment_folder(folder, spec)),
                          "application/gzip")},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_a_served_model_holds_its_team_s_quota_and_the_cluster(
    served: tuple[FastAPI, TestClient, dict[str, dict[str, str]]], tmp_path: Path
) -> None:
    app, http, headers = served
    first = _submit(http, tmp_path / "a", headers["vision"])
    second = _submit(http, tmp_path / "b", headers["vision"])

    app.state.driver.step()

    usage = http.get("/api/v1/teams/vision", headers=headers["vision"]).json()
    assert usage["usage"]["cpu"] == 2.0 and usage["admitted"] == 1  # the model's CPU + one job
    states = {e["id"]: e["state"] for e in http.get("/api/v1/experiments",
                                                    headers=headers["vision"]).json()}  # fmt: skip
    assert states == {first: "ADMITTED", second: "QUEUED"}
    why = http.get(f"/api/v1/experiments/{second}/explain", headers=headers["vision"]).json()
    assert why["waiting"] and "serving:digits-vision" in why["holders"]
    scraped = http.get("/metrics", headers=headers["admin"]).text
    used = {
        s.labels["team"]: s.value
        for f in text_string_to_metric_families(scraped)
        for s in f.samples
        if s.name == "flywheel_team_used_cpu_cores"
    }
    assert used["vision"] == 2.0


def test_another_team_sees_whose_model_holds_the_cluster_not_its_name(
    served: tuple[FastAPI, TestClient, dict[str, dict[str, str]]], tmp_path: Path
) -> None:
    app, http, headers = served
    _submit(http, tmp_path / "a", headers["vision"])
    app.state.driver.step()
    waiting = _submit(http, tmp_path / "b", headers["language"], "language")

    app.state.driver.step()

    why = http.get(f"/api/v1/experiments/{waiting}/explain", headers=headers["language"]).json()
    assert why["waiting"] and "digits-vision" not in str(why)
    assert "team vision" in why["holders"]
