"""The public facade the CLI and SDK users call: validate, submit, watch and stop experiments.

For now it talks to the Ray Jobs API directly; the control plane will sit behind this same
facade without changing its methods.
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

from flywheel.alerts import read_alert, record_check
from flywheel.errors import JobError, ServeError, ServeInputError
from flywheel.jobs import BUNDLE_EXCLUDES, JobBackend, JobInfo, RayJobsBackend
from flywheel.monitoring import MonitorReport, monitor_report
from flywheel.plans import (
    META_BUNDLE,
    PLAN_PATH,
    JobPlan,
    new_job_id,
    resumed_plan,
    spec_to_job_plan,
)
from flywheel.profiles import TrainingProfile
from flywheel.progress import ProgressEvent, parse_progress
from flywheel.readiness import READINESS_FILE, Evidence, ReadinessReport, readiness_report
from flywheel.request_log import read_feedback, read_requests
from flywheel.rollout import (
    META_SERVE_ACTION,
    RESULT_PREFIX,
    ServeAction,
    ServePlan,
    serve_entrypoint,
    serve_plan,
)
from flywheel.settings import Settings
from flywheel.snapshots import SnapshotManifest, read_manifest
from flywheel.specs.experiment import ExperimentSpec
from flywheel.specs.serving import MonitorSpec, RolloutMode
from flywheel.specs.validate import validate_experiment
from flywheel.storage import download_tree, upload_tree
from flywheel.tracking import (
    TAG_PROFILE,
    TAG_SERVE_SPEC,
    SnapshotUse,
    log_version_artifact,
    model_version_tag,
    resolve_model_version,
    snapshot_uses,
    version_artifact_dict,
    version_record,
)

#: How long a serving job (deploy, rollout start, promote, rollback) may take.
SERVE_JOB_TIMEOUT_S = 600.0
_GATEWAY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SnapshotReport:
    """A data snapshot of an experiment and the runs that trained on it (newest first)."""

    fingerprint: str
    url: str
    manifest: SnapshotManifest | None  # None: the storage root no longer holds it
    runs: tuple[SnapshotUse, ...]


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
    ) -> dict[str, Any]:
        """Serve ``version`` (or the one ``alias`` names, else the latest) as champion."""
        self._check_version(model, version, alias)
        return self._serve(serve_plan(self.settings, "deploy", model, version=version, alias=alias))

    def rollout(
        self, model: str, version: str, mode: RolloutMode, canary_percent: float | None = None,
        wait: bool = True,
    ) -> dict[str, Any]:  # fmt: skip
        """Start ``version`` as the challenger of ``model``'s champion in ``mode``.

        A progressive rollout runs until it promotes or rolls back; with ``wait=False`` this
        returns ``{"job_id": ...}`` at once (follow it with ``logs``).
        """
        self._check_version(model, version, None)
        served = self._served(model)
        if version == served[0]["version"]:
            raise ServeInputError(f"version {version} of {model} is already the champion")
        fields = {"version": version, "mode": mode, "canary_percent": canary_percent}
        return self._serve(serve_plan(self.settings, "rollout", model, **fields), wait)

    def promote(self, model: str) -> dict[str, Any]:
        """Make ``model``'s challenger the champion (route and MLflow alias)."""
        return self._serve_challenged("promote", model)

    def rollback(self, model: str) -> dict[str, Any]:
        """Remove ``model``'s challenger; the champion answers everything."""
        return self._serve_challenged("rollback", model)

    def undeploy(self, model: str) -> dict[str, Any]:
        """Stop serving ``model``."""
        self._served(model)
        return self._serve(serve_plan(self.settings, "undeploy", model))

    def models(self) -> list[dict[str, Any]]:
        """Served versions: role, traffic split, replicas, request rate, online accuracy."""
        listed: list[dict[str, Any]] = self._gateway("GET", "/flywheel/models")
        return listed

    def predict(
        self, model: str, request: dict[str, Any] | bytes, version: str | None = None
    ) -> dict[str, Any]:
        """Send an OIP v2 inference request through the gateway; returns its response."""
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        body = request if isinstance(request, bytes) else json.dumps(request).encode()
        answer: dict[str, Any] = self._gateway("POST", path, body)
        return answer

    def feedback(self, model: str, request_id: str, label: int | float | str) -> dict[str, Any]:
        """Report the true label of an answered request."""
        body = json.dumps({"id": request_id, "label": label}).encode()
        answer: dict[str, Any] = self._gateway("POST", f"/v2/models/{model}/feedback", body)
        return answer

    def data(self, experiment: str) -> list[SnapshotReport]:
        """The data snapshots of ``experiment`` with the runs that used each, newest first."""
        uses = snapshot_uses(self.settings.tracking_uri, experiment)
        if not uses:
            raise JobError(
                f"no run of experiment {experiment!r} recorded a data snapshot; "
                "`flywheel jobs` lists the experiments"
            )
        grouped: dict[str, list[SnapshotUse]] = {}
        for use in uses:
            grouped.setdefault(use.fingerprint, []).append(use)
        return [
            SnapshotReport(fp, runs[0].url, read_manifest(runs[0].url), tuple(runs))
            for fp, runs in grouped.items()
        ]

    def monitor(
        self, model: str, last_n: int | None = None, now_s: float | None = None
    ) -> MonitorReport:
        """Drift, online accuracy, latency and errors of ``model`` over its last logged requests.

        Judges the last ``last_n`` sampled requests (default: the serve section's
        ``monitor.window_requests``) and records the check in the model's alert state.
        """
        latest = resolve_model_version(self.settings.tracking_uri, model)
        if latest is None:
            raise ServeInputError(f"model {model!r} has no version in the MLflow registry")
        rules = self._monitor_rules(model, latest)
        root = str(self.settings.storage_root)
        requests = read_requests(root, model, last_n or rules.window_requests)
        since_s = requests[0].time_s if requests else None
        feedback = read_feedback(root, model, since_s) if requests else []
        profiles = {v: self._profile(model, v) for v in sorted({r.version for r in requests})}
        report = monitor_report(model, requests, feedback, profiles, rules)
        now = time.time() if now_s is None else now_s
        alert = record_check(root, model, report, now, rules.webhook_url)
        return report.model_copy(update={"alert": alert})

    def readiness(self, model: str, version: str | None = None) -> ReadinessReport:
        """Score a version (default: the latest) against the ML Test Score; log it to MLflow."""
        resolved = resolve_model_version(self.settings.tracking_uri, model, version)
        if resolved is None:
            which = f"version {version}" if version else "version"
            raise ServeInputError(f"model {model!r} has no {which} in the MLflow registry")
        record = version_record(self.settings.tracking_uri, model, resolved)
        root = str(self.settings.storage_root)
        requests = [r for r in read_requests(root, model) if r.version == resolved]
        feedback = [f for f in read_feedback(root, model) if f.version == resolved]
        alert = read_alert(root, model)
        evidence = Evidence(
            params=record.params, metrics=record.metrics, run_tags=record.run_tags,
            version_tags=record.version_tags, challenger_modes=record.challenger_modes,
            logged_requests=len(requests), feedback=len(feedback),
            monitor_checked=alert.checked_s is not None, drift_alert=alert.active,
        )  # fmt: skip
        report = readiness_report(model, resolved, evidence)
        log_version_artifact(self.settings.tracking_uri, model, resolved,
                             report.model_dump(mode="json"), READINESS_FILE)  # fmt: skip
        return report

    def _monitor_rules(self, model: str, version: str) -> MonitorSpec:
        """The ``monitor`` part of the serve section the version was served with (leniently)."""
        text = model_version_tag(self.settings.tracking_uri, model, version, TAG_SERVE_SPEC)
        try:
            stored = json.loads(text or "{}").get("monitor") or {}
            return MonitorSpec.model_validate(stored)
        except (ValueError, AttributeError):
            return MonitorSpec()

    def _profile(self, model: str, version: str) -> TrainingProfile | None:
        data = version_artifact_dict(self.settings.tracking_uri, model, version, TAG_PROFILE)
        try:
            return TrainingProfile.model_validate(data) if data is not None else None
        except ValueError:
            return None

    def _serve(self, plan: ServePlan, wait: bool = True) -> dict[str, Any]:
        """Run a serving action as a job; wait for its result unless ``wait`` is False."""
        job_id = self._jobs().submit_command(
            serve_entrypoint(plan), {META_SERVE_ACTION: plan.action}
        )
        if not wait:
            return {"job_id": job_id}
        deadline = time.monotonic() + SERVE_JOB_TIMEOUT_S
        while not (job := self._jobs().get(job_id)).finished:
            if time.monotonic() > deadline:
                raise ServeError(f"serving job {job_id} still runs after {SERVE_JOB_TIMEOUT_S} s")
            time.sleep(0.5)
        return _serve_result(job, self._jobs().logs(job_id))

    def _serve_challenged(self, action: ServeAction, model: str) -> dict[str, Any]:
        if not any(v["role"] == "challenger" for v in self._served(model)):
            raise ServeInputError(f"{model} has no challenger; start one with flywheel rollout")
        return self._serve(serve_plan(self.settings, action, model))

    def _served(self, model: str) -> list[dict[str, Any]]:
        """The served versions of ``model``, champion first; ServeInputError if none."""
        versions = [v for v in self.models() if v["model"] == model]
        if not versions:
            raise ServeInputError(f"{model} is not served; deploy it first with flywheel deploy")
        return sorted(versions, key=lambda v: v["role"] != "champion")

    def _check_version(self, model: str, version: str | None, alias: str | None) -> None:
        if resolve_model_version(self.settings.tracking_uri, model, version, alias) is None:
            which = f"version {version}" if version else f"alias {alias}" if alias else "version"
            raise ServeInputError(f"model {model!r} has no {which} in the MLflow registry")

    def _gateway(self, method: str, path: str, body: bytes | None = None) -> Any:
        url = f"{self.settings.serve_url}{path}"
        headers = {"content-type": "application/json"}
        try:
            with httpx.Client(timeout=_GATEWAY_TIMEOUT_S, trust_env=False) as http:
                response = http.request(method, url, content=body, headers=headers)
        except httpx.HTTPError as e:
            raise ServeError(
                f"no model gateway at {self.settings.serve_url} ({type(e).__name__}); "
                "deploy a model with `flywheel deploy`"
            ) from e
        if response.status_code == httpx.codes.NOT_FOUND and path == "/flywheel/models":
            return []  # Serve runs, the gateway does not yet
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


def _serve_result(job: JobInfo, logs: str) -> dict[str, Any]:
    """The result line of a finished serving job, or its error as ServeError."""
    for line in reversed(logs.splitlines()):
        if line.startswith(RESULT_PREFIX) and job.state == "SUCCEEDED":
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    reasons = [
        line.removeprefix("flywheel: ")
        for line in logs.splitlines()
        if line.startswith("flywheel: ")
    ]
    reason = reasons[-1] if reasons else job.message or "no reason given"
    raise ServeError(f"serving job {job.job_id} {job.state.lower()}: {reason}")


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except (ValueError, AttributeError):
        return response.text
