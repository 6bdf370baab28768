"""The public facade the CLI and SDK users call: validate, submit, watch and stop experiments.

For now it talks to the Ray Jobs API and, for serving, to the serving service
(:mod:`flywheel.serving_service`) directly; the control plane will sit behind this same facade
without changing its methods.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from flywheel.backends.documents import FileDocumentStore
from flywheel.backends.serving import ServeRestBackend
from flywheel.errors import JobError, ServeError, ServeInputError
from flywheel.jobs import BUNDLE_EXCLUDES, JobBackend, JobInfo, RayJobsBackend
from flywheel.plans import (
    META_BUNDLE,
    PLAN_PATH,
    JobPlan,
    new_job_id,
    resumed_plan,
    spec_to_job_plan,
)
from flywheel.progress import ProgressEvent, parse_progress
from flywheel.rollout import serve_target
from flywheel.serving_service import ServedVersion, ServeResult, ServingService
from flywheel.settings import Settings
from flywheel.specs.experiment import ExperimentSpec
from flywheel.specs.serving import RolloutMode
from flywheel.specs.validate import validate_experiment
from flywheel.storage import download_tree, upload_tree

_GATEWAY_TIMEOUT_S = 30.0


__all__ = ["Client", "JobUpdate", "ServeResult", "ServedVersion"]


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
        self._serving: ServingService | None = None

    def validate(self, spec_path: str | Path) -> ExperimentSpec:
        """Validate a spec file and its task code; raise SpecError with every problem."""
        return validate_experiment(Path(spec_path))

    def plan(self, spec_path: str | Path, resume: bool = False) -> JobPlan:
        """The plan that ``submit`` would send, without sending it."""
        path = Path(spec_path)
        spec = self.validate(path)
        if resume and spec.search is None:
            raise JobError(f"{path} has no search section: there is no search to resume")
        return spec_to_job_plan(
            spec, path.name, path.read_bytes(), self.settings, new_job_id(spec), resume
        )

    def submit(self, spec_path: str | Path, resume: bool = False) -> str:
        """Validate, bundle the experiment folder and submit it as a job; return the job id.

        With ``resume``, the job continues the experiment's last search instead of a new one.
        """
        path = Path(spec_path)
        plan = self.plan(path, resume)
        with tempfile.TemporaryDirectory(prefix="flywheel-bundle-") as folder:
            bundle = Path(folder) / "experiment"
            shutil.copytree(path.parent, bundle, ignore=shutil.ignore_patterns(*BUNDLE_EXCLUDES))
            return self._submit_bundle(plan, bundle)

    def resume(self, experiment: str, team: str | None = None) -> str:
        """Continue the last search of ``experiment`` from its stored bundle; return the job id."""
        last = self._last_job(experiment, team)
        if not last.finished:
            raise JobError(
                f"job {last.job_id} of {experiment!r} is {last.state}; "
                f"stop it first with `flywheel stop {last.job_id}`"
            )
        if not last.bundle_url:
            raise JobError(f"job {last.job_id} kept no bundle to resume from")
        with tempfile.TemporaryDirectory(prefix="flywheel-bundle-") as folder:
            bundle = download_tree(last.bundle_url, Path(folder) / "experiment")
            old = JobPlan.model_validate_json((bundle / PLAN_PATH).read_text())
            if old.spec.search is None:
                raise JobError(
                    f"{experiment!r} has no search section: there is no search to resume"
                )
            return self._submit_bundle(resumed_plan(old, new_job_id(old.spec)), bundle)

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

    def deploy(
        self, model: str, version: str | None = None, alias: str | None = None
    ) -> ServeResult:
        """Serve ``version`` (or the one ``alias`` names, else the latest) as champion."""
        return self.serving().deploy(model, version, alias)

    def rollout(
        self, model: str, version: str, mode: RolloutMode, canary_percent: float | None = None,
        wait: bool = True,
    ) -> ServeResult:  # fmt: skip
        """Start ``version`` as the challenger of ``model``'s champion in ``mode``.

        A progressive rollout then runs its steps; with ``wait`` this drives it until it
        promotes or rolls back (``drive_rollout`` continues one whose controller stopped).
        """
        started = self.serving().rollout(model, version, mode, canary_percent)
        if mode != "progressive" or not wait:
            return started
        return self.drive_rollout(model)

    def drive_rollout(self, model: str) -> ServeResult:
        """Run ``model``'s progressive rollout from its stored step until it ends."""
        return self.serving().drive(model)

    def promote(self, model: str) -> ServeResult:
        """Make ``model``'s challenger the champion (route and MLflow alias)."""
        return self.serving().promote(model)

    def rollback(self, model: str) -> ServeResult:
        """Remove ``model``'s challenger; the champion answers everything."""
        return self.serving().rollback(model)

    def undeploy(self, model: str) -> ServeResult:
        """Stop serving ``model``."""
        return self.serving().undeploy(model)

    def models(self) -> list[ServedVersion]:
        """Served versions: role, traffic split, replicas, request rate, online accuracy."""
        return self.serving().models()

    def predict(
        self, model: str, request: dict[str, Any] | bytes, version: str | None = None
    ) -> dict[str, Any]:
        """Send an OIP v2 inference request (JSON) to the model; returns its response."""
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        body = request if isinstance(request, bytes) else json.dumps(request).encode()
        answer: dict[str, Any] = self._gateway("POST", path, body)
        return answer

    def feedback(self, model: str, request_id: str, label: int | float | str) -> dict[str, Any]:
        """Report the true label of an answered request."""
        body = json.dumps({"id": request_id, "label": label}).encode()
        answer: dict[str, Any] = self._gateway("POST", f"/v2/models/{model}/feedback", body)
        return answer

    def serving(self) -> ServingService:
        """The serving operations on this platform (document store, Serve REST API, registry)."""
        if self._serving is None:
            store = FileDocumentStore(self.settings.storage_root / "serving")
            backend = ServeRestBackend(self.settings.jobs_url, self._ray_token())
            self._serving = ServingService(store, backend, serve_target(self.settings))
        return self._serving

    def _gateway(self, method: str, path: str, body: bytes | None = None) -> Any:
        url = f"{self.settings.serve_url}{path}"
        headers = {"content-type": "application/json"}
        try:
            with httpx.Client(timeout=_GATEWAY_TIMEOUT_S, trust_env=False) as http:
                response = http.request(method, url, content=body, headers=headers)
        except httpx.HTTPError as e:
            raise ServeError(
                f"no model server at {self.settings.serve_url} ({type(e).__name__}); "
                "deploy a model with `flywheel deploy`"
            ) from e
        if response.is_error:
            kind = ServeInputError if response.is_client_error else ServeError
            raise kind(f"{method} {path}: HTTP {response.status_code}: {_error_text(response)}")
        return response.json()

    def _submit_bundle(self, plan: JobPlan, bundle: Path) -> str:
        """Write the plan into the bundle, keep a copy under the storage root, submit it."""
        plan_file = bundle / PLAN_PATH
        plan_file.parent.mkdir(parents=True, exist_ok=True)
        plan_file.write_text(plan.model_dump_json(indent=2))
        upload_tree(bundle, plan.metadata[META_BUNDLE])
        return self._jobs().submit(plan, bundle)

    def _last_job(self, experiment: str, team: str | None) -> JobInfo:
        jobs = [j for j in self.jobs() if j.experiment == experiment and team in (None, j.team)]
        if not jobs:
            raise JobError(f"no job of experiment {experiment!r}; `flywheel jobs` lists them")
        teams = sorted({j.team for j in jobs})
        if len(teams) > 1:
            raise JobError(f"{experiment!r} exists for teams {', '.join(teams)}; pass --team")
        return jobs[0]

    def _jobs(self) -> JobBackend:
        if self._backend is None:
            self._backend = RayJobsBackend(self.settings.jobs_url, self._ray_token())
        return self._backend

    def _ray_token(self) -> str | None:
        if self.settings.ray_auth_token is not None:
            return self.settings.ray_auth_token.get_secret_value()
        path = self.settings.ray_auth_token_path
        return path.read_text().strip() if path.is_file() else None


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except (ValueError, AttributeError):
        return response.text
