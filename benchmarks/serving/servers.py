"""Starting and stopping what the serving benchmark measures: peer processes, private embedded
platforms, the plain Serve application. Each is a context manager that always stops what it
started, and everything listens on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from flywheel.backends.serving import ServeRestBackend
from flywheel.local import EmbeddedPlatform, free_ports, read_ray_auth_token
from flywheel.mlflow_auth import read_auth_config
from flywheel.serving.config import (
    GRACEFUL_SHUTDOWN_TIMEOUT_S,
    HEALTH_CHECK_PERIOD_S,
    HEALTH_CHECK_TIMEOUT_S,
    KEEP_ALIVE_TIMEOUT_S,
    MAX_ONGOING_REQUESTS,
    ApplicationConfig,
    DeploymentConfig,
    ServeConfig,
)  # fmt: skip
from flywheel.settings import Settings

REPO = Path(__file__).resolve().parents[2]
#: Seconds a server, platform or application gets to become ready.
READY_TIMEOUT_S = 180.0
#: Settings fields that hold a port a platform (or its model gateway) binds.
PORT_FIELDS = (
    "ray_dashboard_port", "ray_gcs_port", "ray_client_port", "ray_agent_port", "mlflow_port",
    "serve_port", "serve_haproxy_stats_port", "serve_haproxy_metrics_port",
    "serve_fallback_port", "control_plane_port",
)  # fmt: skip
#: CPUs each replica reserves, the plain Serve peer's and flywheel's alike.
REPLICA_CPUS = 1.0


@contextmanager
def process(
    argv: list[str], ready: Callable[[], bool], env: dict[str, str] | None = None
) -> Iterator[None]:
    """Run ``argv`` in a session of its own until ``ready()`` holds; stop the session after."""
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # fmt: skip

    def answering() -> bool:
        if child.poll() is not None:
            raise RuntimeError(f"{argv[:4]} exited with status {child.returncode}")
        return ready()

    try:
        until(answering, f"{argv[:4]} to answer")
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=30)


_MLFLOW_CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@contextmanager
def platform(direct_ingress: bool) -> Iterator[Settings]:
    """A private embedded platform on free ports under a temporary home; always stopped.

    Its Ray workers can import ``benchmarks`` (the plain Serve peer's import path): the platform
    processes inherit this process's ``PYTHONPATH`` with the repository put first. While it
    runs, this process's MLflow calls go as the platform's MLflow admin.
    """
    home = Path(tempfile.mkdtemp(prefix="fwb-"))  # short: Ray's unix sockets live under it
    ports: dict[str, Any] = dict(zip(PORT_FIELDS, free_ports(len(PORT_FIELDS)), strict=True))
    settings = Settings(
        home=home, host="127.0.0.1", serve_direct_ingress=direct_ingress, ray_address=None,
        mlflow_tracking_uri=None, ray_auth_token=None, ray_temp_dir=None, token=None,
        token_file=None, control_plane_url=None, database_url=None, **ports,
    )  # fmt: skip
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), before) if p)
    embedded = EmbeddedPlatform(settings)
    credentials = {name: os.environ.get(name) for name in _MLFLOW_CREDENTIALS}
    try:
        embedded.up()
        config = read_auth_config(settings.mlflow_auth_config_path)
        os.environ.update(config.admin.env() if config is not None else {})
        yield settings
    finally:
        embedded.down()
        for name, value in credentials.items():
            _restore(name, value)
        _restore("PYTHONPATH", before)
        shutil.rmtree(home, ignore_errors=True)


def deploy_plain_serve(settings: Settings, folder: Path) -> None:
    """Run the plain Serve peer as the platform's only application, at ``/``; wait until it runs."""
    backend = ServeRestBackend(settings.jobs_url, read_ray_auth_token(settings))
    deployment = DeploymentConfig(
        name="PlainModel", num_replicas=1, max_ongoing_requests=MAX_ONGOING_REQUESTS,
        ray_actor_options={"num_cpus": REPLICA_CPUS}, health_check_period_s=HEALTH_CHECK_PERIOD_S,
        health_check_timeout_s=HEALTH_CHECK_TIMEOUT_S,
        graceful_shutdown_timeout_s=GRACEFUL_SHUTDOWN_TIMEOUT_S,
    )  # fmt: skip
    application = ApplicationConfig(
        name="plain", route_prefix="/", import_path="benchmarks.serving.peer_serve:app",
        args={"folder": str(folder)}, deployments=[deployment],
    )  # fmt: skip
    http: dict[str, str | int] = {"host": settings.host, "port": settings.serve_port,
                                  "keep_alive_timeout_s": KEEP_ALIVE_TIMEOUT_S}  # fmt: skip
    backend.apply(ServeConfig(http_options=http, applications=[application]))

    def running() -> bool:
        state = backend.applications().get("plain")
        if state is not None and state.status == "DEPLOY_FAILED":
            raise RuntimeError(f"plain Serve peer failed to deploy: {state.message}")
        return state is not None and state.status == "RUNNING"

    until(running, "the plain Serve application to run")


def answers(url: str, body: bytes) -> Callable[[], bool]:
    """A readiness check: ``url`` answers a POST of ``body`` with HTTP 200."""

    def check() -> bool:
        try:
            response = httpx.post(url, content=body, timeout=5, trust_env=False,
                                  headers={"content-type": "application/json"})  # fmt: skip
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    return check


def until(condition: Callable[[], bool], what: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Wait for ``condition`` (checked every 0.5 s) or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {timeout_s:g} s")
        time.sleep(0.5)


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
