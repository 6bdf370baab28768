"""A real MLflow server with MLflow's basic-auth app, configured the way ``flywheel up`` does it
(:mod:`flywheel.mlflow_auth`), on 127.0.0.1 on a free port.

Cost: 5 to 10 s to start on a 2-core machine (one gunicorn worker), once per session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from flywheel.local import free_ports, mlflow_auth_database_uri
from flywheel.mlflow_auth import AuthConfig, ensure_auth_config, server_env

HOST = "127.0.0.1"
_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class AuthMlflowServer:
    """A running MLflow server with authentication, and its auth config (the admin inside)."""

    url: str
    config: AuthConfig
    config_path: Path


@contextmanager
def running_auth_mlflow(home: Path) -> Iterator[AuthMlflowServer]:
    """MLflow with basic auth, its stores under ``home``; stopped after."""
    (home / "mlflow").mkdir(parents=True, exist_ok=True)
    path = home / "mlflow" / "basic_auth.ini"
    config = ensure_auth_config(path, mlflow_auth_database_uri(home))
    port = free_ports(1, HOST)[0]
    url = f"http://{HOST}:{port}"
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", "basic-auth",
        "--host", HOST, "--port", str(port), "--workers", "1", "--serve-artifacts",
        "--backend-store-uri", f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        "--artifacts-destination", str(home / "mlflow" / "artifacts"),
    ]  # fmt: skip
    env = {**os.environ, **server_env(path, config), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)
    with (home / "mlflow.log").open("ab") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)  # fmt: skip
    try:
        _wait_healthy(url, server, home / "mlflow.log")
        yield AuthMlflowServer(url, config, path)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the CLI and the workers it started
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline_s = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline_s:
        if server.poll() is not None:
            raise RuntimeError(f"MLflow exited at start:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"MLflow not healthy after {_START_TIMEOUT_S} s; see {log}")
