"""The public facade the CLI and SDK users call: validate, submit, watch and stop experiments.

For now it talks to the Ray Jobs API directly; the control plane will sit behind this same
facade without changing its methods.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flywheel.jobs import BUNDLE_EXCLUDES, JobBackend, JobInfo, RayJobsBackend
from flywheel.plans import PLAN_PATH, JobPlan, new_job_id, spec_to_job_plan
from flywheel.progress import ProgressEvent, parse_progress
from flywheel.settings import Settings
from flywheel.specs.experiment import ExperimentSpec
from flywheel.specs.validate import validate_experiment


@dataclass(frozen=True)
class JobUpdate:
    """What changed in a job since the previous update."""

    job: JobInfo
    lines: tuple[str, ...]
    events: tuple[ProgressEvent, ...]


class Client:
    """Entry point for everything a user does with flywheel."""

    def __init__(self, settings: Settings | None = None, backend: JobBackend | None = None) -> None:
        self.settings = settings or Settings()
        self._backend = backend

    def validate(self, spec_path: str | Path) -> ExperimentSpec:
        """Validate a spec file and its task code; raise SpecError with every problem."""
        return validate_experiment(Path(spec_path))

    def plan(self, spec_path: str | Path) -> JobPlan:
        """The plan that ``submit`` would send, without sending it."""
        path = Path(spec_path)
        spec = self.validate(path)
        return spec_to_job_plan(spec, path.name, path.read_bytes(), self.settings, new_job_id(spec))

    def submit(self, spec_path: str | Path) -> str:
        """Validate, bundle the experiment folder and submit it as a job; return the job id."""
        path = Path(spec_path)
        plan = self.plan(path)
        bundle = Path(tempfile.mkdtemp(prefix="flywheel-bundle-"))
        try:
            write_bundle(path.parent, plan, bundle / "experiment")
            return self._jobs().submit(plan, bundle / "experiment")
        finally:
            shutil.rmtree(bundle, ignore_errors=True)

    def jobs(self) -> list[JobInfo]:
        """Jobs submitted through flywheel, newest first."""
        return self._jobs().list()

    def job(self, job_id: str) -> JobInfo:
        return self._jobs().get(job_id)

    def logs(self, job_id: str) -> str:
        return self._jobs().logs(job_id)

    def stop(self, job_id: str) -> bool:
        """Stop a job; True if it was running."""
        return self._jobs().stop(job_id)

    def follow(self, job_id: str, poll_s: float = 1.0) -> Iterator[JobUpdate]:
        """Yield the job's new log lines and progress events until it ends."""
        seen = 0
        last: ProgressEvent | None = None
        while True:
            job = self._jobs().get(job_id)
            text = self._jobs().logs(job_id)
            complete, _, partial = text[seen:].rpartition("\n")
            if job.finished:
                complete, partial = text[seen:], ""
            lines = tuple(complete.splitlines())
            seen = len(text) - len(partial)
            events = []
            for event in filter(None, map(parse_progress, lines)):
                if event != last:  # Ray may forward a worker's line twice
                    events.append(event)
                last = event
            yield JobUpdate(job, lines, tuple(events))
            if job.finished:
                return
            time.sleep(poll_s)

    def _jobs(self) -> JobBackend:
        if self._backend is None:
            self._backend = RayJobsBackend(self.settings.jobs_url, self._ray_token())
        return self._backend

    def _ray_token(self) -> str | None:
        if self.settings.ray_auth_token is not None:
            return self.settings.ray_auth_token.get_secret_value()
        path = self.settings.ray_auth_token_path
        return path.read_text().strip() if path.is_file() else None


def write_bundle(experiment_dir: Path, plan: JobPlan, bundle_dir: Path) -> None:
    """Copy the experiment folder and write the plan into it: the job's working directory."""
    shutil.copytree(experiment_dir, bundle_dir, ignore=shutil.ignore_patterns(*BUNDLE_EXCLUDES))
    plan_file = bundle_dir / PLAN_PATH
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    plan_file.write_text(plan.model_dump_json(indent=2))
