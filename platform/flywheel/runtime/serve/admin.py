"""Serving actions, run inside the cluster: deploy, roll out, promote, roll back, undeploy.

Every switch follows one order, so that no request fails: deploy the new version and wait until
it is ready, switch the route, wait until every gateway replica has seen the switch, then delete
what no longer serves (Serve drains its in-flight requests). MLflow aliases follow the route:
``champion`` names the version that answers by default, ``challenger`` the one on trial.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import ray
from ray import serve

from flywheel.errors import ServeError
from flywheel.progress import ProgressEvent, emit
from flywheel.rollout import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    ModelRoute,
    Observation,
    ServePlan,
    StepDecision,
    progressive_decision,
)
from flywheel.runtime.serve.gateway import GATEWAY_APP, gateway_app
from flywheel.runtime.serve.model import model_version_app, version_app_name
from flywheel.runtime.serve.state import router_state
from flywheel.specs.serving import ServeSpec
from flywheel.tracking import (
    TAG_SERVE_SPEC,
    RolloutRun,
    delete_alias,
    model_version_tag,
    resolve_model_version,
    set_alias,
)

_ACK_TIMEOUT_S = 30.0
_DRAIN_S = 1.0
_PROGRESS_POLL_S = 1.0


def run_action(plan: ServePlan) -> dict[str, Any]:
    """Carry out ``plan``; returns what the client shows."""
    actions: dict[str, Callable[[ServePlan], dict[str, Any]]] = {
        "deploy": deploy, "rollout": rollout, "promote": promote, "rollback": rollback,
        "undeploy": undeploy,
    }  # fmt: skip
    return actions[plan.action](plan)


def serve_new_version(plan: ServePlan) -> dict[str, Any]:
    """Serve a newly registered version: champion if the model is not served, else challenger."""
    state = _ensure_gateway(plan)
    if plan.model not in _routes(state):
        return deploy(plan.model_copy(update={"action": "deploy"}))
    return rollout(plan.model_copy(update={"action": "rollout"}))


def deploy(plan: ServePlan) -> dict[str, Any]:
    """Make a version the champion and serve it alone (a version switch without downtime)."""
    version = _version(plan)
    state = _ensure_gateway(plan)
    old = _routes(state).get(plan.model)
    app = _deploy_version(plan, version)
    route = ModelRoute(model=plan.model, champion=version, apps={version: app})
    _switch(state, plan.model, route)
    set_alias(plan.target.tracking_uri, plan.model, CHAMPION_ALIAS, version)
    delete_alias(plan.target.tracking_uri, plan.model, CHALLENGER_ALIAS)
    _delete_unused(old, route)
    _record(plan, "deploy", f"version {version} is champion", {"version": version})
    return _summary(route)


def rollout(plan: ServePlan) -> dict[str, Any]:
    """Start a challenger beside the champion: canary, shadow or progressive."""
    version, spec = _version(plan), _spec(plan, _version(plan))
    state = _ensure_gateway(plan)
    old = _routes(state).get(plan.model)
    if old is None:
        raise ServeError(f"{plan.model} is not served; deploy a champion first: flywheel deploy")
    if version == old.champion:
        raise ServeError(f"version {version} of {plan.model} is already the champion")
    mode = plan.mode or spec.rollout.mode
    percent = {
        "canary": plan.canary_percent or spec.rollout.canary_percent,
        "shadow": 0.0,
        "progressive": spec.rollout.steps[0],
    }[mode]
    app = _deploy_version(plan, version)
    route = ModelRoute(
        model=plan.model, champion=old.champion, challenger=version, mode=mode,
        challenger_percent=percent, apps={old.champion: old.apps[old.champion], version: app},
    )  # fmt: skip
    _switch(state, plan.model, route)
    set_alias(plan.target.tracking_uri, plan.model, CHALLENGER_ALIAS, version)
    _delete_unused(old, route)
    if mode == "progressive":
        return _progressive(plan, state, route, spec)
    _record(plan, f"start {mode}", f"version {version} at {percent:g}%", {"version": version})
    return _summary(route)


def promote(plan: ServePlan) -> dict[str, Any]:
    """The challenger becomes champion (route and MLflow alias); the old champion is removed."""
    state = _ensure_gateway(plan)
    old = _challenged(state, plan.model)
    assert old.challenger is not None
    route = _serve_alone(plan, state, old, old.challenger)
    _record(plan, "promote", f"version {old.challenger} replaces {old.champion}", {})
    return _summary(route)


def rollback(plan: ServePlan) -> dict[str, Any]:
    """Remove the challenger; the champion answers everything."""
    state = _ensure_gateway(plan)
    old = _challenged(state, plan.model)
    route = _serve_alone(plan, state, old, old.champion)
    _record(plan, "rollback", f"version {old.challenger} removed", {})
    return _summary(route)


def _serve_alone(plan: ServePlan, state: Any, old: ModelRoute, version: str) -> ModelRoute:
    """Route everything to ``version`` of ``old``, make it champion, remove the other version."""
    route = ModelRoute(model=plan.model, champion=version, apps={version: old.apps[version]})
    _switch(state, plan.model, route)
    set_alias(plan.target.tracking_uri, plan.model, CHAMPION_ALIAS, version)
    delete_alias(plan.target.tracking_uri, plan.model, CHALLENGER_ALIAS)
    _delete_unused(old, route)
    return route


def undeploy(plan: ServePlan) -> dict[str, Any]:
    """Stop serving a model: its route and every version's application go."""
    state = _ensure_gateway(plan)
    old = _routes(state).get(plan.model)
    if old is None:
        raise ServeError(f"{plan.model} is not served")
    _switch(state, plan.model, None)
    _delete_unused(old, None)
    return {"model": plan.model, "versions": []}


def _progressive(plan: ServePlan, state: Any, route: ModelRoute, spec: ServeSpec) -> dict[str, Any]:
    """Walk the steps while the challenger meets the SLOs; promote or roll back at the end."""
    rules = spec.rollout
    assert route.challenger is not None
    params = {"model": plan.model, "champion": route.champion, "challenger": route.challenger,
              "mode": "progressive", "steps": rules.steps, **rules.slo.model_dump()}  # fmt: skip
    run = RolloutRun(
        plan.target.tracking_uri, f"{plan.model}-v{route.challenger}-progressive", params
    )
    step, started_s = 0, time.time()
    while True:
        time.sleep(min(_PROGRESS_POLL_S, rules.step_duration_s))
        current = _routes(state).get(plan.model)
        if current is None or current.challenger != route.challenger:
            run.finish("superseded", "the route changed outside this rollout", "KILLED")
            return _summary(current) if current else {"model": plan.model, "versions": []}
        waited_s = time.time() - started_s
        observed = ray.get(state.observe.remote(plan.model, route.challenger, started_s))
        decision = progressive_decision(
            observed, rules.slo, step, rules.steps, waited_s, rules.step_duration_s,
            rules.max_step_wait_s,
        )  # fmt: skip
        if decision.action == "hold":
            continue
        run.log_step(step, _step_metrics(rules.steps[step], observed))
        emit(
            ProgressEvent(
                "rollout", f"step {rules.steps[step]:g}%: {decision.action}, {decision.reason}"
            )
        )
        if decision.action == "advance":
            step, started_s = step + 1, time.time()
            route = route.model_copy(update={"challenger_percent": rules.steps[step]})
            _switch(state, plan.model, route)
            continue
        return _finish_progressive(plan, decision, run)


def _finish_progressive(plan: ServePlan, decision: StepDecision, run: RolloutRun) -> dict[str, Any]:
    result = promote(plan) if decision.action == "promote" else rollback(plan)
    run.finish(decision.action, decision.reason)
    return {**result, "decision": decision.action, "reason": decision.reason}


def _step_metrics(percent: float, observed: Observation) -> dict[str, float]:
    metrics = {
        "traffic_percent": percent,
        "requests": float(observed.requests),
        "error_rate": observed.error_rate,
    }
    if observed.p95_latency_ms is not None:
        metrics["p95_latency_ms"] = observed.p95_latency_ms
    if observed.online_accuracy is not None:
        metrics["online_accuracy"] = observed.online_accuracy
    return metrics


def _version(plan: ServePlan) -> str:
    version = resolve_model_version(plan.target.tracking_uri, plan.model, plan.version, plan.alias)
    if version is None:
        which = plan.version or plan.alias or "any"
        raise ServeError(f"model {plan.model!r} has no version {which!r} in the registry")
    return version


def _spec(plan: ServePlan, version: str) -> ServeSpec:
    """The plan's serving settings, else those the experiment stored on the version."""
    if plan.spec is not None:
        return plan.spec
    stored = model_version_tag(plan.target.tracking_uri, plan.model, version, TAG_SERVE_SPEC)
    return ServeSpec.model_validate_json(stored) if stored else ServeSpec()


def _ensure_gateway(plan: ServePlan) -> Any:
    """Start Serve's proxy on the plan's address and the gateway, unless they run."""
    serve.start(http_options={"host": plan.target.host, "port": plan.target.port})
    state = router_state(plan.target.storage_root)
    status = serve.status().applications.get(GATEWAY_APP)
    if status is None or str(status.status) not in ("RUNNING", "ApplicationStatus.RUNNING"):
        serve.run(
            gateway_app(plan.target.storage_root, plan.target.max_request_bytes), name=GATEWAY_APP,
            route_prefix="/",
        )  # fmt: skip
    return state


def _deploy_version(plan: ServePlan, version: str) -> str:
    """Deploy one version (if it is not running) and wait until it is ready."""
    app = version_app_name(plan.model, version)
    status = serve.status().applications.get(app)
    if status is None or str(status.status) not in ("RUNNING", "ApplicationStatus.RUNNING"):
        emit(ProgressEvent("serve", f"deploying {plan.model} version {version}"))
        target = model_version_app(
            plan.target.tracking_uri, f"models:/{plan.model}/{version}", _spec(plan, version)
        )
        try:
            serve.run(target, name=app, route_prefix=None)
        except RuntimeError as e:  # Serve's word for a replica that failed to start
            with contextlib.suppress(Exception):
                serve.delete(app)
            raise ServeError(f"version {version} of {plan.model} failed to start: {e}") from e
    return app


def _switch(state: Any, model: str, route: ModelRoute | None) -> None:
    """Set a route and wait until every gateway replica routes by it."""
    generation = ray.get(state.set_route.remote(model, route))
    deadline = time.monotonic() + _ACK_TIMEOUT_S
    while not ray.get(state.acknowledged.remote(generation)):
        if time.monotonic() > deadline:
            raise ServeError(f"the gateway did not pick up the new route in {_ACK_TIMEOUT_S:.0f} s")
        time.sleep(0.05)


def _delete_unused(old: ModelRoute | None, new: ModelRoute | None) -> None:
    """Delete the applications of ``old`` that ``new`` does not use, after a drain pause."""
    if old is None:
        return
    keep = set(new.apps.values()) if new else set()
    unused = [app for app in old.apps.values() if app not in keep]
    if unused:
        time.sleep(_DRAIN_S)  # requests routed just before the switch reach their replicas
    for app in unused:
        serve.delete(app)


def _routes(state: Any) -> dict[str, ModelRoute]:
    routes: dict[str, ModelRoute] = ray.get(state.routes.remote())
    return routes


def _challenged(state: Any, model: str) -> ModelRoute:
    route = _routes(state).get(model)
    if route is None:
        raise ServeError(f"{model} is not served")
    if route.challenger is None:
        raise ServeError(f"{model} has no challenger; start one with flywheel rollout")
    return route


def _record(plan: ServePlan, decision: str, reason: str, extra: dict[str, str]) -> None:
    params = {"model": plan.model, "action": plan.action, **extra}
    run = RolloutRun(plan.target.tracking_uri, f"{plan.model}-{plan.action}", params)
    run.finish(decision, reason)


def _summary(route: ModelRoute) -> dict[str, Any]:
    return {
        "model": route.model,
        "champion": route.champion,
        "challenger": route.challenger,
        "mode": route.mode,
        "challenger_percent": route.challenger_percent,
        "versions": list(route.versions),
    }
