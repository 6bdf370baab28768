"""Submitting through Ray's own Jobs SDK to a stand-in Jobs API on 127.0.0.1 that answers the way
a Ray head does while it starts: server errors until its job agent is ready.

The stand-in speaks the few routes the SDK calls for a submission with a working directory
(version, package check and upload, submit); nothing of Ray runs. Cost: about 3 s (the retries'
first two waits).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import ray

from flywheel.backends.ray_jobs import RayJobsBackend
from flywheel.errors import JobError
from flywheel.plans import spec_to_job_plan
from flywheel.settings import Settings
from flywheel.specs import ExperimentSpec

AGENT_NOT_READY = "No available agent to submit job, please try again later."


class JobsApi(ThreadingHTTPServer):
    """Answers ``fail`` submissions with ``status``, then accepts; records what it got."""

    def __init__(self, fail: int, status: int = 500, body: str = AGENT_NOT_READY) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fail, self.status, self.body = fail, status, body
        self.submissions: list[dict[str, object]] = []

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: JobsApi

    def do_GET(self) -> None:
        if self.path == "/api/version":
            self._answer(200, json.dumps({"version": "4", "ray_version": ray.__version__}))
        else:  # a package the cluster does not have yet
            self._answer(404, "no such package")

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(200, "")

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.submissions.append(request)
        if len(self.server.submissions) <= self.server.fail:
            self._answer(self.server.status, self.server.body)
        else:
            job = request["submission_id"]
            self._answer(200, json.dumps({"job_id": job, "submission_id": job}))

    def _answer(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def serving(api: JobsApi) -> Iterator[JobsApi]:
    thread = threading.Thread(target=api.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.shutdown()
        api.server_close()


@pytest.fixture
def starting_head() -> Iterator[JobsApi]:
    """A head whose job agent answers from the third submission on."""
    yield from serving(JobsApi(fail=2))


@pytest.fixture
def refusing_head() -> Iterator[JobsApi]:
    yield from serving(JobsApi(fail=99, status=400, body="bad request: entrypoint"))


def submit(api: JobsApi, tmp_path: Path) -> str:
    task = {"module": "t"}
    spec = ExperimentSpec.model_validate({"name": "retry", "team": "vision", "task": task})
    plan = spec_to_job_plan(spec, "train.yaml", b"", Settings(home=tmp_path), "vision-retry-1")
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "t.py").write_text("")
    return RayJobsBackend(api.address, token=None).submit(plan, tmp_path / "bundle")


def test_a_head_that_is_still_starting_gets_the_job_once_its_agent_answers(
    starting_head: JobsApi, tmp_path: Path
) -> None:
    assert submit(starting_head, tmp_path) == "vision-retry-1"
    ids = [s["submission_id"] for s in starting_head.submissions]
    assert ids == ["vision-retry-1"] * 3, "two server errors, then the same submission again"


def test_a_refused_submission_is_not_retried(refusing_head: JobsApi, tmp_path: Path) -> None:
    with pytest.raises(JobError, match=r"refused the job: .*bad request"):
        submit(refusing_head, tmp_path)
    assert len(refusing_head.submissions) == 1
