"""The local Ray Jobs adapter of :class:`~flywheel.backends.base.ExperimentBackend`.

``ray.job_submission`` is imported here and nowhere else.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import psutil
import requests
from ray.job_submission import JobDetails, JobSubmissionClient

from flywheel.backends.base import BUNDLE_EXCLUDES, JobInfo
from flywheel.errors import JobError, JobNotFoundError, PlatformError
from flywheel.plans import META_BUNDLE, META_EXPERIMENT, META_SPEC_SHA256, META_TEAM, JobPlan
from flywheel.specs.teams import Resources

T = TypeVar("T")

_log = logging.getLogger(__name__)
#: A server error of the Jobs API (as the Ray SDK words it), which a cluster that has just
#: started answers until its job agent is ready ("No available agent to submit job").
_SERVER_ERROR = re.compile(r"status code 5\d\d")
#: Waits before submitting again after a server error: about 30 s in all, then it is refused.
_SUBMIT_RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0)

_CHATTY_LOGGERS = ("ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env.packaging")


class RayJobsBackend:
    """The Ray Jobs API of one Ray cluster (the embedded one or any other)."""

    def __init__(self, address: str, token: str | None, num_cpus: int | None = None) -> None:
        self._address = address
        self._num_cpus = num_cpus
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client: JobSubmissionClient | None = None

    def submit(self, plan: JobPlan, bundle_dir: Path) -> str:
        """Upload ``bundle_dir`` as the working directory and start the job."""
        runtime_env = {
            "working_dir": str(bundle_dir),
            "excludes": BUNDLE_EXCLUDES,
            "env_vars": plan.env_vars,
        }
        retried = False
        for delay_s in (*_SUBMIT_RETRY_DELAYS_S, None):
            try:
                return self._jobs().submit_job(
                    entrypoint=plan.entrypoint,
                    submission_id=plan.job_id,
                    runtime_env=runtime_env,
                    metadata=plan.metadata,
                )
            except requests.exceptions.ConnectionError as e:
                raise PlatformError(f"lost the Ray Jobs API at {self._address}: {e}") from e
            except RuntimeError as e:
                if retried and "already exists" in str(e):
                    return plan.job_id  # an earlier try that answered 5xx did submit it
                if delay_s is None or not _SERVER_ERROR.search(str(e)):
                    raise JobError(f"the Ray Jobs API refused the job: {e}") from e
                _log.warning("the Ray Jobs API failed (%s); trying again in %.0f s", e, delay_s)
            time.sleep(delay_s)
            retried = True
        raise AssertionError("unreachable")

    def submit_command(self, entrypoint: str, metadata: dict[str, str]) -> str:
        """Run a command of the installed flywheel (no working directory) as a job."""
        try:
            return self._jobs().submit_job(
                entrypoint=entrypoint,
                runtime_env={"env_vars": {"PYTHONUNBUFFERED": "1"}},
                metadata=metadata,
            )
        except RuntimeError as e:
            raise JobError(f"the Ray Jobs API refused the job: {e}") from e

    def list(self) -> list[JobInfo]:
        """Jobs flywheel submitted, newest first."""
        details = [d for d in self._call(lambda c: c.list_jobs()) if d.submission_id]
        infos = [_to_info(d) for d in details if META_TEAM in (d.metadata or {})]
        return sorted(infos, key=lambda j: j.start_time_ms or 0, reverse=True)

    def get(self, job_id: str) -> JobInfo:
        return _to_info(self._call(lambda c: c.get_job_info(job_id), job_id))

    def logs(self, job_id: str) -> str:
        return str(self._call(lambda c: c.get_job_logs(job_id), job_id))

    async def tail(self, job_id: str) -> AsyncIterator[str]:
        """The job's log as Ray's tailing produces it, chunk by chunk, until the job ends."""
        client = self._jobs()
        try:
            async for chunk in client.tail_job_logs(job_id):
                yield chunk
        except RuntimeError as e:
            if "does not exist" in str(e):
                raise JobNotFoundError(job_id) from e
            raise JobError(str(e)) from e

    def stop(self, job_id: str) -> bool:
        """Ask the job to stop (Ray SIGTERMs its driver); True if it was running."""
        return bool(self._call(lambda c: c.stop_job(job_id), job_id))

    def capacity(self) -> Resources:
        """What the embedded head offers: its CPUs (``ray_num_cpus`` or all), this machine's
        memory, no GPUs unless Ray sees them (not on the local platform)."""
        cpus = self._num_cpus or os.cpu_count() or 1
        memory_gib = psutil.virtual_memory().total / 2**30
        return Resources(cpu=float(cpus), gpu=0, memory_gib=round(memory_gib, 1))

    def _jobs(self) -> JobSubmissionClient:
        if self._client is None:
            for name in _CHATTY_LOGGERS:  # INFO lines about uploading the working directory
                logging.getLogger(name).setLevel(logging.WARNING)
            try:
                self._client = JobSubmissionClient(self._address, headers=self._headers)
            except (ConnectionError, requests.exceptions.ConnectionError) as e:
                raise PlatformError(
                    f"cannot reach the Ray Jobs API at {self._address}; start the platform with "
                    "`flywheel up` or point FLYWHEEL_RAY_ADDRESS at a running cluster"
                ) from e
            except RuntimeError as e:
                raise PlatformError(f"the Ray Jobs API at {self._address} refused us: {e}") from e
        return self._client

    def _call(self, action: Callable[[JobSubmissionClient], T], job_id: str | None = None) -> T:
        client = self._jobs()
        try:
            return action(client)
        except requests.exceptions.ConnectionError as e:
            raise PlatformError(f"lost the Ray Jobs API at {self._address}: {e}") from e
        except RuntimeError as e:
            if job_id is not None and "does not exist" in str(e):
                raise JobNotFoundError(job_id) from e
            raise JobError(str(e)) from e


def _to_info(details: JobDetails) -> JobInfo:
    meta = details.metadata or {}
    return JobInfo(
        job_id=str(details.submission_id or details.job_id),
        state=str(details.status.value if hasattr(details.status, "value") else details.status),  # type: ignore[arg-type]
        team=meta.get(META_TEAM, ""),
        experiment=meta.get(META_EXPERIMENT, ""),
        spec_sha256=meta.get(META_SPEC_SHA256, ""),
        bundle_url=meta.get(META_BUNDLE, ""),
        message=details.message or "",
        start_time_ms=details.start_time,
        end_time_ms=details.end_time,
    )
