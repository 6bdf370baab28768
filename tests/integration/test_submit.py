"""Submitting experiments to the real embedded platform (local Ray + MLflow server).

Each test runs a real Ray job: roughly 30 to 90 s apiece on 2 cores.
"""

from __future__ import annotations

import re
from pathlib import Path

import mlflow.pytorch
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from flywheel.client import Client
from flywheel.local import PlatformStatus
from flywheel.settings import Settings
from flywheel.tracking import TAG_FAILURE_REASON

from .helpers import (
    EXPERIMENTS,
    REPO,
    acting_as,
    copy_experiment,
    error_code,
    run_cli,
    run_of_job,
    team_settings,
)

pytestmark = pytest.mark.integration

DIGITS = REPO / "experiments" / "digits"


@pytest.mark.timeout(600)
def test_digits_end_to_end_through_the_cli(
    embedded_platform: PlatformStatus, platform_settings: Settings, tmp_path: Path
) -> None:
    spec_text = (DIGITS / "train.yaml").read_text()
    spec_text = spec_text.replace("epochs: 30", "epochs: 4").replace("digits-mlp", "digits-e2e")
    spec = copy_experiment(DIGITS, tmp_path / "digits", spec_text)

    result = run_cli(platform_settings, "submit", str(spec), "--follow")

    assert result.returncode == 0, result.stdout + result.stderr
    job_id = re.search(r"submitted job (\S+)", result.stdout).group(1)  # type: ignore[union-attr]
    assert "baseline" in result.stdout and "overfit" in result.stdout
    assert f"job {job_id} succeeded" in result.stdout
    client = MlflowClient(platform_settings.tracking_uri)
    run = run_of_job(platform_settings.tracking_uri, job_id)
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]
    assert {"train_loss", "val_loss", "baseline_val_accuracy", "overfit_final_loss"} <= set(
        run.data.metrics
    )
    assert run.data.params["train.scaling.num_workers"] == "2"
    assert run.data.params["version.ray"] == "2.60.0"
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation"}
    assert inputs["training"].digest == run.data.tags["flywheel.snapshot"][:36]
    assert run.data.tags["flywheel.snapshot_url"].endswith(run.data.tags["flywheel.snapshot"])
    assert "spec/train.yaml" in [a.path for a in client.list_artifacts(run.info.run_id, "spec")]
    [version] = client.search_model_versions("name='digits-e2e'")
    assert version.run_id == run.info.run_id
    assert version.tags["flywheel.profile"] == "profile/training_profile.json"
    mlflow.set_tracking_uri(platform_settings.tracking_uri)
    model = mlflow.pytorch.load_model(f"models:/digits-e2e/{version.version}")
    assert model(__import__("torch").zeros(3, 64)).shape == (3, 10)
    _assert_the_run_and_model_are_the_teams_alone(platform_settings, job_id, run)


def _assert_the_run_and_model_are_the_teams_alone(
    settings: Settings, job_id: str, run: Run
) -> None:
    """The job ran as its team's MLflow identity (vision): the team reads what it created,
    another team reads none of it, and the password is in no param, tag or job log."""
    client = MlflowClient(settings.tracking_uri)
    vision = Client(team_settings(settings, "vision")).mlflow_env()
    language = Client(team_settings(settings, "language")).mlflow_env()
    with acting_as(vision.username, vision.password):
        assert client.get_run(run.info.run_id).info.status == "FINISHED"
        assert client.get_registered_model("digits-e2e").name == "digits-e2e"
    with acting_as(language.username, language.password):
        assert error_code(lambda: client.get_run(run.info.run_id)) == "PERMISSION_DENIED"
        assert error_code(lambda: client.get_registered_model("digits-e2e")) == (
            "PERMISSION_DENIED"
        )
    assert vision.password
    recorded = str(run.data.params) + str(run.data.tags) + Client(settings).logs(job_id)
    assert vision.password not in recorded


@pytest.mark.timeout(300)
def test_invalid_spec_exits_2_and_creates_no_job(
    embedded_platform: PlatformStatus, platform_settings: Settings, tmp_path: Path
) -> None:
    spec_text = (DIGITS / "train.yaml").read_text().replace("  epochs: 30", "  epocs: 30")
    spec = copy_experiment(DIGITS, tmp_path / "digits", spec_text)
    line = spec_text.splitlines().index("  epocs: 30") + 1
    before = {j.id for j in Client(platform_settings).jobs()}

    result = run_cli(platform_settings, "submit", str(spec))

    assert result.returncode == 2
    assert f"{spec}:{line}: train.epocs: unknown field; did you mean 'epochs'?" in result.stderr
    assert "Traceback" not in result.stderr
    assert {j.id for j in Client(platform_settings).jobs()} == before


@pytest.mark.timeout(300)
def test_overfit_check_fails_a_broken_task(
    embedded_platform: PlatformStatus, platform_settings: Settings, tmp_path: Path
) -> None:
    spec = copy_experiment(EXPERIMENTS / "broken_labels", tmp_path / "broken")

    result = run_cli(platform_settings, "submit", str(spec), "--follow")

    assert result.returncode == 1
    assert "overfit-one-batch check failed" in result.stderr
    job_id = re.search(r"submitted job (\S+)", result.stdout).group(1)  # type: ignore[union-attr]
    run = run_of_job(platform_settings.tracking_uri, job_id)
    assert run.info.status == "FAILED"
    assert "labels that do not match their inputs" in run.data.tags[TAG_FAILURE_REASON]
    assert Client(platform_settings).job(job_id).state == "FAILED"


@pytest.mark.timeout(300)
def test_stopping_a_job_ends_its_run(
    embedded_platform: PlatformStatus, platform_settings: Settings, tmp_path: Path
) -> None:
    spec_text = (EXPERIMENTS / "slow_digits" / "train.yaml").read_text()
    spec = copy_experiment(
        EXPERIMENTS / "slow_digits",
        tmp_path / "slow",
        spec_text.replace("epochs: 8", "epochs: 100"),
    )
    client = Client(platform_settings)
    job_id = client.submit(spec)
    for update in client.follow(job_id, poll_s=0.5):
        if any(e.stage == "train" and (e.epoch or 0) >= 1 for e in update.events):
            break

    result = run_cli(platform_settings, "stop", job_id)

    assert result.returncode == 0, result.stderr
    final = list(client.follow(job_id, poll_s=0.5))[-1].job
    assert final.state == "STOPPED"
    run = run_of_job(platform_settings.tracking_uri, job_id)
    status = MlflowClient(platform_settings.tracking_uri).get_run(run.info.run_id).info.status
    assert status == "KILLED"
