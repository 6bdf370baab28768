"""The embedded platform: a Ray head, an MLflow server and the control plane, run as child
processes on this machine.

``flywheel up`` starts all three, each in a session of its own, output in ``<home>/logs``, pid in
``<home>/run``; ``flywheel down`` stops exactly those sessions. It never runs ``ray stop``, which
would stop every Ray cluster on the machine.

Ray runs with token authentication: the token lives in ``settings.ray_auth_token_path`` (mode
0600) and every Jobs API and gRPC request must carry it. With a loopback host, Ray's node address
is pinned to loopback too, so its gRPC servers listen there only; a process that connects to the
GCS directly needs the variables :func:`ray_client_env` returns.

MLflow runs MLflow's basic-auth app (:mod:`flywheel.mlflow_auth`): ``up`` writes its config to
``settings.mlflow_auth_config_path`` (0600, random admin password) once and keeps it. The Ray
head gets the read-only serving identity in its environment (Serve replicas load models with it;
experiment jobs get their team's identity from the control plane instead).

The control plane (``python -m flywheel.server``) gets every setting through ``FLYWHEEL_*``
variables; at its first start it writes the admin token to ``settings.admin_token_path`` (0600).
It reads the MLflow admin password from the auth config itself. No child inherits the MLflow
credentials of the shell that ran ``up``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr

from flywheel.errors import PlatformError, PortInUseError
from flywheel.haproxy import direct_ingress_env, haproxy_binary, haproxy_folder, write_launcher
from flywheel.metrics_endpoints import MetricsEndpoint, metrics_endpoints
from flywheel.mlflow_auth import ensure_auth_config, server_env, serving_identity
from flywheel.settings import Settings
from flywheel.storage_layout import StorageLayout

__all__ = [
    "CONTROL_PLANE",
    "MLFLOW",
    "RAY",
    "ComponentStatus",
    "EmbeddedPlatform",
    "PlatformStatus",
    "UpResult",
    "free_ports",
    "mlflow_artifacts_destination",
    "ray_client_env",
    "read_ray_auth_token",
]

RAY = "ray"
MLFLOW = "mlflow"
CONTROL_PLANE = "control_plane"

_POLL_INTERVAL_S = 0.5
_PROBE_TIMEOUT_S = 2.0
_KILL_WAIT_S = 5.0
_LOG_TAIL_LINES = 20
_LOG_TAIL_BYTES = 64 * 1024
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_PROC = Path("/proc")
#: MLflow credentials of the caller's shell (`flywheel mlflow env`): no child inherits them.
_MLFLOW_CREDENTIAL_VARIABLES = (
    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
)  # fmt: skip


@dataclass(frozen=True)
class ComponentStatus:
    """State of one platform component as seen from this machine."""

    name: str
    url: str
    healthy: bool
    pid: int | None
    detail: str


@dataclass(frozen=True)
class PlatformStatus:
    """State of the whole embedded platform, with the addresses clients need."""

    home: Path
    components: tuple[ComponentStatus, ...]
    ray_gcs_address: str
    ray_auth_token_path: Path
    admin_token_path: Path
    metrics: tuple[MetricsEndpoint, ...] = ()

    @property
    def running(self) -> bool:
        """True when every component answers its health check."""
        return all(c.healthy for c in self.components)

    def component(self, name: str) -> ComponentStatus:
        """The status of the component called ``name`` (:data:`RAY`, :data:`MLFLOW` or
        :data:`CONTROL_PLANE`)."""
        return next(c for c in self.components if c.name == name)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view for ``flywheel status --json`` and scripts."""
        ray_url = self.component(RAY).url
        return {
            "home": str(self.home),
            "running": self.running,
            "ray_dashboard_url": ray_url,
            "ray_jobs_url": ray_url,
            "ray_gcs_address": self.ray_gcs_address,
            "mlflow_url": self.component(MLFLOW).url,
            "ray_auth_token_path": str(self.ray_auth_token_path),
            "control_plane": self.component(CONTROL_PLANE).url,
            "admin_token_path": str(self.admin_token_path),
            "components": [asdict(c) for c in self.components],
            "metrics": [asdict(m) for m in self.metrics],
        }


@dataclass(frozen=True)
class UpResult:
    """What ``up`` did: components started now, components found running, and the outcome."""

    started: tuple[str, ...]
    already_running: tuple[str, ...]
    status: PlatformStatus


class EmbeddedPlatform:
    """Starts, stops and inspects the Ray head and MLflow server that live under one home."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._home = settings.home.expanduser().absolute()
        self._components = (
            _ray_component(settings, self._home),
            _mlflow_component(settings, self._home),
            _control_plane_component(settings, self._home),
        )
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def up(
        self, on_progress: Callable[[str], None] | None = None, timeout_s: float = 180.0
    ) -> UpResult:
        """Start whatever is not running and wait until every component is healthy.

        Raises PortInUseError before starting anything when a port is taken, and PlatformError
        when a component dies or stays unhealthy; either way nothing started here is left.
        """
        report = on_progress or _ignore
        started_s = time.monotonic()
        running = tuple(c.name for c in self._components if self._running_pid(c) is not None)
        to_start = [c for c in self._components if c.name not in running]
        if any(c.name == CONTROL_PLANE for c in to_start):
            _check_teams_file(self._settings.teams_file)
        for component in to_start:
            component.pid_path.unlink(missing_ok=True)  # stale: its process is gone
            _check_ports(component, self._settings.host)
        started: list[_Component] = []
        try:
            # The control plane starts once Ray and MLflow answer: it needs them, and on a
            # small machine its start-up would slow Ray's past Ray's own time-outs.
            for wave in (self._components[:2], self._components[2:]):
                for component in (c for c in wave if c in to_start):
                    report(f"starting {component.label} on {component.url}")
                    self._launch(component)
                    started.append(component)
                self._wait_until_healthy(wave, report, started_s, timeout_s)
        except BaseException:
            self._stop(started, _KILL_WAIT_S)
            raise
        return UpResult(tuple(c.name for c in started), running, self.status())

    def down(self, timeout_s: float = 60.0) -> tuple[str, ...]:
        """Stop what ``up`` started; returns the names of the components stopped."""
        running = [c for c in self._components if self._running_pid(c) is not None]
        for component in self._components:
            if component not in running:
                component.pid_path.unlink(missing_ok=True)
        self._stop(running, timeout_s)
        shutil.rmtree(haproxy_folder(self._settings), ignore_errors=True)
        return tuple(c.name for c in running)

    def status(self) -> PlatformStatus:
        """Report each component; never raises for a stopped platform."""
        return PlatformStatus(
            home=self._home,
            components=tuple(self._component_status(c) for c in self._components),
            ray_gcs_address=f"{self._settings.host}:{self._settings.ray_gcs_port}",
            ray_auth_token_path=self._settings.ray_auth_token_path,
            admin_token_path=self._settings.admin_token_path,
            metrics=metrics_endpoints(self._settings),
        )

    def _component_status(self, component: _Component) -> ComponentStatus:
        pid = self._running_pid(component)
        healthy, why = self._probe(component)
        if healthy:
            detail = "running" if pid is not None else "running, not started by flywheel"
        else:
            detail = f"unhealthy: {why}" if pid is not None else "not running"
        return ComponentStatus(component.name, component.url, healthy, pid, detail)

    def _launch(self, component: _Component) -> None:
        """Start one component in a session of its own, output to its log, pid to its pid file."""
        for folder in (component.log_path.parent, component.pid_path.parent, *component.folders):
            folder.mkdir(parents=True, exist_ok=True)
        if component.name == RAY:
            _ensure_token(self._settings.ray_auth_token_path)
            if self._settings.serve_direct_ingress:
                launcher = haproxy_launcher_path(self._home)
                write_launcher(launcher, self._settings.host, haproxy_binary())
        secrets_env = self._secrets_env(component)
        executable = Path(sys.executable).parent / component.program
        if not executable.is_file():
            raise PlatformError(f"{executable} not found; install flywheel into this environment")
        with component.log_path.open("ab") as log:
            child = subprocess.Popen(
                [str(executable), *component.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(self._settings, self._home, {**component.env, **secrets_env}),
                cwd=self._home,
                start_new_session=True,
            )
        self._children[child.pid] = child
        component.pid_path.write_text(f"{child.pid}\n")

    def _secrets_env(self, component: _Component) -> dict[str, str]:
        """Secret variables of a component, read at launch (never part of its description):
        MLflow's auth config and CSRF key, the Ray head's serving identity."""
        if component.name not in (RAY, MLFLOW):
            return {}
        path = self._settings.mlflow_auth_config_path.expanduser().absolute()
        config = ensure_auth_config(path, mlflow_auth_database_uri(self._home))
        if component.name == MLFLOW:
            return server_env(path, config)
        return serving_identity(config.admin).env()

    def _wait_until_healthy(
        self, components: tuple[_Component, ...], report: Callable[[str], None],
        started_s: float, timeout_s: float,
    ) -> None:  # fmt: skip
        """Poll ``components`` until all are healthy; fail fast when a process dies."""
        pending = list(components)
        while True:
            pending = [c for c in pending if not self._probe(c)[0]]
            for component in components:  # after probing: one may answer, then die
                if self._running_pid(component) is None:
                    raise PlatformError(
                        f"{component.label} exited during start-up; last lines of "
                        f"{component.log_path}:\n{_log_tail(component.log_path)}"
                    )
            if not pending:
                return
            labels = ", ".join(c.label for c in pending)
            elapsed_s = time.monotonic() - started_s
            if elapsed_s > timeout_s:
                logs = ", ".join(str(c.log_path) for c in pending)
                raise PlatformError(f"{labels} not healthy after {timeout_s:.0f} s; see {logs}")
            report(f"waiting for {labels} ({elapsed_s:.0f} s)")
            time.sleep(_POLL_INTERVAL_S)

    def _probe(self, component: _Component) -> tuple[bool, str]:
        """GET each of the component's health URLs: (all answered 200, why not)."""
        token = read_ray_auth_token(self._settings) if component.name == RAY else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(timeout=_PROBE_TIMEOUT_S, trust_env=False, headers=headers) as client:
            for url in component.health_urls:
                try:
                    status_code = client.get(url).status_code
                except httpx.HTTPError as error:
                    return False, f"{url}: {type(error).__name__}"
                if status_code != httpx.codes.OK:
                    return False, f"{url} answered HTTP {status_code}"
        return True, ""

    def _running_pid(self, component: _Component) -> int | None:
        """The pid in the component's pid file when that process is alive and is ours."""
        pid = _read_pid(component.pid_path)
        if pid is None or not self._alive(pid):
            return None
        if pid not in self._children and not _cmdline_contains(pid, component.marker):
            return None  # a child of ours may not have exec'd yet; its cmdline is still ours
        return pid

    def _alive(self, pid: int) -> bool:
        """Whether ``pid`` runs (zombies do not); reaps it when it is a child of this process."""
        child = self._children.get(pid)
        if child is not None:
            return child.poll() is None
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return _stat_fields(pid)[:1] != ["Z"]

    def _stop(self, components: list[_Component], timeout_s: float) -> None:
        """SIGTERM each session leader and wait for it; then SIGKILL what is left of its session.

        Ray's leader (``ray start --block``) shuts its own processes down on SIGTERM; signalling
        the whole group at once instead makes it wait for a GCS that is already gone.
        """
        pids = [pid for c in components if (pid := _read_pid(c.pid_path)) is not None]
        for pid in pids:
            _signal_quietly(os.kill, pid, signal.SIGTERM)
        _wait_for(lambda: not any(self._alive(pid) for pid in pids), timeout_s)
        for pid in pids:
            _signal_quietly(os.killpg, pid, signal.SIGKILL)
            for member in _session_members(pid):  # workers live in process groups of their own
                _signal_quietly(os.kill, member, signal.SIGKILL)
        _wait_for(
            lambda: not any(self._alive(p) or _session_members(p) for p in pids), _KILL_WAIT_S
        )
        for component in components:
            component.pid_path.unlink(missing_ok=True)


def read_ray_auth_token(settings: Settings) -> str | None:
    """The Ray token ``up`` wrote (stripped), or None when there is none yet."""
    try:
        token = settings.ray_auth_token_path.read_text().strip()
    except FileNotFoundError:
        return None
    return token or None


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free on ``host`` right now (the OS picks them): for tests and
    benchmarks that run a platform of their own beside others."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def ray_client_env(settings: Settings) -> dict[str, str]:
    """Environment a process needs to reach the embedded Ray directly (``ray.init``, Jobs SDK).

    Unset ``RAY_AUTH_TOKEN`` there too: Ray prefers it to the token file.
    """
    env = {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(settings.ray_auth_token_path.expanduser().absolute()),
    }
    if settings.host in _LOOPBACK_HOSTS:
        # Else Ray swaps a loopback node address for the machine's LAN address (Linux default).
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


@dataclass(frozen=True)
class _Component:
    """How to start, find and check one component: pure data, built from settings."""

    name: str
    program: str  # an executable next to this interpreter
    label: str
    url: str
    health_urls: tuple[str, ...]  # all must answer 200
    ports: dict[str, int]  # Settings field -> port
    args: tuple[str, ...]
    env: dict[str, str]
    folders: tuple[Path, ...]  # created before start
    marker: str  # part of the command line that tells our process from a reused pid
    pid_path: Path
    log_path: Path


def _ray_component(settings: Settings, home: Path) -> _Component:
    host, url = settings.host, f"http://{settings.host}:{settings.ray_dashboard_port}"
    temp_dir = settings.resolved_ray_temp_dir.expanduser().absolute()
    port_fields: tuple[str, ...] = (
        "ray_gcs_port", "ray_dashboard_port", "ray_client_port", "ray_agent_port",
    )  # fmt: skip
    if settings.serve_direct_ingress:
        port_fields += (
            "serve_haproxy_stats_port", "serve_haproxy_metrics_port", "serve_fallback_port",
        )  # fmt: skip
    ports = {field: int(getattr(settings, field)) for field in port_fields}
    ports["ray_metrics_port"] = settings.ray_metrics_port  # Ray's metrics agent (Prometheus)
    args = [
        "start", "--head", "--block", f"--node-ip-address={host}",
        f"--port={settings.ray_gcs_port}", f"--dashboard-host={host}",
        f"--dashboard-port={settings.ray_dashboard_port}",
        f"--ray-client-server-port={settings.ray_client_port}",
        f"--dashboard-agent-listen-port={settings.ray_agent_port}",
        f"--metrics-export-port={settings.ray_metrics_port}",
        f"--temp-dir={temp_dir}", "--disable-usage-stats", "--include-dashboard=true",
        f"--object-store-memory={settings.ray_object_store_memory_mib * 1024 * 1024}",
    ]  # fmt: skip
    if settings.ray_num_cpus is not None:
        args.append(f"--num-cpus={settings.ray_num_cpus}")
    env = {
        **ray_client_env(settings),
        "RAY_USAGE_STATS_ENABLED": "0",
        # Nothing to drain on a local head; by default SIGTERM waits up to 30 s for the raylet.
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        **direct_ingress_env(settings, haproxy_launcher_path(home)),
    }
    # The Jobs API answers (with the token), and the agent the raylet starts says it is alive.
    agent_health_url = f"http://{host}:{settings.ray_agent_port}/api/local_raylet_healthz"
    health_urls = (f"{url}/api/version", agent_health_url)
    return _Component(
        RAY, "ray", "Ray head", url, health_urls, ports, tuple(args), env, (temp_dir,),
        f"--temp-dir={temp_dir}", home / "run" / "ray.pid", home / "logs" / "ray.log",
    )  # fmt: skip


def _mlflow_component(settings: Settings, home: Path) -> _Component:
    url = f"http://{settings.host}:{settings.mlflow_port}"
    store_uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    args = (
        "server", "--host", settings.host, "--port", str(settings.mlflow_port),
        "--app-name", "basic-auth", "--backend-store-uri", store_uri, "--serve-artifacts",
        "--artifacts-destination", mlflow_artifacts_destination(settings), "--workers", "1",
    )  # fmt: skip
    # MLflow 3 also starts a GenAI job runner (eight huey consumers) that flywheel never uses.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return _Component(
        MLFLOW, "mlflow", "MLflow server", url, (f"{url}/health",),
        {"mlflow_port": settings.mlflow_port}, args, env, (home / "mlflow",), store_uri,
        home / "run" / "mlflow.pid", home / "logs" / "mlflow.log",
    )  # fmt: skip


def mlflow_auth_database_uri(home: Path) -> str:
    """MLflow's user and permission database (basic-auth app), beside its tracking database."""
    return f"sqlite:///{home / 'mlflow' / 'basic_auth.db'}"


def haproxy_launcher_path(home: Path) -> Path:
    """The script Serve starts HAProxy through (see :mod:`flywheel.haproxy`)."""
    return home / "run" / "haproxy-launcher"


def mlflow_artifacts_destination(settings: Settings) -> str:
    """Where the MLflow server keeps artifacts: in the bucket when the storage root is on S3
    (the server proxies them, so clients need no S3 credentials), else under home."""
    layout = StorageLayout(settings.storage_root)
    if layout.is_s3:
        return layout.mlflow_artifacts()
    return str(settings.home.expanduser().absolute() / "mlflow" / "artifacts")


def _control_plane_component(settings: Settings, home: Path) -> _Component:
    url = f"http://{settings.host}:{settings.control_plane_port}"
    env = {**settings_env(settings, home), **ray_client_env(settings)}
    return _Component(
        CONTROL_PLANE, Path(sys.executable).name, "control plane", url, (f"{url}/healthz",),
        {"control_plane_port": settings.control_plane_port}, ("-m", "flywheel.server"), env,
        (home / "control",), "flywheel.server", home / "run" / "control_plane.pid",
        home / "logs" / "control_plane.log",
    )  # fmt: skip


def settings_env(settings: Settings, home: Path) -> dict[str, str]:
    """``FLYWHEEL_*`` variables that rebuild ``settings`` in a child process (paths absolute)."""
    env = {}
    for name, value in settings.model_dump(exclude={"token", "token_file"}).items():
        if value is None:
            continue
        if isinstance(value, Path):
            value = value.expanduser().absolute()
        elif isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"FLYWHEEL_{name.upper()}"] = str(value)
    env["FLYWHEEL_HOME"] = str(home)
    return env


def _ignore(message: str) -> None:
    """Progress sink used when the caller passes none."""


def _check_ports(component: _Component, host: str) -> None:
    """Raise PortInUseError for the first port of ``component`` that cannot be bound."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    for setting, port in component.ports.items():
        if not _port_is_free(host, port):
            raise PortInUseError(component.name, port, f"{prefix}{setting}".upper())


def _check_teams_file(path: Path) -> None:
    if not path.expanduser().is_file():
        raise PlatformError(
            f"teams file {path} not found (from {Path.cwd()}): run `flywheel up` in the "
            "repository root, or set FLYWHEEL_TEAMS_FILE to your teams file"
        )


def _port_is_free(host: str, port: int) -> bool:
    """Test-bind ``host:port`` the way servers do (SO_REUSEADDR, so TIME_WAIT does not count)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _ensure_token(path: Path) -> None:
    """Create the Ray token file (0600, folder 0700) unless it holds one; never log the token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    if path.is_file() and path.read_text().strip():
        path.chmod(0o600)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that existed
    with os.fdopen(fd, "w") as token_file:
        token_file.write(secrets.token_hex(32))


def _child_env(settings: Settings, home: Path, extra: dict[str, str]) -> dict[str, str]:
    """This process's environment, the interpreter's folder first on PATH, plus ``extra``."""
    env = dict(os.environ)
    env.pop("RAY_AUTH_TOKEN", None)  # would override the token file for the whole cluster
    for name in _MLFLOW_CREDENTIAL_VARIABLES:
        env.pop(name, None)
    python_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([python_bin, env.get("PATH", "")]).rstrip(os.pathsep)
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    # MLflow's usage telemetry would call out of the machine, and its client thread sets and
    # unsets a variable of os.environ, which races with any thread that reads the environment.
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["FLYWHEEL_HOME"] = str(home)
    env["FLYWHEEL_STORAGE_ROOT"] = settings.storage_root
    env.update(extra)
    return env


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _cmdline_contains(pid: int, marker: str) -> bool:
    """Guard against pid reuse: the process's command line holds ``marker`` (Linux only)."""
    if not _PROC.is_dir():
        return True
    try:
        cmdline = (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return marker.encode() in cmdline


def _session_members(session_id: int) -> list[int]:
    """Live (not zombie) processes in session ``session_id``; empty where there is no /proc."""
    if not _PROC.is_dir():
        return []
    members = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if len(fields) > 3 and fields[3] == str(session_id) and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, session, ..."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return []
    return stat[stat.rindex(")") + 2 :].split()


def _signal_quietly(send: Callable[[int, int], None], pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        send(pid, signum)


def _wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline_s = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline_s:
            return False
        time.sleep(0.1)
    return True


def _log_tail(path: Path) -> str:
    """The last lines of a log file, read from its end."""
    try:
        with path.open("rb") as log:
            log.seek(max(0, path.stat().st_size - _LOG_TAIL_BYTES))
            text = log.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-_LOG_TAIL_LINES:])
