"""Session fixtures: one embedded platform (Ray head, MLflow server, control plane) for all
integration tests.

Cost: starting the platform takes 10 to 20 s on a 2-core machine (Ray and MLflow start side by
side; MLflow is the slower) and stopping it about 3 s. It starts once per session, on free ports
and under a temporary home, so it runs beside any other Ray cluster or MLflow server on the
machine and never touches them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ray._private import ray_constants
from ray._raylet import AuthenticationTokenLoader, Config

from flywheel.local import EmbeddedPlatform, PlatformStatus, free_ports, ray_client_env
from flywheel.settings import Settings

from .helpers import mlflow_admin

#: Settings fields that hold a port the embedded platform (or its model gateway) binds.
PORT_FIELDS = (
    "ray_dashboard_port",
    "ray_gcs_port",
    "ray_client_port",
    "ray_agent_port",
    "ray_metrics_port",
    "mlflow_port",
    "serve_port",
    "serve_haproxy_stats_port",
    "serve_haproxy_metrics_port",
    "serve_fallback_port",
    "control_plane_port",
)


#: Teams of the test platforms: the repository's two, ``testing`` (the team of the test
#: experiments), ``solo``, which never borrows (one two-worker experiment at a time), and
#: ``frozen``, whose zero quota keeps everything it submits queued.
TEST_TEAMS = """\
teams:
  - {name: vision, quota: {cpu: 2, memory_gib: 8}, borrowing_limit: {cpu: 2, memory_gib: 8}}
  - {name: language, quota: {cpu: 2, memory_gib: 8}, borrowing_limit: {cpu: 2, memory_gib: 8}}
  - {name: testing, quota: {cpu: 2, memory_gib: 8}, borrowing_limit: {cpu: 2, memory_gib: 8}}
  - {name: solo, quota: {cpu: 2, memory_gib: 8}}
  - {name: frozen, quota: {}, max_concurrent_experiments: 1}
"""


def isolated_settings(home: Path, **overrides: object) -> Settings:
    """Settings for a platform under ``home`` on free ports, whatever FLYWHEEL_* says."""
    ports = dict(zip(PORT_FIELDS, free_ports(len(PORT_FIELDS)), strict=True))
    teams_file = home / "teams.yaml"
    if not teams_file.exists():
        home.mkdir(parents=True, exist_ok=True)
        teams_file.write_text(TEST_TEAMS)
    values: dict[str, object] = {
        "home": home,
        "teams_file": teams_file,
        "host": "127.0.0.1",
        "ray_address": None,
        "mlflow_tracking_uri": None,
        "ray_auth_token": None,
        "ray_temp_dir": None,
        "token": None,
        "token_file": None,
        "control_plane_url": None,
        "database_url": None,
        **ports,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture(scope="session")
def free_port_settings() -> Callable[..., Settings]:
    """Builds Settings for a platform of one's own: ``free_port_settings(home, **overrides)``."""
    return isolated_settings


@pytest.fixture(scope="session")
def platform_settings() -> Iterator[Settings]:
    """Settings of the session's platform: a short temporary home and free ports."""
    home = Path(tempfile.mkdtemp(prefix="fw-"))  # short: Ray's unix sockets live under it
    try:
        yield isolated_settings(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded_platform(platform_settings: Settings) -> Iterator[PlatformStatus]:
    """The running platform (10 to 20 s to start, once per session); always stopped after.

    While it runs, this process's MLflow calls go as MLflow's admin (tests read every team's
    runs); the platform's own processes never inherit these variables.
    """
    platform = EmbeddedPlatform(platform_settings)
    try:
        status = platform.up().status
        with mlflow_admin(platform_settings):
            yield status
    finally:
        platform.down()


@pytest.fixture(scope="session")
def ray_env(embedded_platform: PlatformStatus, platform_settings: Settings) -> Iterator[None]:
    """Let this process talk to the session's Ray directly (``ray.init``, Jobs SDK), then undo.

    Ray reads these variables once, at import (test modules import it at collection), so the
    fixture makes it read them again when setting them and when restoring them.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RAY_AUTH_TOKEN", raising=False)
        for name, value in ray_client_env(platform_settings).items():
            patch.setenv(name, value)
        _reload_ray_environment(patch)
        yield
    _reload_ray_environment(None)


def _reload_ray_environment(patch: pytest.MonkeyPatch | None) -> None:
    """Make the imported ray read its variables again (private API of the pinned Ray)."""
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    if patch is not None and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0":
        patch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
