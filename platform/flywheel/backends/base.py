"""The experiment backend protocol and what it reports: no third-party imports here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from flywheel.plans import JobPlan
from flywheel.specs.teams import Resources

JobState = Literal["PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED"]
TERMINAL_STATES: frozenset[str] = frozenset({"STOPPED", "SUCCEEDED", "FAILED"})

#: Files never uploaded with an experiment folder.
BUNDLE_EXCLUDES = [".git", "__pycache__", "*.pyc", ".venv", "mlruns", ".ipynb_checkpoints"]


@dataclass(frozen=True)
class JobInfo:
    """What flywheel shows about a job."""

    job_id: str
    state: JobState
    team: str
    experiment: str
    spec_sha256: str
    bundle_url: str
    message: str
    start_time_ms: int | None
    end_time_ms: int | None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


class ExperimentBackend(Protocol):
    """Where experiments run: submit a plan with its code, watch it, stop it."""

    def submit(self, plan: JobPlan, bundle_dir: Path) -> str: ...

    def submit_command(self, entrypoint: str, metadata: dict[str, str]) -> str: ...

    def list(self) -> list[JobInfo]: ...

    def get(self, job_id: str) -> JobInfo: ...

    def logs(self, job_id: str) -> str: ...

    def tail(self, job_id: str) -> AsyncIterator[str]: ...

    def stop(self, job_id: str) -> bool: ...

    def capacity(self) -> Resources: ...
