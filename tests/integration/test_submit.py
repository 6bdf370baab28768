"""Submitting experiments to the real embedded platform (local Ray + MLflow server): bad specs,
a failing check, stopping. (A digits experiment submitted and followed through the CLI, tracked
and registered: test_serving.py, whose model it serves.)

Each test that runs a real Ray job takes roughly 30 to 60 s on 2 cores.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow import MlflowClient

from flywheel.client import Client
from flywheel.local import PlatformStatus
from flywheel.settings import Settings
from flywheel.tracking import TAG_FAILURE_REASON

from .helpers import (
    EXPERIMENTS,
    REPO,
    copy_experiment,
    run_cli,
    run_of_job,
)

pytestmark = pytest.mark.integration

DIGITS = REPO / "experiments" / "digits"


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
