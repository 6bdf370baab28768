"""The control plane as its own process (``python -m flywheel.server``), without a Ray cluster:
tokens and team isolation over real HTTP, a SIGKILL in the middle of a queue, and no token in
its log. The ``frozen`` team's zero quota keeps its experiments queued, so no job is submitted.

Cost: about 10 s per control plane start on 2 shared cores; the module starts it twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from flywheel.client import Client
from flywheel.errors import AuthenticationError
from flywheel.local import settings_env
from flywheel.settings import Settings

from .helpers import EXPERIMENTS, copy_experiment, wait_until

pytestmark = pytest.mark.integration

_START_TIMEOUT_S = 180.0


class ControlPlaneProcess:
    """Starts, kills and restarts one control plane process under a home of its own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log_path = settings.home / "logs" / "control_plane.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **settings_env(self.settings, self.settings.home)}
        env.pop("FLYWHEEL_TOKEN", None)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "flywheel.server"], env=env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_until(self._answers, _START_TIMEOUT_S, "the control plane to answer")

    def _answers(self) -> bool:
        """Whether it answers its health check; fails at once, with its log, if it exited."""
        assert self._process is not None
        assert self._process.poll() is None, self.log_path.read_text()[-3000:]
        return self._healthy()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=30)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=30)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.settings.control_url}/healthz", trust_env=False).is_success
        except httpx.HTTPError:
            return False


@pytest.fixture(scope="module")
def control_plane(
    free_port_settings: Callable[..., Settings], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlaneProcess]:
    home = tmp_path_factory.mktemp("control")
    # Nothing listens on the Ray address: these tests never need the cluster.
    process = ControlPlaneProcess(free_port_settings(home, ray_address="http://127.0.0.1:9"))
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _team_client(settings: Settings, team: str) -> Client:
    """A client with a new token of ``team``, created with the admin token (from its file)."""
    token = Client(settings).create_token(team).token
    return Client(settings.model_copy(update={"token": SecretStr(token)}))


def _spec(tmp_path: Path, team: str, name: str) -> Path:
    text = (EXPERIMENTS / "slow_digits" / "train.yaml").read_text()
    text = text.replace("team: testing", f"team: {team}").replace("slow-digits", name)
    return copy_experiment(EXPERIMENTS / "slow_digits", tmp_path / name, text)


@pytest.mark.timeout(300)
def test_tokens_isolate_teams_over_http(control_plane: ControlPlaneProcess, tmp_path: Path) -> None:
    settings = control_plane.settings
    frozen = _team_client(settings, "frozen")
    vision = _team_client(settings, "vision")
    experiment = frozen.submit(_spec(tmp_path, "frozen", "isolated"))
    vision_headers = {"Authorization": f"Bearer {vision.settings.token.get_secret_value()}"}  # type: ignore[union-attr]
    with httpx.Client(base_url=f"{settings.control_url}/api/v1", trust_env=False) as http:
        for method, path in [
            ("GET", f"/experiments/{experiment}"), ("GET", f"/experiments/{experiment}/logs"),
            ("GET", f"/experiments/{experiment}/explain"), ("GET", "/teams/frozen"),
            ("POST", f"/experiments/{experiment}/stop"), ("POST", "/teams/frozen/tokens"),
        ]:  # fmt: skip
            assert http.request(method, path).status_code == 401, path
            assert http.request(method, path, headers=vision_headers).status_code == 403, path
    assert [e.id for e in vision.jobs()] == []
    assert [e.id for e in frozen.jobs()] == [experiment]
    frozen.stop(experiment)


@pytest.mark.timeout(300)
def test_a_sigkilled_control_plane_loses_no_queued_experiment(
    control_plane: ControlPlaneProcess, tmp_path: Path
) -> None:
    frozen = _team_client(control_plane.settings, "frozen")
    first = frozen.submit(_spec(tmp_path, "frozen", "first"))
    second = frozen.submit(_spec(tmp_path, "frozen", "second"))
    before = {e.id: e.state for e in frozen.jobs() if e.id in (first, second)}

    control_plane.kill()
    control_plane.start()

    after = {e.id: e.state for e in frozen.jobs() if e.id in (first, second)}
    assert after == before == {first: "QUEUED", second: "QUEUED"}
    assert frozen.explain(second).position == 2
    assert [t.to_state for t in frozen.job(first).transitions] == ["QUEUED"]
    for experiment in (first, second):
        frozen.stop(experiment)
    assert {frozen.job(e).state for e in (first, second)} == {"STOPPED"}


@pytest.mark.timeout(300)
def test_no_token_reaches_the_log(control_plane: ControlPlaneProcess) -> None:
    vision = _team_client(control_plane.settings, "vision")
    vision.jobs()
    with pytest.raises(AuthenticationError, match="unknown token"):
        Client(control_plane.settings.model_copy(update={"token": SecretStr("fw_wrong")})).jobs()
    tokens = [
        vision.settings.token.get_secret_value(),  # type: ignore[union-attr]
        control_plane.settings.admin_token_path.read_text().strip(),
        "fw_wrong",
    ]
    text = control_plane.log_path.read_bytes()
    assert b"GET /api/v1/experiments" in text  # the log is the one this process writes
    assert not any(token.encode() in text for token in tokens)
