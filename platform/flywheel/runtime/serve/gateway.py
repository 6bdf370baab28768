"""The gateway: one Serve application that speaks the Open Inference Protocol v2 over HTTP.

It routes each request of a model to its champion or challenger (:func:`choose_version`),
shadows copies to a shadow challenger, answers bad requests with 4xx in the protocol's error
format, records every answer in the router state, and stores feedback under the storage root.
Routes come from the router state actor, polled every ``POLL_S``; a serving job switches a route
only once the new version is ready, and removes the old one only after every gateway replica
has seen the switch, so that no request is lost.

No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations at run time.
"""

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections import OrderedDict
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from starlette.exceptions import HTTPException

from flywheel import storage
from flywheel.rollout import ModelRoute, RouteChoice, choose_version
from flywheel.runtime.serve.model import DEPLOYMENT_NAME
from flywheel.runtime.serve.oip import (
    OipError,
    infer_response,
    model_metadata,
    parse_feedback,
    parse_infer_request,
)
from flywheel.runtime.serve.state import RequestRecord, feedback_url, router_state
from flywheel.tracking import TensorInfo

GATEWAY_APP = "flywheel-gateway"
POLL_S = 0.2
VERSION_HEADER = "x-model-version"

_LOCAL_REQUESTS = 10_000
_log = logging.getLogger("ray.serve")

api = FastAPI(title="flywheel gateway (Open Inference Protocol v2)")


@api.exception_handler(HTTPException)
async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    """FastAPI's own errors (unknown path, wrong method) in the protocol's format."""
    return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse({"error": f"invalid request: {error.errors()}"}, status_code=400)


@api.exception_handler(OipError)
async def _oip_error(request: Request, error: OipError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def gateway_app(storage_root: str, max_request_bytes: int) -> Any:
    """The bound gateway application."""
    return Gateway.bind(storage_root, max_request_bytes)  # type: ignore[attr-defined]


def _prediction(result: np.ndarray) -> int | None:
    """The predicted class of a one-row classification answer (argmax); None otherwise."""
    if result.ndim != 2 or result.shape[0] != 1 or result.shape[1] < 2:
        return None
    return int(np.argmax(result[0]))


def _running_replicas() -> dict[str, int]:
    """Running replicas of each Serve application (its model deployment)."""
    counts = {}
    for app, status in serve.status().applications.items():
        deployment = status.deployments.get(DEPLOYMENT_NAME)
        if deployment is not None:
            counts[app] = sum(
                n for state, n in deployment.replica_states.items() if state == "RUNNING"
            )
    return counts


@serve.deployment(name="gateway", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
@serve.ingress(api)
class Gateway:
    """OIP v2 routes over the models in the router state."""

    async def __init__(self, storage_root: str, max_request_bytes: int) -> None:  # type: ignore[misc]
        self._root = storage_root
        self._max_bytes = max_request_bytes
        self._state = router_state(storage_root)
        self._replica = uuid.uuid4().hex
        self._generation = 0
        self._routes: dict[str, ModelRoute] = {}
        self._handles: dict[str, Any] = {}
        self._metadata: dict[str, tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]] = {}
        self._pending: list[RequestRecord] = []
        self._recent: OrderedDict[str, RequestRecord] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        await self._sync()  # Ray actors may construct asynchronously; Serve replicas too
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    @api.get("/v2/health/live")
    async def live(self) -> dict[str, bool]:
        return {"live": True}

    @api.get("/v2/health/ready")
    async def ready(self) -> dict[str, bool]:
        return {"ready": True}

    @api.get("/v2/models/{name}")
    async def metadata(self, name: str) -> dict[str, Any]:
        route = await self._route(name)
        inputs, outputs = await self._signature(route, route.champion)
        return model_metadata(name, list(route.versions), inputs, outputs)

    @api.get("/v2/models/{name}/versions/{version}")
    async def version_metadata(self, name: str, version: str) -> dict[str, Any]:
        route = await self._route(name, version)
        inputs, outputs = await self._signature(route, version)
        return model_metadata(name, [version], inputs, outputs)

    @api.get("/v2/models/{name}/ready")
    async def model_ready(self, name: str) -> dict[str, Any]:
        route = await self._route(name)
        await self._signature(route, route.champion)
        return {"name": name, "ready": True}

    @api.get("/v2/models/{name}/versions/{version}/ready")
    async def version_ready(self, name: str, version: str) -> dict[str, Any]:
        route = await self._route(name, version)
        await self._signature(route, version)
        return {"name": name, "version": version, "ready": True}

    @api.post("/v2/models/{name}/infer")
    async def infer(self, name: str, request: Request) -> JSONResponse:
        body = await self._body(request)
        route = await self._route(name)
        return await self._infer(route, choose_version(route, random.random()), body)

    @api.post("/v2/models/{name}/versions/{version}/infer")
    async def version_infer(self, name: str, version: str, request: Request) -> JSONResponse:
        body = await self._body(request)
        route = await self._route(name, version)
        return await self._infer(route, RouteChoice(version), body)

    @api.post("/v2/models/{name}/feedback")
    async def feedback(self, name: str, request: Request) -> dict[str, Any]:
        """Store the true label of an answered request, tied to the version that answered."""
        request_id, label = parse_feedback(await self._body(request))
        await self._route(name)
        answered = self._recent.get(request_id) or await self._state.lookup.remote(request_id)
        if answered is None or answered.model != name:
            raise OipError(404, f"no answered request {request_id!r} of model {name!r}")
        # Only a one-row classification answer has a prediction to compare the label with.
        correct = None if answered.prediction is None else str(answered.prediction) == str(label)
        record = {
            "id": request_id, "model": name, "version": answered.version, "label": label,
            "prediction": answered.prediction, "correct": correct, "time_s": time.time(),
        }  # fmt: skip
        url = storage.join(feedback_url(self._root, name), f"{request_id}.json")
        await asyncio.to_thread(storage.write_text, url, json.dumps(record))
        if correct is not None:
            await self._state.add_feedback.remote(name, answered.version, correct)
        return {"id": request_id, "model_version": answered.version, "correct": correct}

    @api.get("/flywheel/models")
    async def models(self) -> list[dict[str, Any]]:
        """Every served model: versions, roles, traffic split, replicas and observed figures."""
        replicas = await asyncio.to_thread(_running_replicas)
        listed = []
        for name, route in sorted(self._routes.items()):
            for version in route.versions:
                stats = await self._state.version_stats.remote(name, version)
                listed.append(
                    {
                        "model": name,
                        "version": version,
                        "role": "champion" if version == route.champion else "challenger",
                        "mode": None if version == route.champion else route.mode,
                        "traffic_percent": route.traffic_percent(version),
                        "replicas": replicas.get(route.apps[version], 0),
                        **stats,
                    }
                )
        return listed

    async def _infer(self, route: ModelRoute, choice: RouteChoice, body: bytes) -> JSONResponse:
        inputs, outputs = await self._signature(route, choice.version)
        parsed = parse_infer_request(body, inputs)
        request_id = parsed.request_id or uuid.uuid4().hex
        version = choice.version
        try:
            result, latency_ms = await self._call(route, version, parsed.features)
        except Exception as first:  # the version may be gone mid-switch: the champion answers
            self._record(request_id, route.model, version, False, 0.0, None)
            route = await self._fresh_route(route.model)
            if choice.shadow is None and route.champion != version:
                version = route.champion
                result, latency_ms = await self._call(route, version, parsed.features)
            else:
                raise OipError(
                    503, f"version {version} of {route.model} failed: {first}"
                ) from first
        prediction = _prediction(result)
        self._record(request_id, route.model, version, True, latency_ms, prediction)
        if choice.shadow is not None:
            self._spawn(self._shadow(route, choice.shadow, request_id, parsed.features, prediction))
        headers = {VERSION_HEADER: version}
        return JSONResponse(
            infer_response(route.model, version, request_id, outputs, result), headers=headers
        )

    async def _shadow(
        self, route: ModelRoute, version: str, request_id: str, features: np.ndarray,
        answered: int | None,
    ) -> None:  # fmt: skip
        """Ask the shadow too; record its answer and whether it agrees, never return it."""
        try:
            result, latency_ms = await self._call(route, version, features)
        except Exception as e:
            _log.warning("shadow %s v%s failed: %s", route.model, version, e)
            self._record(request_id, route.model, version, False, 0.0, None, shadow=True)
            return
        prediction = _prediction(result)
        agrees = prediction == answered
        self._record(request_id, route.model, version, True, latency_ms, prediction, True, agrees)
        _log.info(
            "shadow %s v%s request %s: %s (agrees %s), %.1f ms",
            route.model, version, request_id, prediction, agrees, latency_ms,
        )  # fmt: skip

    async def _call(
        self, route: ModelRoute, version: str, features: np.ndarray
    ) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        result = await self._handle(route.apps[version]).predict.remote(features)
        return result, (time.perf_counter() - started) * 1000.0

    async def _body(self, request: Request) -> bytes:
        """The request body; 413 past the limit, read no further than that."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
            raise OipError(413, f"the body exceeds {self._max_bytes} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._max_bytes:
                raise OipError(413, f"the body exceeds {self._max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _route(self, name: str, version: str | None = None) -> ModelRoute:
        route = self._routes.get(name)
        if route is None:
            raise OipError(404, f"unknown model {name!r}")
        if version is not None and version not in route.apps:
            served = ", ".join(route.versions)
            raise OipError(404, f"model {name!r} has no served version {version!r} ({served})")
        return route

    async def _fresh_route(self, name: str) -> ModelRoute:
        await self._sync()
        return await self._route(name)

    async def _signature(
        self, route: ModelRoute, version: str
    ) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
        app = route.apps[version]
        if app not in self._metadata:
            self._metadata[app] = await self._handle(app).metadata.remote()
        return self._metadata[app]

    def _handle(self, app: str) -> Any:
        if app not in self._handles:
            self._handles[app] = serve.get_deployment_handle(DEPLOYMENT_NAME, app_name=app)
        return self._handles[app]

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            with contextlib.suppress(Exception):  # a missed poll is retried by the next one
                await self._sync()

    async def _sync(self) -> None:
        records, self._pending = self._pending, []
        generation, routes = await self._state.sync.remote(self._replica, self._generation, records)
        if routes is not None:
            self._routes = routes
            live = {app for r in routes.values() for app in r.apps.values()}
            self._handles = {a: h for a, h in self._handles.items() if a in live}
            self._metadata = {a: m for a, m in self._metadata.items() if a in live}
        self._generation = generation

    def _record(
        self, request_id: str, model: str, version: str, ok: bool, latency_ms: float,
        prediction: int | None, shadow: bool = False, agrees: bool | None = None,
    ) -> None:  # fmt: skip
        record = RequestRecord(
            request_id, model, version, shadow, ok, latency_ms, time.time(), prediction, agrees
        )
        self._pending.append(record)
        if not shadow and ok:
            self._recent[request_id] = record
            while len(self._recent) > _LOCAL_REQUESTS:
                self._recent.popitem(last=False)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
