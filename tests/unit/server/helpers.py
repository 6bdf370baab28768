"""Helpers of the control plane tests: an in-memory experiment backend (a real implementation of
the protocol that keeps jobs in a dict), teams, bundles."""

from __future__ import annotations

import io
import socket
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flywheel.backends.base import JobInfo, JobState
from flywheel.errors import JobNotFoundError
from flywheel.plans import JobPlan
from flywheel.server.app import create_app
from flywheel.server.mlflow_identities import MlflowIdentities
from flywheel.settings import Settings
from flywheel.specs.teams import Resources, TeamsSpec

TASK = "def build_model(hparams):\n    pass\n\ndef load_data(hparams):\n    pass\n"
SPEC = "name: digits\nteam: vision\ntask:\n  module: task\n"
SEARCH = """\
search:
  space:
    train.optimizer.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}
  budget: 4
"""

TEAMS = TeamsSpec.model_validate(
    {
        "teams": [
            {"name": "vision", "quota": {"cpu": 2, "memory_gib": 8},
             "borrowing_limit": {"cpu": 2, "memory_gib": 8}},
            {"name": "language", "quota": {"cpu": 2, "memory_gib": 8},
             "borrowing_limit": {"cpu": 2, "memory_gib": 8}},
        ]
    }
)  # fmt: skip


@dataclass
class MemoryJob:
    plan: JobPlan
    files: dict[str, bytes]
    state: JobState = "PENDING"
    log: str = ""


@dataclass
class MemoryBackend:
    """Jobs in a dict; tests move them along by setting ``state``."""

    jobs: dict[str, MemoryJob] = field(default_factory=dict)
    capacity_cpu: float = 4.0
    stopped: list[str] = field(default_factory=list)

    def submit(self, plan: JobPlan, bundle_dir: Path) -> str:
        files = {
            p.relative_to(bundle_dir).as_posix(): p.read_bytes()
            for p in bundle_dir.rglob("*")
            if p.is_file()
        }
        self.jobs[plan.job_id] = MemoryJob(plan, files)
        return plan.job_id

    def submit_command(self, entrypoint: str, metadata: dict[str, str]) -> str:
        raise NotImplementedError

    def list(self) -> list[JobInfo]:
        return [self.get(job_id) for job_id in self.jobs]

    def get(self, job_id: str) -> JobInfo:
        if job_id not in self.jobs:
            raise JobNotFoundError(job_id)
        job = self.jobs[job_id]
        return JobInfo(job_id, job.state, job.plan.spec.team, job.plan.spec.name, "", "", "",
                       None, None)  # fmt: skip

    def logs(self, job_id: str) -> str:
        return self.jobs[job_id].log

    async def tail(self, job_id: str) -> AsyncIterator[str]:
        for line in self.jobs[job_id].log.splitlines(keepends=True):
            yield line

    def stop(self, job_id: str) -> bool:
        self.stopped.append(job_id)
        job = self.jobs[job_id]
        running = job.state in ("PENDING", "RUNNING")
        job.state = "STOPPED"
        return running

    def capacity(self) -> Resources:
        return Resources(cpu=self.capacity_cpu, gpu=0, memory_gib=64)


@dataclass
class RunLedger:
    """Records which vanished jobs' runs the control plane ended (MLflow's part in production)."""

    ended: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, job_id: str, reason: str) -> int:
        self.ended.append((job_id, reason))
        return 1


@dataclass
class ControlPlane:
    """The app, its HTTP client, its backend and settings, and tokens of both teams."""

    app: FastAPI
    http: TestClient
    backend: MemoryBackend
    settings: Settings
    admin: dict[str, str]
    vision: dict[str, str]
    language: dict[str, str]
    runs: RunLedger = field(default_factory=RunLedger)

    def step(self) -> None:
        self.app.state.driver.step()


@contextmanager
def running_plane(
    settings: Settings, teams: TeamsSpec, backend: MemoryBackend,
    mlflow: MlflowIdentities | None = None,
) -> Iterator[ControlPlane]:  # fmt: skip
    """A control plane app (queue driver left to the test) with a token for each of the first
    two teams (none where there are fewer)."""
    runs = RunLedger()
    app = create_app(settings, teams, backend, run_queue=False, end_runs=runs, mlflow=mlflow)
    with TestClient(app) as http:
        admin = bearer(settings.admin_token_path.read_text().strip())
        tokens = [
            bearer(http.post(f"/api/v1/teams/{t.name}/tokens", headers=admin).json()["token"])
            for t in teams.teams[:2]
        ] + [{}, {}]
        yield ControlPlane(app, http, backend, settings, admin, tokens[0], tokens[1], runs)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def experiment_folder(root: Path, spec: str = SPEC) -> Path:
    folder = root / "exp"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "task.py").write_text(TASK)
    (folder / "train.yaml").write_text(spec)
    return folder


def tar_gz(members: dict[str, bytes]) -> bytes:
    """A tar.gz with these regular files (names taken as given, even unsafe ones)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def folder_tar_gz(folder: Path) -> bytes:
    return tar_gz({p.relative_to(folder).as_posix(): p.read_bytes()
                   for p in folder.rglob("*") if p.is_file()})  # fmt: skip


def submit(control: ControlPlane, folder: Path, headers: dict[str, str]) -> dict[str, object]:
    response = control.http.post(
        "/api/v1/experiments",
        headers=headers,
        data={"spec_file": "train.yaml"},
        files={"bundle": ("bundle.tar.gz", folder_tar_gz(folder), "application/gzip")},
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def team_tokens(http: TestClient, settings: Settings, teams: TeamsSpec) -> dict[str, str]:
    """A new token for each of the first two teams, issued with the admin token."""
    admin = bearer(settings.admin_token_path.read_text().strip())
    return {
        t.name: http.post(f"/api/v1/teams/{t.name}/tokens", headers=admin).json()["token"]
        for t in teams.teams[:2]
    }


@contextmanager
def http_server(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn on a free port of 127.0.0.1 in a thread (for CLI processes);
    yields its base URL. Its lifespan runs, so the queue driver does unless the app was built
    with ``run_queue=False``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
