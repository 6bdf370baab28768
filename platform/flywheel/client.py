"""The public facade the CLI and SDK users call: validate, submit, watch and stop experiments.

Experiments, serving operations, data snapshots, monitor checks and readiness reports go through
the control plane (HTTP, with the team token of the settings); it alone holds the Ray token and
reads MLflow and the storage root, so this module imports neither Ray nor MLflow. Inference goes
to the model gateway whose address the control plane gives (``cluster()``).
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
from urllib.parse import quote

import httpx

from flywheel.api_client import ControlPlaneApi
from flywheel.backends.base import BUNDLE_EXCLUDES
from flywheel.errors import JobError, ServeError, ServeInputError
from flywheel.plans import JobPlan, new_job_id, spec_to_job_plan
from flywheel.progress import ProgressEvent, parse_progress
from flywheel.settings import Settings
from flywheel.specs.experiment import ExperimentSpec
from flywheel.specs.serving import RolloutMode
from flywheel.specs.validate import validate_experiment
from flywheel.wire import (
    ClusterView,
    ExperimentView,
    Explanation,
    FeedbackAnswer,
    InferenceAnswer,
    MlflowAccess,
    MonitorReport,
    QueueView,
    ReadinessReport,
    RetrainView,
    RolloutStep,
    ServedVersion,
    ServeResult,
    SnapshotReport,
    TeamUsage,
    TokenCreated,
    WhoAmI,
)

_GATEWAY_TIMEOUT_S = 30.0
#: A serving operation waits until Serve runs it (up to 300 s), twice when it must restore.
_SERVING_TIMEOUT_S = 660.0
#: A monitor check or readiness report reads the request log and MLflow on the control plane.
_CHECK_TIMEOUT_S = 300.0

__all__ = ["Client", "JobUpdate", "ServeResult", "ServedVersion", "SnapshotReport"]


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

    def mlflow_env(self) -> MlflowAccess:
        """The MLflow tracking URI and the identity of the token's team (the admin's for the
        admin token), for MLflow's own clients and UI."""
        return self._api.call("GET", "/mlflow/env", MlflowAccess)

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
        """The data snapshots of ``experiment`` with the runs that used each, newest first (the
        team's runs only; every run for the admin)."""
        return self._api.call_list(f"/data/{quote(experiment, safe='/')}", SnapshotReport)

    def monitor(self, model: str, last_n: int | None = None) -> MonitorReport:
        """Drift, online accuracy, latency and errors of ``model`` over its last logged requests.

        The control plane judges the last ``last_n`` sampled requests (default: the serve
        section's ``monitor.window_requests``) and records the check in the model's alert state.
        """
        body = {"last": last_n}
        return self._api.call(
            "POST", f"/models/{model}/monitor", MonitorReport, json=body, timeout=_CHECK_TIMEOUT_S
        )

    def readiness(self, model: str, version: str | None = None) -> ReadinessReport:
        """Score a version (default: the latest) against the ML Test Score; the control plane
        logs the report to MLflow."""
        body = {"version": version}
        return self._api.call(
            "POST", f"/models/{model}/readiness", ReadinessReport, json=body,
            timeout=_CHECK_TIMEOUT_S,
        )  # fmt: skip

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
