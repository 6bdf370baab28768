"""The embedded platform with real processes: status, idempotent up, token auth, ports, down.

Cost: about 45 s on 2 cores: the session platform (10 to 20 s to start), a second, private one
for the down test (about 15 s), a Ray head that fails to start (about 10 s); the port tests
start nothing and take under a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from ray.job_submission import JobStatus, JobSubmissionClient

from flywheel.client import Client
from flywheel.errors import PlatformError, PortInUseError
from flywheel.local import (
    CONTROL_PLANE,
    MLFLOW,
    RAY,
    EmbeddedPlatform,
    PlatformStatus,
    ray_client_env,
    read_ray_auth_token,
)
from flywheel.settings import Settings
from flywheel.specs.serving import ServeSpec
from flywheel.tracking import TAG_SERVE_SPEC

from .helpers import mlflow_admin, register_digits_version, wait_until

pytestmark = pytest.mark.integration

JOB_TIMEOUT_S = 120


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A fresh home short enough for Ray's unix sockets, removed after the test."""
    home = Path(tempfile.mkdtemp(prefix="fw-"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.timeout(300)
def test_status_reports_urls_and_healthy_components(
    embedded_platform: PlatformStatus, platform_settings: Settings
) -> None:
    state = json.loads(json.dumps(EmbeddedPlatform(platform_settings).status().to_dict()))

    host = platform_settings.host
    assert state["running"] is True
    assert state["ray_dashboard_url"] == f"http://{host}:{platform_settings.ray_dashboard_port}"
    assert state["ray_jobs_url"] == platform_settings.jobs_url
    assert state["ray_gcs_address"] == f"{host}:{platform_settings.ray_gcs_port}"
    assert state["mlflow_url"] == platform_settings.tracking_uri
    assert state["ray_auth_token_path"] == str(platform_settings.ray_auth_token_path)
    assert state["home"] == str(platform_settings.home)
    assert state["control_plane"] == platform_settings.control_url
    assert [c["name"] for c in state["components"]] == [RAY, MLFLOW, CONTROL_PLANE]
    for component in state["components"]:
        assert component["healthy"] is True, component
        assert component["detail"] == "running"
        assert isinstance(component["pid"], int)


@pytest.mark.timeout(300)
def test_token_is_private_and_never_logged(
    embedded_platform: PlatformStatus, platform_settings: Settings
) -> None:
    token_path = platform_settings.ray_auth_token_path
    token = read_ray_auth_token(platform_settings)

    assert token is not None and len(token) == 64
    assert token_path.stat().st_mode & 0o777 == 0o600
    assert token_path.parent.stat().st_mode & 0o777 == 0o700
    for log in (platform_settings.home / "logs").iterdir():
        assert token not in log.read_text(errors="replace"), log


@pytest.mark.timeout(300)
def test_second_up_starts_nothing(
    embedded_platform: PlatformStatus, platform_settings: Settings
) -> None:
    result = EmbeddedPlatform(platform_settings).up(timeout_s=30)

    assert result.started == ()
    assert result.already_running == (RAY, MLFLOW, CONTROL_PLANE)
    assert [c.pid for c in result.status.components] == [
        c.pid for c in embedded_platform.components
    ]


@pytest.mark.timeout(300)
def test_jobs_api_rejects_requests_without_the_token(
    embedded_platform: PlatformStatus, platform_settings: Settings
) -> None:
    jobs_url = f"{embedded_platform.component(RAY).url}/api/jobs/"
    token = read_ray_auth_token(platform_settings)

    with httpx.Client(timeout=10, trust_env=False) as http:
        missing = http.get(jobs_url)
        wrong = http.get(jobs_url, headers={"Authorization": f"Bearer {'0' * 64}"})
        right = http.get(jobs_url, headers={"Authorization": f"Bearer {token}"})

    assert missing.status_code == httpx.codes.UNAUTHORIZED
    assert wrong.status_code == httpx.codes.FORBIDDEN
    assert right.status_code == httpx.codes.OK


@pytest.mark.timeout(300)
def test_jobs_run_with_this_interpreter_and_the_platform_environment(
    embedded_platform: PlatformStatus, platform_settings: Settings, ray_env: None
) -> None:
    client = JobSubmissionClient(embedded_platform.component(RAY).url)
    script = "import os, sys; print(sys.executable, os.environ['MLFLOW_TRACKING_URI'])"

    job_id = client.submit_job(entrypoint=f'python -c "{script}"')
    status = _wait_for_job(client, job_id)

    assert status == JobStatus.SUCCEEDED, client.get_job_logs(job_id)
    executable, tracking_uri = client.get_job_logs(job_id).split()[-2:]
    assert Path(executable).parent == Path(sys.executable).parent
    assert tracking_uri == platform_settings.tracking_uri


@pytest.mark.timeout(300)
def test_a_driver_with_ray_client_env_connects_to_the_gcs(
    embedded_platform: PlatformStatus, platform_settings: Settings
) -> None:
    address = embedded_platform.ray_gcs_address
    script = (
        f"import ray; ray.init(address='{address}', log_to_driver=False); "
        "print('answer', ray.get(ray.remote(lambda: 42).remote()))"
    )
    env = {**os.environ, **ray_client_env(platform_settings)}
    env.pop("RAY_ADDRESS", None)

    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert "answer 42" in done.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("field", "setting"),
    [
        ("mlflow_port", "FLYWHEEL_MLFLOW_PORT"),
        ("ray_dashboard_port", "FLYWHEEL_RAY_DASHBOARD_PORT"),
        ("ray_gcs_port", "FLYWHEEL_RAY_GCS_PORT"),
        ("control_plane_port", "FLYWHEEL_CONTROL_PLANE_PORT"),
    ],
)
def test_a_taken_port_is_named_and_nothing_starts(
    free_port_settings: Callable[..., Settings], short_home: Path, field: str, setting: str
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = free_port_settings(short_home, **{field: port})

        platform = EmbeddedPlatform(settings)
        try:
            with pytest.raises(PortInUseError) as raised:
                platform.up(timeout_s=60)
        finally:
            left_running = platform.down()

    assert left_running == ()
    assert raised.value.port == port
    assert raised.value.setting == setting
    assert str(port) in str(raised.value) and setting in str(raised.value)
    _assert_nothing_runs(settings)


@pytest.mark.timeout(120)
def test_a_component_that_dies_at_start_up_is_reported_and_nothing_is_left(
    free_port_settings: Callable[..., Settings], short_home: Path
) -> None:
    # An object store larger than the machine: `ray start` exits after a few seconds.
    settings = free_port_settings(short_home, ray_object_store_memory_mib=10**9)

    platform = EmbeddedPlatform(settings)
    try:
        with pytest.raises(PlatformError, match="Ray head exited during start-up") as raised:
            platform.up(timeout_s=100)
    finally:
        left_running = platform.down()

    assert "ValueError" in str(raised.value)  # the end of ray.log, quoted
    assert left_running == ()
    _assert_nothing_runs(settings)


def _wait_for_job(client: JobSubmissionClient, job_id: str) -> JobStatus:
    wait_until(lambda: client.get_job_status(job_id).is_terminal(), JOB_TIMEOUT_S, f"job {job_id}")
    return client.get_job_status(job_id)


def _write_stale_pid_files(home: Path) -> None:
    """Pid files naming a process that has exited, as a crash would leave them."""
    finished = subprocess.Popen(["true"])
    finished.wait()
    (home / "run").mkdir(parents=True)
    for name in (RAY, MLFLOW, CONTROL_PLANE):
        (home / "run" / f"{name}.pid").write_text(f"{finished.pid}\n")


def _assert_nothing_runs(settings: Settings) -> None:
    """No pid files, no process started for this home, and a status that says so."""
    assert not list(settings.home.glob("run/*.pid"))
    assert _processes_of(settings.home) == []
    status = EmbeddedPlatform(settings).status()
    assert not status.running
    assert [c.detail for c in status.components] == ["not running"] * 3


def _processes_of(home: Path) -> list[int]:
    """Processes whose environment names ``home`` as FLYWHEEL_HOME (every child of up has it)."""
    marker = f"FLYWHEEL_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            environ = (entry / "environ").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        if marker in environ.split(b"\0") and _is_running(int(entry.name)):
            found.append(int(entry.name))
    return found


def _is_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.timeout(600)
def test_with_direct_ingress_off_models_answer_through_serves_proxy_and_down_stops_it_all(
    free_port_settings: Callable[..., Settings], short_home: Path
) -> None:
    """`FLYWHEEL_SERVE_DIRECT_INGRESS=false`: no HAProxy runs, and a deployed model answers
    through Serve's Python proxy. `up` ignores the stale pid files a crash left, and `down`
    stops every process `up` and Serve started. Cost: about 90 s (a platform, Serve's start,
    one replica)."""
    settings = free_port_settings(short_home, serve_direct_ingress=False)
    platform = EmbeddedPlatform(settings)
    _write_stale_pid_files(short_home)
    try:
        started = platform.up()
        spec = ServeSpec.model_validate({"resources": {"num_cpus": 0.1}})
        tags = {TAG_SERVE_SPEC: spec.model_dump_json()}
        with mlflow_admin(settings):
            version = register_digits_version(settings.tracking_uri, "proxied", 1, tags)
        deployed = Client(settings).deploy("proxied", version=version)
        row = {"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}
        answer = httpx.post(
            f"{settings.serve_url}/v2/models/proxied/infer", json={"inputs": [row]},
            timeout=30, trust_env=False,
        )  # fmt: skip
        processes = _platform_process_names(short_home)
    finally:
        stopped = platform.down()
    assert deployed.champion == version
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == version
    assert "haproxy" not in processes and any("ProxyActor" in p for p in processes), processes

    assert started.started == (RAY, MLFLOW, CONTROL_PLANE)
    assert started.already_running == ()
    assert stopped == (RAY, MLFLOW, CONTROL_PLANE)
    pids = [c.pid for c in started.status.components if c.pid is not None]
    assert not [pid for pid in pids if _is_running(pid)]
    _assert_nothing_runs(settings)  # Serve's controller, proxy and replica too
    assert platform.down() == ()


def _platform_process_names(home: Path) -> set[str]:
    """Names (and Ray actor titles) of every process the platform's sessions started."""
    names = set()
    for pid_file in (home / "run").glob("*.pid"):
        root = psutil.Process(int(pid_file.read_text()))
        for process in (root, *root.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                names.add(" ".join(process.cmdline()[:1]) or process.name())
    return names
