"""Serving operations: deploy, roll out, promote, roll back, undeploy; the progressive controller.

Each operation is the same five steps: read the serving document, make a pure change
(:mod:`flywheel.serving.document`), compare-and-set it on its generation, apply it through the
ServingBackend and wait until Serve runs it, then derive the MLflow aliases from it. When Serve
cannot run the new document (a version that fails to load), the previous one is written back and
applied again, so a failed operation changes nothing. No Ray job and no log parsing.

The control plane will call this same service from its HTTP endpoints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import TypeAdapter

from flywheel.backends.documents import DocumentStore
from flywheel.backends.serving import ApplicationState, ServingBackend
from flywheel.errors import ServeConflictError, ServeError, ServeInputError
from flywheel.rollout import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    Observation,
    ServeTarget,
    StepDecision,
    progressive_decision,
)
from flywheel.serving import document as changes
from flywheel.serving.config import (
    INGRESS_DEPLOYMENT,
    ROOT_APP,
    document_to_serve_config,
    model_app_name,
)
from flywheel.serving.document import ServedModel, ServingDocument
from flywheel.serving.stats import StepObservation, VersionStats
from flywheel.specs.serving import RolloutMode, ServeSpec
from flywheel.tracking import (
    TAG_SERVE_SPEC,
    RolloutRun,
    delete_alias,
    model_version_tag,
    resolve_model_version,
    set_alias,
)
from flywheel.wire import ServedVersion, ServeResult

#: How long Serve may take to run a new document (a new version loads from the registry).
READY_TIMEOUT_S = 300.0
_READY_POLL_S = 0.2
_STATS_TIMEOUT_S = 10.0
_STATS_LIST = TypeAdapter(list[VersionStats])
#: Deployment states in which every replica runs the latest config (autoscaling may go on).
_STEADY = frozenset({"HEALTHY", "UPSCALING", "DOWNSCALING"})


class ServingService:
    """Serving operations over a document store, a Serve backend and the model registry."""

    def __init__(
        self, store: DocumentStore, backend: ServingBackend, target: ServeTarget,
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> None:  # fmt: skip
        self._store, self._backend, self._target = store, backend, target
        self._ready_timeout_s = ready_timeout_s

    def document(self) -> ServingDocument:
        """The serving document as stored now."""
        return self._store.read()

    def deploy(
        self, model: str, version: str | None = None, alias: str | None = None,
        spec: ServeSpec | None = None,
    ) -> ServeResult:  # fmt: skip
        """Serve ``version`` (or the one ``alias`` names, else the latest) alone, as champion."""
        resolved = self._resolve(model, version, alias)
        serve = spec or self._stored_spec(model, resolved)
        return self._change("deploy", model, lambda d: changes.deploy(d, model, resolved, serve))

    def rollout(
        self, model: str, version: str, mode: RolloutMode, percent: float | None = None
    ) -> ServeResult:
        """Start ``version`` as challenger: canary, shadow or progressive (see ``drive``)."""
        resolved = self._resolve(model, version, None)
        return self._change(
            f"start {mode}", model,
            lambda d: changes.start_rollout(d, model, resolved, mode, percent, time.time()),
        )  # fmt: skip

    def serve_new_version(self, model: str, version: str, spec: ServeSpec) -> ServeResult:
        """A newly registered version: champion when the model is not served, else challenger."""
        served = self._store.read().models.get(model)
        if served is None:
            return self.deploy(model, version, spec=spec)
        return self.rollout(model, version, spec.rollout.mode)

    def promote(self, model: str) -> ServeResult:
        """The challenger becomes champion and serves alone."""
        return self._change("promote", model, lambda d: changes.promote(d, model))

    def rollback(self, model: str) -> ServeResult:
        """The challenger goes; the champion answers everything."""
        return self._change("rollback", model, lambda d: changes.rollback(d, model))

    def undeploy(self, model: str) -> ServeResult:
        """Stop serving ``model``."""
        return self._change("undeploy", model, lambda d: changes.undeploy(d, model))

    def models(self) -> list[ServedVersion]:
        """Every served version, champions first within each model."""
        document = self._store.read()
        applications = self._backend.applications() if document.models else {}
        stats = {(s.model, s.version): s for s in self._stats()} if document.models else {}
        listed = []
        for name, served in sorted(document.models.items()):
            replicas = _replicas(applications.get(model_app_name(name)))
            for version in served.versions:
                role = "champion"
                if served.challenger is not None and version == served.challenger.version:
                    role = served.challenger.role
                observed = stats.get((name, version)) or VersionStats(model=name, version=version)
                listed.append(
                    ServedVersion(
                        model=name,
                        version=version,
                        role=role,
                        traffic_percent=served.traffic_percent(version),
                        replicas=replicas,
                        stats=observed,
                    )
                )
        return listed

    def drive(self, model: str, poll_s: float = 1.0) -> ServeResult:
        """Run ``model``'s progressive rollout until it promotes or rolls back.

        Its state (step, step start) lives in the document, so a controller that dies is
        replaced by running this again: it continues from the stored step.
        """
        while True:
            result = self.step(model)
            if result is not None:
                return result
            time.sleep(poll_s)

    def step(self, model: str) -> ServeResult | None:
        """Judge the current step of ``model``'s progressive rollout once; act on the verdict.

        Returns the final result when the rollout ended (or is gone), None while it goes on, or
        when another caller acted on the same step first (the next call judges the new state).
        """
        started_s = time.monotonic()
        document = self._store.read()
        served = document.models.get(model)
        challenger = served.challenger if served else None
        if served is None or challenger is None or challenger.progressive is None:
            return _result("progressive", model, document, started_s, "ended", "no rollout runs")
        rules = served.serve.rollout
        state = challenger.progressive
        waited_s = time.time() - state.step_started_s
        observed = self._observe(model, challenger.version, state.step_started_s)
        decision = progressive_decision(
            observed, rules.slo, state.step, rules.steps, waited_s, rules.step_duration_s,
            rules.max_step_wait_s,
        )  # fmt: skip
        if decision.action == "hold":
            return None
        self._record_step(model, challenger.version, rules.steps[state.step], observed, decision)
        try:
            if decision.action == "advance":
                self._change("advance", model, lambda d: _advanced(d, model))
                return None
            final = self.promote(model) if decision.action == "promote" else self.rollback(model)
        except ServeConflictError:  # another caller acted on this step first: judge again
            return None
        self._record(model, decision.action, decision.reason, {"version": challenger.version})
        return _with_decision(final, decision.action, decision.reason)

    def _change(
        self, action: str, model: str, change: Callable[[ServingDocument], ServingDocument]
    ) -> ServeResult:
        """Read, change, compare-and-set, apply, wait, derive aliases: one serving operation."""
        started_s = time.monotonic()
        before = self._store.read()
        after = change(before)
        self._store.compare_and_set(before.generation, after)
        try:
            self._apply(after)
        except ServeError:
            self._restore(before, after)
            raise
        self._derive_aliases(model, after.models.get(model))
        if action not in ("advance",):
            self._record(model, action, _describe(after, model), {})
        return _result(action, model, after, started_s)

    def _apply(self, document: ServingDocument) -> None:
        config = document_to_serve_config(document, self._target)
        self._backend.apply(config)
        wanted = {app.name for app in config.applications}
        deadline_s = time.monotonic() + self._ready_timeout_s
        while True:
            applications = self._backend.applications()
            if _ready(applications, wanted, document.generation):
                return
            failed = [a for a in applications.values() if a.status == "DEPLOY_FAILED"]
            if failed:
                raise ServeError(f"Serve could not run {failed[0].name}: {failed[0].message}")
            if time.monotonic() > deadline_s:
                raise ServeError(
                    f"Serve did not run the serving document in {self._ready_timeout_s:.0f} s"
                )
            time.sleep(_READY_POLL_S)

    def _restore(self, before: ServingDocument, failed: ServingDocument) -> None:
        """Put back the document that ran before a change Serve could not run."""
        restored = before.model_copy(update={"generation": failed.generation + 1})
        self._store.compare_and_set(failed.generation, restored)
        self._apply(restored)

    def _derive_aliases(self, model: str, served: ServedModel | None) -> None:
        """MLflow aliases follow the document: champion, and challenger while there is one."""
        uri = self._target.tracking_uri
        if served is not None:
            set_alias(uri, model, CHAMPION_ALIAS, served.champion)
        if served is not None and served.challenger is not None:
            set_alias(uri, model, CHALLENGER_ALIAS, served.challenger.version)
        else:
            delete_alias(uri, model, CHALLENGER_ALIAS)

    def _resolve(self, model: str, version: str | None, alias: str | None) -> str:
        resolved = resolve_model_version(self._target.tracking_uri, model, version, alias)
        if resolved is None:
            which = f"version {version}" if version else f"alias {alias}" if alias else "version"
            raise ServeInputError(f"model {model!r} has no {which} in the MLflow registry")
        return resolved

    def _stored_spec(self, model: str, version: str) -> ServeSpec:
        """The serving settings the experiment stored on the version, else the defaults."""
        stored = model_version_tag(self._target.tracking_uri, model, version, TAG_SERVE_SPEC)
        return ServeSpec.model_validate_json(stored) if stored else ServeSpec()

    def _stats(self) -> list[VersionStats]:
        return _STATS_LIST.validate_python(self._serving_get("/flywheel/stats", {}))

    def _observe(self, model: str, version: str, since_s: float) -> Observation:
        params = {"model": model, "version": version, "since_s": str(since_s)}
        seen = StepObservation.model_validate(self._serving_get("/flywheel/observe", params))
        return Observation(
            requests=seen.requests, errors=seen.errors, latencies_ms=tuple(seen.latencies_ms),
            feedback=seen.feedback, correct=seen.correct,
        )  # fmt: skip

    def _serving_get(self, path: str, params: dict[str, str]) -> Any:
        """JSON from the serving endpoints (parsed by the caller's model)."""
        url = f"{self._target.reach_url}{path}"
        try:
            with httpx.Client(timeout=_STATS_TIMEOUT_S, trust_env=False) as http:
                response = http.get(url, params=params)
                response.raise_for_status()
        except httpx.HTTPError as e:
            raise ServeError(f"no serving statistics at {url} ({type(e).__name__})") from e
        return response.json()

    def _record_step(
        self, model: str, version: str, percent: float, observed: Observation,
        decision: StepDecision,
    ) -> None:  # fmt: skip
        """One MLflow run per judged step: what was observed at ``percent`` and the verdict."""
        metrics = {"traffic_percent": percent, "requests": float(observed.requests),
                   "error_rate": observed.error_rate}  # fmt: skip
        if observed.p95_latency_ms is not None:
            metrics["p95_latency_ms"] = observed.p95_latency_ms
        if observed.online_accuracy is not None:
            metrics["online_accuracy"] = observed.online_accuracy
        params = {"model": model, "version": version, "traffic_percent": percent}
        run = RolloutRun(self._target.tracking_uri, f"{model}-v{version}-progressive", params)
        run.log_step(0, metrics)
        run.finish(decision.action, decision.reason)

    def _record(self, model: str, decision: str, reason: str, params: dict[str, str]) -> None:
        run = RolloutRun(
            self._target.tracking_uri, f"{model}-{decision}", {"model": model, **params}
        )
        run.finish(decision, reason)


def _advanced(document: ServingDocument, model: str) -> ServingDocument:
    return changes.advance_step(document, model, time.time())


def _ready(applications: dict[str, ApplicationState], wanted: set[str], generation: int) -> bool:
    """Serve runs exactly ``wanted``, and every model ingress follows ``generation``'s route."""
    if set(applications) != wanted:
        return False
    for app in applications.values():
        if app.status != "RUNNING":
            return False
        for deployment in app.deployments:
            if deployment.status not in _STEADY:
                return False
            if deployment.name == INGRESS_DEPLOYMENT and deployment.generation != generation:
                return False
    return True


def _replicas(application: ApplicationState | None) -> int:
    if application is None:
        return 0
    return sum(d.running_replicas for d in application.deployments)


def _describe(document: ServingDocument, model: str) -> str:
    served = document.models.get(model)
    if served is None:
        return f"{model} is not served"
    if served.challenger is None:
        return f"version {served.champion} is champion"
    challenger = served.challenger
    return f"version {challenger.version} as {challenger.mode} at {challenger.percent:g}%"


def _result(
    action: str, model: str, document: ServingDocument, started_s: float,
    decision: str | None = None, reason: str | None = None,
) -> ServeResult:  # fmt: skip
    served = document.models.get(model)
    challenger = served.challenger if served else None
    return ServeResult(
        action=action, model=model, generation=document.generation,
        champion=served.champion if served else None,
        challenger=challenger.version if challenger else None,
        mode=challenger.mode if challenger else None,
        challenger_percent=challenger.percent if challenger else 0.0,
        elapsed_s=time.monotonic() - started_s, decision=decision, reason=reason,
    )  # fmt: skip


def _with_decision(result: ServeResult, decision: str, reason: str) -> ServeResult:
    return result.model_copy(update={"decision": decision, "reason": reason})


__all__ = ["ROOT_APP", "ServeResult", "ServedVersion", "ServingService"]
