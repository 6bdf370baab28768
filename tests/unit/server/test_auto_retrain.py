"""A drift alert retrains by itself: once per incident, never within the cool-down, through the
control plane's periodic monitor and through the monitor route alike.

A real control plane (SQLite) over FastAPI's TestClient, a real MLflow registry on SQLite, the
request log written by its real writer: a version with a training profile that sees fainter
digits than it trained on (drift), with feedback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.alerts import alert_url
from flywheel.server.monitor_loop import MonitorDriver
from flywheel.server.monitoring import check_and_retrain
from flywheel.server.retraining import read_retrain_record
from flywheel.settings import Settings
from flywheel.specs.serving import ServeSpec
from flywheel.storage import write_text
from flywheel.tracking import TAG_JOB_ID, TAG_SERVE_SPEC, TAG_TEAM
from flywheel.wire import AlertState

from .helpers import TEAMS, ControlPlane, MemoryBackend, experiment_folder, running_plane, submit
from .monitoring_helpers import drifted_version

MODEL = "digits-drifting"
RETRAIN = ServeSpec.model_validate(
    {"monitor": {"retrain_on_alert": True, "retrain_cooldown_hours": 1, "sample_rate": 1.0}}
)


@pytest.fixture
def control(tmp_path: Path) -> Iterator[ControlPlane]:
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=f"sqlite:///{tmp_path}/m.db")
    with running_plane(settings, TEAMS, MemoryBackend()) as plane:
        yield plane


def _serve_drifting(control: ControlPlane, tmp_path: Path, spec: ServeSpec = RETRAIN) -> str:
    """An experiment of vision, and version 1 of MODEL registered by its run."""
    job_id = str(submit(control, experiment_folder(tmp_path / "exp"), control.vision)["id"])
    drifted_version(
        control.settings.tracking_uri, str(control.settings.storage_root), MODEL,
        tmp_path / "artifacts", {TAG_SERVE_SPEC: spec.model_dump_json()},
        {TAG_TEAM: "vision", TAG_JOB_ID: job_id},
    )  # fmt: skip
    return job_id


def _driver(control: ControlPlane, models: list[str]) -> MonitorDriver:
    settings, sessions = control.settings, control.app.state.context.sessions
    return MonitorDriver(
        lambda: models, lambda m: check_and_retrain(sessions, settings, TEAMS, m), 60.0
    )


def _experiments(control: ControlPlane) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = control.http.get(
        "/api/v1/experiments", headers=control.admin
    ).json()
    return listed


def test_the_periodic_monitor_retrains_once_per_incident(
    control: ControlPlane, tmp_path: Path
) -> None:
    first = _serve_drifting(control, tmp_path)
    driver = _driver(control, [MODEL, "no-such-model"])

    failed = driver.step()
    again = driver.step()

    assert set(failed) == set(again) == {"no-such-model"}  # one failing model skips only itself
    experiments = _experiments(control)
    assert len(experiments) == 2
    [retraining] = [e for e in experiments if e["id"] != first]
    record = read_retrain_record(str(control.settings.storage_root), MODEL)
    assert record is not None and record.experiment_id == retraining["id"]
    assert retraining["team"] == "vision" and retraining["state"] == "QUEUED"
    history = control.http.get(f"/api/v1/experiments/{retraining['id']}", headers=control.admin)
    assert "drift alert on digits-drifting" in history.json()["transitions"][0]["reason"]


def test_an_incident_soon_after_the_last_retraining_waits_for_the_cool_down(
    control: ControlPlane, tmp_path: Path
) -> None:
    _serve_drifting(control, tmp_path)
    driver = _driver(control, [MODEL])
    driver.step()
    retraining = read_retrain_record(str(control.settings.storage_root), MODEL)
    assert retraining is not None
    control.http.post(f"/api/v1/experiments/{retraining.experiment_id}/stop",
                      headers=control.admin)  # fmt: skip
    root = str(control.settings.storage_root)
    write_text(alert_url(root, MODEL), AlertState().model_dump_json())  # the incident cleared

    driver.step()  # drift again: a new incident, within the hour's cool-down

    alert = json.loads(Path(alert_url(root, MODEL)).read_text())
    assert alert["active"] and alert["since_s"] > retraining.incident_s
    assert len(_experiments(control)) == 2


def test_the_monitor_route_names_the_retraining_it_queued(
    control: ControlPlane, tmp_path: Path
) -> None:
    _serve_drifting(control, tmp_path)

    first = control.http.post(f"/api/v1/models/{MODEL}/monitor", json={}, headers=control.vision)
    second = control.http.post(f"/api/v1/models/{MODEL}/monitor", json={}, headers=control.vision)

    assert first.status_code == 200, first.text
    assert first.json()["drift"] and first.json()["retraining"]
    assert second.json()["retraining"] is None
    assert len(_experiments(control)) == 2


def test_without_the_setting_an_alert_only_alerts(control: ControlPlane, tmp_path: Path) -> None:
    _serve_drifting(control, tmp_path, ServeSpec())

    report = control.http.post(f"/api/v1/models/{MODEL}/monitor", json={}, headers=control.vision)

    assert report.json()["alert"]["active"] and report.json()["retraining"] is None
    assert len(_experiments(control)) == 1
