"""The control plane on the real embedded platform: started by `up` with a private admin token,
and work beyond a quota waiting for a real Ray job. (Tokens, isolation and a SIGKILL mid-queue:
test_control_plane_process.py.)

Cost: a few seconds beside the session platform, plus about 60 s for the test that runs two Ray
jobs one after the other.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from flywheel.client import Client
from flywheel.local import EmbeddedPlatform, PlatformStatus
from flywheel.settings import Settings

from .helpers import EXPERIMENTS, copy_experiment, run_cli, wait_for_state

pytestmark = pytest.mark.integration


def _admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.admin_token_path.read_text().strip()}"}


def _team_client(settings: Settings, team: str) -> Client:
    """A client with a new token of ``team``, created with the admin token (from its file)."""
    token = Client(settings).create_token(team).token
    return Client(settings.model_copy(update={"token": SecretStr(token)}))


def _spec(tmp_path: Path, team: str, name: str) -> Path:
    """slow_digits for ``team``, long enough to run until it is stopped."""
    text = (EXPERIMENTS / "slow_digits" / "train.yaml").read_text()
    text = text.replace("team: testing", f"team: {team}").replace("slow-digits", name)
    text = text.replace("epochs: 8", "epochs: 200")
    return copy_experiment(EXPERIMENTS / "slow_digits", tmp_path / name, text)


@pytest.mark.timeout(300)
def test_up_starts_the_control_plane_with_a_private_admin_token(
    embedded_platform: PlatformStatus, platform_settings: Settings
) -> None:
    state = EmbeddedPlatform(platform_settings).status().to_dict()
    assert state["control_plane"] == platform_settings.control_url
    assert state["running"] is True
    token_file = platform_settings.admin_token_path
    assert "admin" in token_file.name and token_file.stat().st_mode & 0o777 == 0o600
    document = httpx.get(f"{platform_settings.control_url}/openapi.json", trust_env=False)
    assert "/api/v1/experiments" in document.json()["paths"]
    result = run_cli(platform_settings, "token", "create", "vision")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.startswith("fw_") and "only its hash is kept" in result.stderr
    who = Client(platform_settings.model_copy(update={"token": SecretStr(token)})).whoami()
    assert (who.team, who.admin) == ("vision", False)


@pytest.mark.timeout(600)
def test_work_beyond_the_quota_waits_for_the_running_job(
    embedded_platform: PlatformStatus, platform_settings: Settings, tmp_path: Path
) -> None:
    """Cost: two real Ray jobs of two workers, one after the other (about 60 s on 2 cores)."""
    solo = _team_client(platform_settings, "solo")
    first = solo.submit(_spec(tmp_path, "solo", "long-first"))
    second = solo.submit(_spec(tmp_path, "solo", "long-second"))
    wait_for_state(solo, first, {"RUNNING"})

    assert solo.job(second).state == "QUEUED"
    why = solo.explain(second)
    assert why.waiting and why.position == 1 and first in why.holders
    assert why.blocking_resource == "cpu"

    solo.stop(first)
    assert wait_for_state(solo, second, {"ADMITTED", "RUNNING"}) in {"ADMITTED", "RUNNING"}
    history = [t.to_state for t in solo.job(first).transitions]
    assert history == ["QUEUED", "ADMITTED", "RUNNING", "STOPPED"]
    solo.stop(second)
    assert wait_for_state(solo, second, {"STOPPED"}) == "STOPPED"
