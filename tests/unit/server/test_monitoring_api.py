"""Data snapshots, monitor checks and readiness reports behind the control plane: a team sees its
own runs and models only, bad input is a 4xx that changes nothing, and the monitor check is a
plain function the control plane can call outside a request.

The public Client over FastAPI's TestClient, against a real control plane app on SQLite and a
real MLflow registry on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from pydantic import SecretStr

from flywheel.alerts import alert_url, read_alert
from flywheel.client import Client
from flywheel.errors import DataNotFoundError, FlywheelError, ServeInputError
from flywheel.server.monitoring import check_model
from flywheel.settings import Settings
from flywheel.snapshots import MANIFEST_FILE, snapshot_url
from flywheel.storage import read_bytes
from flywheel.tracking import TAG_SNAPSHOT, TAG_SNAPSHOT_URL, TAG_TEAM
from flywheel.wire import SnapshotManifest

from .helpers import TEAMS, ControlPlane, MemoryBackend, running_plane
from .serving_helpers import register

VISION, LANGUAGE = (t.name for t in TEAMS.teams[:2])
FINGERPRINTS = {VISION: "a" * 64, LANGUAGE: "b" * 64}


@pytest.fixture
def control(tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane whose MLflow holds a model and a snapshot run of each team."""
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=f"sqlite:///{tmp_path}/m.db")
    for team in (VISION, LANGUAGE):
        artifacts = tmp_path / "artifacts" / team
        register(settings.tracking_uri, f"digits-{team}", team, tmp_path / "model", 1, artifacts)
        _snapshot_run(settings, team, artifacts)
    with running_plane(settings, TEAMS, MemoryBackend()) as plane:
        yield plane


def _snapshot_run(settings: Settings, team: str, artifacts: Path) -> None:
    """A run of ``<team>/digits`` that trained on a snapshot, with its manifest stored."""
    root, fingerprint = str(settings.storage_root), FINGERPRINTS[team]
    url = snapshot_url(root, fingerprint)
    folder = Path(url)
    folder.mkdir(parents=True)
    manifest = SnapshotManifest(
        fingerprint=fingerprint, source="task.load_data", created_at="2026-01-01T00:00:00Z",
        feature_shape=[3], target_shape=[], columns=[], parts=[],
    )  # fmt: skip
    (folder / MANIFEST_FILE).write_text(manifest.model_dump_json())
    client = MlflowClient(settings.tracking_uri)
    experiment = client.create_experiment(f"{team}/digits", str(artifacts / "digits"))
    tags = {TAG_TEAM: team, TAG_SNAPSHOT: fingerprint, TAG_SNAPSHOT_URL: url}
    client.create_run(experiment, run_name=f"run-of-{team}", tags=tags)


def _client(control: ControlPlane, team: str | None) -> Client:
    headers = {VISION: control.vision, LANGUAGE: control.language, None: control.admin}[team]
    token = SecretStr(headers["Authorization"].removeprefix("Bearer "))
    return Client(control.settings.model_copy(update={"token": token}), control.http)


def test_a_team_sees_the_snapshots_of_its_own_runs_only(control: ControlPlane) -> None:
    vision, admin = _client(control, VISION), _client(control, None)

    [own] = vision.data("digits")
    every = admin.data("digits")

    assert (own.fingerprint, [r.run_name for r in own.runs]) == (FINGERPRINTS[VISION],
                                                                 [f"run-of-{VISION}"])  # fmt: skip
    assert own.manifest is not None and own.manifest.source == "task.load_data"
    assert {r.fingerprint for r in every} == set(FINGERPRINTS.values())
    for name in (f"{LANGUAGE}/digits", "nothing"):  # another team's experiment, an unknown one
        with pytest.raises(DataNotFoundError, match=f"no run of experiment '{name}' recorded"):
            vision.data(name)


def test_a_snapshot_url_outside_a_snapshot_folder_is_not_read(control: ControlPlane) -> None:
    """The URL is a run tag that a task can write: only ``<root>/snapshots/<sha256>`` is read."""
    client = MlflowClient(control.settings.tracking_uri)
    experiment = client.get_experiment_by_name(f"{VISION}/digits")
    assert experiment is not None
    tags = {TAG_TEAM: VISION, TAG_SNAPSHOT: "c" * 64, TAG_SNAPSHOT_URL: str(control.settings.home)}
    client.create_run(experiment.experiment_id, run_name="odd", tags=tags)

    reports = {r.fingerprint: r for r in _client(control, VISION).data("digits")}

    assert reports["c" * 64].manifest is None and reports["a" * 64].manifest is not None


def test_a_team_can_neither_monitor_nor_score_another_teams_model(
    control: ControlPlane,
) -> None:
    language, admin = _client(control, LANGUAGE), _client(control, None)
    model = f"digits-{VISION}"

    for operation in (
        lambda: language.monitor(model),
        lambda: language.readiness(model),
        lambda: language.monitor("no-such-model"),
        lambda: language.readiness("no-such-model", version="1"),
    ):
        with pytest.raises(ServeInputError, match=f"team '{LANGUAGE}' has no registered model"):
            operation()
    with pytest.raises(ServeInputError, match="model 'no-such-model' has no version"):
        admin.monitor("no-such-model")

    assert read_bytes(alert_url(str(control.settings.storage_root), model)) is None
    assert _artifacts(control.settings, model) == []


def test_the_owner_checks_and_scores_its_model(control: ControlPlane) -> None:
    vision = _client(control, VISION)
    model = f"digits-{VISION}"

    report = vision.monitor(model, last_n=50)
    scored = vision.readiness(model)

    assert (report.model, report.requests, report.drift) == (model, 0, False)
    assert report.alert is not None and report.alert.checked_s is not None
    assert read_alert(str(control.settings.storage_root), model) == report.alert
    assert (scored.version, len(scored.tests)) == ("1", 28)
    assert _artifacts(control.settings, model) == ["readiness"]


def test_the_monitor_check_runs_outside_a_request(control: ControlPlane) -> None:
    """What a periodic monitor in the control plane calls: settings in, report out, recorded."""
    model = f"digits-{LANGUAGE}"

    report = check_model(control.settings, model, now_s=7.0)

    assert report.alert is not None and report.alert.checked_s == 7.0
    assert read_alert(str(control.settings.storage_root), model).checked_s == 7.0


def test_bad_input_gets_a_4xx_and_changes_nothing(control: ControlPlane) -> None:
    http, team = control.http, control.vision
    monitor = f"/api/v1/models/digits-{VISION}/monitor"
    readiness = f"/api/v1/models/digits-{VISION}/readiness"

    answers = [
        http.post(monitor, json={}),  # no token
        http.post(readiness, json={}),
        http.get("/api/v1/data/digits"),
        http.post(monitor, json={"last": 0}, headers=team),
        http.post(monitor, json={"last": -5}, headers=team),
        http.post(monitor, json={"last": "all"}, headers=team),
        http.post(monitor, json={"lats": 10}, headers=team),
        http.post(readiness, json={"version": "1" * 40}, headers=team),
        http.post("/api/v1/models/bad%20name!/monitor", json={}, headers=team),
        http.post("/api/v1/models/..%2Fetc/readiness", json={}, headers=team),
        http.get("/api/v1/data/..%2Fetc", headers=team),
        http.post(readiness, json={"version": "9"}, headers=team),  # no such version
        http.post(readiness, json={"version": "one"}, headers=team),
    ]

    assert [a.status_code for a in answers] == [401] * 3 + [422] * 6 + [404, 422, 400, 400]
    errors = [a.json() for a in answers if a.status_code in (400, 401)]
    assert all(set(e) == {"error", "kind", "problems"} for e in errors)
    assert read_bytes(alert_url(str(control.settings.storage_root), f"digits-{VISION}")) is None
    assert _artifacts(control.settings, f"digits-{VISION}") == []


def test_a_refused_field_is_one_clear_line_for_the_client(control: ControlPlane) -> None:
    with pytest.raises(FlywheelError, match=r"HTTP 422: body\.last: Input should be greater"):
        _client(control, VISION).monitor(f"digits-{VISION}", last_n=0)


def _artifacts(settings: Settings, model: str) -> list[str]:
    """Top-level artifacts of the run that trained the model's version 1."""
    client = MlflowClient(settings.tracking_uri)
    run_id = client.get_model_version(model, "1").run_id
    return [a.path for a in client.list_artifacts(run_id)]


def test_the_routes_are_documented(control: ControlPlane) -> None:
    paths = control.http.get("/openapi.json").json()["paths"]

    assert {"/api/v1/data/{experiment}", "/api/v1/models/{model}/monitor",
            "/api/v1/models/{model}/readiness"} <= set(paths)  # fmt: skip
