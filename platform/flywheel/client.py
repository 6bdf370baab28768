"""The public facade the CLI and SDK users call: validate, submit, watch and stop experiments.

Experiments and serving operations go through the control plane (HTTP, with the team token of
the settings); it alone holds the Ray token. Inference goes to the model gateway whose address
the control plane gives (``cluster()``).
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from flywheel.alerts import read_alert, record_check
from flywheel.api_client import ControlPlaneApi
from flywheel.backends.base import BUNDLE_EXCLUDES
from flywheel.errors import JobError, ServeError, ServeInputError
from flywheel.monitoring import MonitorReport, monitor_report
from flywheel.plans import JobPlan, new_job_id, spec_to_job_plan
from flywheel.profiles import TrainingProfile
from flywheel.progress import ProgressEvent, parse_progress
from flywheel.readiness import READINESS_FILE, Evidence, ReadinessReport, readiness_report
from flywheel.request_log import read_feedback, read_requests
from flywheel.settings import Settings
from flywheel.snapshots import SnapshotManifest, read_manifest
from flywheel.specs.experiment import ExperimentSpec
from flywheel.specs.serving import MonitorSpec, RolloutMode
from flywheel.specs.validate import validate_experiment
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
from flywheel.wire import (
    ClusterView,
    ExperimentView,
    Explanation,
    FeedbackAnswer,
    InferenceAnswer,
    QueueView,
    RetrainView,
    RolloutStep,
    ServedVersion,
    ServeResult,
    TeamUsage,
    TokenCreated,
    WhoAmI,
)

_GATEWAY_TIMEOUT_S = 30.0
#: A serving operation waits until Serve runs it (up to 300 s), twice when it must restore.
_SERVING_TIMEOUT_S = 660.0

__all__ = ["Client", "JobUpdate", "ServeResult", "ServedVersion", "SnapshotReport"]


@dataclass(frozen=True)
class SnapshotReport:
    """A data snapshot of an experiment and the runs that trained on it (newest first)."""

    fingerprint: str
    url: str
    manifest: SnapshotManifest | None  # None: the storage root no longer holds it
    runs: tuple[SnapshotUse, ...]


@dataclass(frozen=True)
class JobUpdate:
    """What changed in an experiment since the previous update."""

    job: ExperimentView
    lines: tuple[str, ...]
    events: tuple[ProgressEvent, ...]


class Client:
    """Entry point for everything a user does with flywheel."""

    def __init__(
        self,
        settings: Settings | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._api = ControlPlaneApi(self.settings, http)
        self._cluster: ClusterView | None = None

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
        """Validate, bundle the experiment folder and queue it; return the experiment id.

        With ``resume``, the experiment continues its last search instead of a new one.
        """
        path = Path(spec_path)
        self.plan(path, resume)  # every problem is reported here, before anything is sent
        with tempfile.TemporaryFile() as archive:
            bundle_folder(path.parent, archive)
            archive.seek(0)
            experiment = self._api.call(
                "POST", "/experiments", ExperimentView,
                data={"spec_file": path.name, "resume": str(resume).lower()},
                files={"bundle": ("bundle.tar.gz", archive, "application/gzip")},
            )  # fmt: skip
        return experiment.id

    def resume(self, experiment: str, team: str | None = None) -> str:
        """Continue the last search of ``experiment`` from its stored bundle; return the new id."""
        body = {"name": experiment, "team": team}
        return self._api.call("POST", "/experiments/resume", ExperimentView, json=body).id

    def retrain(self, model: str) -> RetrainView:
        """Queue a retraining of ``model`` from its own spec, with its fed-back requests added
        to the training data; the new version starts as the serve section says (shadow, canary)."""
        return self._api.call("POST", f"/models/{model}/retrain", RetrainView)

    def jobs(self) -> list[ExperimentView]:
        """The team's experiments, newest first."""
        return self._api.call_list("/experiments", ExperimentView)

    def job(self, experiment_id: str) -> ExperimentView:
        """One experiment with its state history."""
        return self._api.call("GET", f"/experiments/{experiment_id}", ExperimentView)

    def logs(self, experiment_id: str) -> str:
        """The log of the experiment's current job."""
        return self._api.text(f"/experiments/{experiment_id}/logs")

    def stop(self, experiment_id: str) -> bool:
        """Stop an experiment; True if it had not ended yet."""
        before = self.job(experiment_id)
        self._api.call("POST", f"/experiments/{experiment_id}/stop", ExperimentView)
        return not before.finished

    def follow(self, experiment_id: str, poll_s: float = 1.0) -> Iterator[JobUpdate]:
        """Yield the experiment's log lines and progress events as its jobs write them, until it
        ends; a preempted experiment is followed into its resumed job."""
        last: list[ProgressEvent | None] = [None]
        streamed: set[str] = set()
        while True:
            experiment = self.job(experiment_id)
            job_id = experiment.ray_job_id
            # ADMITTED: the job may not exist yet; RUNNING or later, it does (or did).
            started = experiment.state not in ("QUEUED", "ADMITTED")
            if job_id is not None and job_id not in streamed and started:
                streamed.add(job_id)
                yield from self._stream(experiment, last)
                continue
            yield JobUpdate(experiment, (), ())
            if experiment.finished:
                return
            time.sleep(poll_s)  # it waits for admission: nothing to stream yet

    def teams(self) -> list[TeamUsage]:
        """Usage against quota of the token's team (every team for the admin)."""
        return self._api.call_list("/teams", TeamUsage)

    def queue(self) -> QueueView:
        """Waiting experiments in admission order, with why each waits, and usage."""
        return self._api.call("GET", "/queue", QueueView)

    def explain(self, experiment_id: str) -> Explanation:
        """Why an experiment waits: the quota, who holds it, its position, an estimate."""
        return self._api.call("GET", f"/experiments/{experiment_id}/explain", Explanation)

    def create_token(self, team: str) -> TokenCreated:
        """A new token for ``team`` (needs the admin token); shown once."""
        return self._api.call("POST", f"/teams/{team}/tokens", TokenCreated)

    def whoami(self) -> WhoAmI:
        return self._api.call("GET", "/whoami", WhoAmI)

    def deploy(
        self, model: str, version: str | None = None, alias: str | None = None
    ) -> ServeResult:
        """Serve ``version`` (or the one ``alias`` names, else the latest) as champion."""
        body = {"version": version, "alias": alias}
        return self._serve(f"/models/{model}/deploy", body)

    def rollout(
        self, model: str, version: str, mode: RolloutMode, canary_percent: float | None = None,
        wait: bool = True,
    ) -> ServeResult:  # fmt: skip
        """Start ``version`` as the challenger of ``model``'s champion in ``mode``.

        A progressive rollout then runs its steps; with ``wait`` this drives it until it
        promotes or rolls back (``drive_rollout`` continues one whose controller stopped).
        """
        body = {"version": version, "mode": mode, "canary_percent": canary_percent}
        started = self._serve(f"/models/{model}/rollout", body)
        if mode != "progressive" or not wait:
            return started
        return self.drive_rollout(model)

    def drive_rollout(self, model: str, poll_s: float = 1.0) -> ServeResult:
        """Run ``model``'s progressive rollout from its stored step until it ends: the control
        plane judges each step; its state lives in the serving document, so any caller can go
        on where another stopped."""
        while True:
            judged = self._api.call(
                "POST", f"/models/{model}/step", RolloutStep, timeout=_SERVING_TIMEOUT_S
            )
            if judged.ended and judged.result is not None:
                return judged.result
            time.sleep(poll_s)

    def promote(self, model: str) -> ServeResult:
        """Make ``model``'s challenger the champion (route and MLflow alias)."""
        return self._serve(f"/models/{model}/promote")

    def rollback(self, model: str) -> ServeResult:
        """Remove ``model``'s challenger; the champion answers everything."""
        return self._serve(f"/models/{model}/rollback")

    def undeploy(self, model: str) -> ServeResult:
        """Stop serving ``model``."""
        return self._serve(f"/models/{model}/undeploy")

    def models(self) -> list[ServedVersion]:
        """Served versions of the team's models: role, traffic split, replicas, request rate,
        online accuracy."""
        return self._api.call_list("/models", ServedVersion)

    def cluster(self) -> ClusterView:
        """Where the cluster serves models, tracks runs and stores data (asked once)."""
        if self._cluster is None:
            self._cluster = self._api.call("GET", "/cluster", ClusterView)
        return self._cluster

    def predict(
        self, model: str, request: dict[str, Any] | bytes, version: str | None = None
    ) -> InferenceAnswer:
        """Send an OIP v2 inference request (JSON) to the model; returns its answer."""
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        body = request if isinstance(request, bytes) else json.dumps(request).encode()
        return InferenceAnswer.model_validate(self._gateway("POST", path, body))

    def feedback(self, model: str, request_id: str, label: int | float | str) -> FeedbackAnswer:
        """Report the true label of an answered request."""
        body = json.dumps({"id": request_id, "label": label}).encode()
        return FeedbackAnswer.model_validate(
            self._gateway("POST", f"/v2/models/{model}/feedback", body)
        )

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

    def _stream(
        self, experiment: ExperimentView, last: list[ProgressEvent | None]
    ) -> Iterator[JobUpdate]:
        """The current job's log, streamed by the control plane from Ray's log tailing."""
        partial = ""
        path = f"/experiments/{experiment.id}/logs"
        for chunk in self._api.stream(path, {"follow": "true"}):
            complete, newline, partial = (partial + chunk).rpartition("\n")
            if newline:
                yield _update(experiment, complete.splitlines(), last)
        if partial:
            yield _update(experiment, [partial], last)

    def _gateway(self, method: str, path: str, body: bytes | None = None) -> Any:
        serve_url = self.cluster().serve_url
        url = f"{serve_url}{path}"
        headers = {"content-type": "application/json"}
        try:
            with httpx.Client(timeout=_GATEWAY_TIMEOUT_S, trust_env=False) as http:
                response = http.request(method, url, content=body, headers=headers)
        except httpx.HTTPError as e:
            raise ServeError(
                f"no model gateway at {serve_url} ({type(e).__name__}); "
                "deploy a model with `flywheel deploy`"
            ) from e
        if response.status_code == httpx.codes.NOT_FOUND and path == "/flywheel/models":
            return []  # Serve runs, the gateway does not yet
        if response.is_error:
            kind = ServeInputError if response.is_client_error else ServeError
            raise kind(f"{method} {path}: HTTP {response.status_code}: {_error_text(response)}")
        return response.json()

    def _serve(self, path: str, body: dict[str, Any] | None = None) -> ServeResult:
        return self._api.call(
            "POST", path, ServeResult, json=body or {}, timeout=_SERVING_TIMEOUT_S
        )


def bundle_folder(folder: Path, archive: Any) -> None:
    """Write ``folder`` (without BUNDLE_EXCLUDES) as a tar.gz into the binary file ``archive``;
    links are left out (the control plane refuses them)."""
    ignore = {p for p in BUNDLE_EXCLUDES if "*" not in p}
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if path.is_symlink() or any(part in ignore for part in relative.parts):
                continue
            if path.is_file() and not any(relative.match(p) for p in BUNDLE_EXCLUDES):
                tar.add(path, arcname=relative.as_posix(), recursive=False)


def _update(
    experiment: ExperimentView, lines: list[str], last: list[ProgressEvent | None]
) -> JobUpdate:
    events = []
    for event in filter(None, map(parse_progress, lines)):
        if event != last[0]:  # Ray may forward a worker's line twice
            events.append(event)
        last[0] = event
    return JobUpdate(experiment, tuple(lines), tuple(events))


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except (ValueError, AttributeError):
        return response.text
