"""The ingress of one served model: a Serve deployment that speaks OIP v2 and runs the model.

Each replica parses the request (:mod:`.oip`), picks the version (champion or challenger by
weight, or by the request id where the request asks to be sticky), runs it in-process
(:mod:`.versions`) and answers. A shadow gets its copy after the answer is sent (a background
task of the response), and its agreement with the answer is recorded. The route arrives as the
deployment's ``user_config``: ``reconfigure`` loads new versions first and switches after, so a
traffic change needs no restart and loses no request.

No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations at run time.
"""

import asyncio
import contextlib
import functools
import json
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from ray import serve
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from flywheel import storage
from flywheel.request_log import LoggedFeedback
from flywheel.rollout import ModelRoute, RouteChoice, choose_version, sticky_draw
from flywheel.runtime.serve.oip import (
    HEADER_LENGTH,
    InferRequest,
    ModelOutputError,
    OipError,
    encode_infer_response,
    model_metadata,
    parse_feedback,
    parse_infer_request,
)
from flywheel.runtime.serve.oip_schema import (
    FeedbackRequest,
    FeedbackResponse,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    VersionReady,
    error_responses,
    json_body,
    request_schemas,
)
from flywheel.runtime.serve.stats import RequestRecord, feedback_url, request_stats
from flywheel.runtime.serve.telemetry import ReplicaTelemetry

if TYPE_CHECKING:  # torch and mlflow load with the first version, not when Serve builds the app
    from flywheel.runtime.serve.versions import LoadedVersion, Outputs

VERSION_HEADER = "x-model-version"
#: Request parameter that asks for the version to be chosen by the request's id.
STICKY_PARAMETER = "sticky"

_REPORT_INTERVAL_S = 0.5
_LOCAL_REQUESTS = 10_000
_log = logging.getLogger("ray.serve")

api = FastAPI(title="flywheel model ingress (Open Inference Protocol v2)", redirect_slashes=False)


class _BarePrefix:
    """``GET /v2/models/<name>`` is the application's own prefix without a slash: route it to
    ``/`` (Starlette would answer with a redirect, which OIP clients do not follow)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = scope.get("root_path", "")
        if scope["type"] == "http" and root and scope["path"] == root:
            scope = {**scope, "path": root + "/", "raw_path": (root + "/").encode()}
        await self._app(scope, receive, send)


api.add_middleware(_BarePrefix)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus the request bodies' schemas (the routes read their bodies
    themselves, so FastAPI knows of them only through ``openapi_extra``), less the 422 it adds
    to routes with parameters: a bad request is a 400 here."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, description=_DESCRIPTION, routes=app.routes,
            servers=app.servers,
        )  # fmt: skip
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(request_schemas())
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for operations in document["paths"].values():
            for operation in operations.values():
                operation["responses"].pop("422", None)
        app.openapi_schema = document
    return app.openapi_schema


_DESCRIPTION = (
    "The Open Inference Protocol v2 REST API of one served model, as KServe defines it "
    "(open_inference_rest.yaml), with the binary tensor data extension."
)
_BINARY_BODY = {
    "schema": {
        "type": "string",
        "format": "binary",
        "description": "The binary tensor data extension: the JSON request (each binary input "
        "with parameters.binary_data_size and no data), then the raw little-endian tensors in "
        "order; the Inference-Header-Content-Length header gives the JSON part's length.",
    }
}
_HEADER_LENGTH = {
    "name": HEADER_LENGTH,
    "in": "header",
    "required": False,
    "description": "The binary tensor data extension: the length in bytes of the JSON part.",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_INFER_BODY = json_body(InferenceRequest, "An inference request.")
_INFER_BODY["content"]["application/octet-stream"] = _BINARY_BODY
_INFER = {"requestBody": _INFER_BODY, "parameters": [_HEADER_LENGTH]}
_INFERRED: dict[int | str, dict[str, Any]] = {
    200: {
        "model": InferenceResponse,
        "description": "The outputs; with the binary tensor data extension (any output asked "
        "for in binary) the JSON part then the raw tensors, its length in the "
        "Inference-Header-Content-Length header.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "headers": {VERSION_HEADER: {"description": "The version that answered.",
                                     "schema": {"type": "string"}}},
    },
}  # fmt: skip
# FastAPI's documented way to extend the document; bound to the app, which Serve ships pickled.
api.openapi = functools.partial(_openapi, api)  # type: ignore[method-assign]


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


@api.exception_handler(Exception)
async def _bug(request: Request, error: Exception) -> JSONResponse:
    """A fault of the server (never of the request): still the protocol's error format."""
    _log.exception("request to %s failed", request.url.path)
    return JSONResponse({"error": f"internal error: {type(error).__name__}"}, status_code=500)


# Above the class: Serve ships the class by value, with the globals that exist when it does.
def _row_predictions(results: "Outputs") -> list[int | None]:
    """The predicted class of each row of a classification answer (argmax); empty otherwise."""
    first = results[0] if results else None
    if first is None or first.ndim != 2 or first.shape[1] < 2:
        return []
    return [int(i) for i in first.argmax(axis=1)]


def _prediction(results: "Outputs") -> int | None:
    """The predicted class of a one-row classification answer (argmax); None otherwise."""
    first = results[0] if results else None
    if first is None or first.ndim != 2 or first.shape[0] != 1 or first.shape[1] < 2:
        return None
    return int(first[0].argmax())


@serve.deployment(name="ingress")
@serve.ingress(api)
class ModelIngress:
    """OIP v2 endpoints of one model, its versions loaded in this replica."""

    def __init__(
        self, model: str, tracking_uri: str, storage_root: str, max_request_bytes: int
    ) -> None:
        self._model, self._tracking_uri, self._root = model, tracking_uri, storage_root
        self._max_bytes = max_request_bytes
        self._route: ModelRoute | None = None
        self._versions: dict[str, LoadedVersion] = {}
        self._stats = request_stats(storage_root)
        self._telemetry = ReplicaTelemetry(model, storage_root)
        self._pending: list[RequestRecord] = []
        self._recent: OrderedDict[str, RequestRecord] = OrderedDict()
        self._reporter: asyncio.Task[None] | None = None

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Follow a new route: load the versions it adds, switch, then drop the ones it left."""
        from flywheel.runtime.serve.versions import load_version  # torch: see the imports

        route = ModelRoute.model_validate(user_config)
        loaded = dict(self._versions)
        for version in route.versions:
            if version not in loaded:
                loaded[version] = await asyncio.to_thread(
                    load_version, self._tracking_uri, self._model, version, route.batching
                )
            loaded[version].set_batching(route.batching)
        self._telemetry.follow(route)
        self._route, old = route, self._versions
        self._versions = {v: loaded[v] for v in route.versions}
        for version, dropped in old.items():
            if version not in self._versions:
                dropped.close()
        if self._reporter is None:
            self._reporter = asyncio.get_running_loop().create_task(self._report_forever())

    @api.get(
        "/", response_model=None, responses={200: {"model": ModelMetadata}, **error_responses(503)}
    )
    async def metadata(self) -> dict[str, Any]:
        route = self._current()
        champion = self._version(route.champion)
        return model_metadata(self._model, route.versions, champion.inputs, champion.outputs)

    @api.get(
        "/ready",
        response_model=None,
        responses={200: {"model": ModelReady}, **error_responses(503)},
    )
    async def ready(self) -> dict[str, Any]:
        self._current()
        return {"name": self._model, "ready": True}

    @api.get(
        "/versions/{version}",
        response_model=None,
        responses={200: {"model": ModelMetadata}, **error_responses(404)},
    )
    async def version_metadata(self, version: str) -> dict[str, Any]:
        loaded = self._version(version)
        return model_metadata(self._model, [version], loaded.inputs, loaded.outputs)

    @api.get(
        "/versions/{version}/ready",
        response_model=None,
        responses={200: {"model": VersionReady}, **error_responses(404)},
    )
    async def version_ready(self, version: str) -> dict[str, Any]:
        self._version(version)
        return {"name": self._model, "version": version, "ready": True}

    @api.post(
        "/infer",
        openapi_extra=_INFER,
        responses={**_INFERRED, **error_responses(400, 413, 500, 503)},
    )
    async def infer(self, request: Request) -> Response:
        body = await self._body(request)
        route = self._current()
        parsed = self._parse(body, request, route.champion)
        draw = random.random()
        if parsed.parameters.get(STICKY_PARAMETER) is True and parsed.request_id:
            draw = sticky_draw(parsed.request_id)
        choice = choose_version(route, draw)
        if choice.version != route.champion:
            parsed = self._parse(body, request, choice.version)
        return await self._answer(parsed, choice)

    @api.post(
        "/versions/{version}/infer",
        openapi_extra=_INFER,
        responses={**_INFERRED, **error_responses(400, 404, 413, 500)},
    )
    async def version_infer(self, version: str, request: Request) -> Response:
        body = await self._body(request)
        parsed = self._parse(body, request, version)
        return await self._answer(parsed, RouteChoice(version))

    @api.post(
        "/feedback",
        response_model=None,
        responses={200: {"model": FeedbackResponse}, **error_responses(400, 404, 413)},
        openapi_extra={
            "requestBody": json_body(FeedbackRequest, "The true label of an answered request.")
        },
    )
    async def feedback(self, request: Request) -> dict[str, Any]:
        """Store the true label of an answered request, tied to the version that answered."""
        request_id, label = parse_feedback(await self._body(request))
        answered = self._recent.get(request_id) or await self._stats.lookup.remote(request_id)
        if answered is None or answered.model != self._model:
            raise OipError(404, f"no answered request {request_id!r} of model {self._model!r}")
        # Only a one-row classification answer has a prediction to compare the label with.
        correct = None if answered.prediction is None else str(answered.prediction) == str(label)
        now_s = time.time()
        record = {
            "id": request_id, "model": self._model, "version": answered.version, "label": label,
            "prediction": answered.prediction, "correct": correct, "time_s": now_s,
        }  # fmt: skip
        url = storage.join(feedback_url(self._root, self._model), f"{request_id}.json")
        await asyncio.to_thread(storage.write_text, url, json.dumps(record))
        self._telemetry.feedback(
            LoggedFeedback(request_id, self._model, answered.version, now_s, label,
                           answered.prediction)
        )  # fmt: skip
        if correct is not None:
            await self._stats.add_feedback.remote(self._model, answered.version, correct)
        return {"id": request_id, "model_version": answered.version, "correct": correct}

    async def _answer(self, parsed: InferRequest, choice: RouteChoice) -> Response:
        request_id = parsed.request_id or uuid.uuid4().hex
        loaded = self._version(choice.version)
        started = time.perf_counter()
        try:
            results = await loaded.predict(parsed.inputs)
            encoded = encode_infer_response(
                self._model, choice.version, request_id, parsed, loaded.outputs, results
            )
        except OipError:
            raise
        except ModelOutputError as e:
            self._record(request_id, choice.version, False, 0.0, None, inputs=parsed.inputs)
            return JSONResponse({"error": str(e)}, status_code=500)
        except Exception:  # counted as the version's error, answered by the 500 handler
            self._record(request_id, choice.version, False, 0.0, None, inputs=parsed.inputs)
            raise
        latency_ms = (time.perf_counter() - started) * 1000.0
        prediction = _prediction(results)
        self._record(request_id, choice.version, True, latency_ms, prediction,
                     inputs=parsed.inputs, rows=_row_predictions(results))  # fmt: skip
        headers = {VERSION_HEADER: choice.version}
        if encoded.header_length is not None:
            headers[HEADER_LENGTH] = str(encoded.header_length)
        shadow = None
        if choice.shadow is not None:
            shadow = BackgroundTask(self._shadow, choice.shadow, request_id, parsed, prediction)
        return Response(
            encoded.body, media_type=encoded.content_type, headers=headers, background=shadow
        )

    async def _shadow(
        self, version: str, request_id: str, parsed: InferRequest, answered: int | None
    ) -> None:
        """Ask the shadow too, after the answer went out; record whether it agrees."""
        started = time.perf_counter()
        try:
            results = await self._version(version).predict(parsed.inputs)
        except Exception as e:  # a failing shadow must never touch the answered request
            _log.warning("shadow %s v%s failed: %s", self._model, version, e)
            self._record(request_id, version, False, 0.0, None, shadow=True, inputs=parsed.inputs)
            return
        latency_ms = (time.perf_counter() - started) * 1000.0
        prediction = _prediction(results)
        agrees = prediction == answered
        self._record(request_id, version, True, latency_ms, prediction, True, agrees,
                     parsed.inputs, _row_predictions(results))  # fmt: skip

    def _parse(self, body: bytes, request: Request, version: str) -> InferRequest:
        inputs = self._version(version).inputs
        return parse_infer_request(body, request.headers.get(HEADER_LENGTH), inputs)

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

    def _current(self) -> ModelRoute:
        if self._route is None:  # Serve calls reconfigure before the first request
            raise OipError(503, f"model {self._model!r} is loading")
        return self._route

    def _version(self, version: str) -> "LoadedVersion":
        loaded = self._versions.get(version)
        if loaded is None:
            served = ", ".join(self._versions)
            raise OipError(
                404, f"model {self._model!r} has no served version {version!r} ({served})"
            )
        return loaded

    def _record(
        self, request_id: str, version: str, ok: bool, latency_ms: float,
        prediction: int | None, shadow: bool = False, agrees: bool | None = None,
        inputs: tuple[np.ndarray, ...] = (), rows: Sequence[int | None] = (),
    ) -> None:  # fmt: skip
        record = RequestRecord(
            request_id, self._model, version, shadow, ok, latency_ms, time.time(), prediction,
            agrees,
        )  # fmt: skip
        self._pending.append(record)
        self._telemetry.observe(record, inputs, rows)
        if not shadow and ok:
            self._recent[request_id] = record
            while len(self._recent) > _LOCAL_REQUESTS:
                self._recent.popitem(last=False)

    async def _report_forever(self) -> None:
        """Send the records gathered since the last report to the statistics actor; export
        what the telemetry gathered."""
        while True:
            await asyncio.sleep(_REPORT_INTERVAL_S)
            records, self._pending = self._pending, []
            if records:
                with contextlib.suppress(Exception):  # statistics must never fail a request
                    await self._stats.report.remote(records)
            try:
                await self._telemetry.report()
            except Exception as e:  # nor must telemetry
                _log.warning("telemetry of %s: %s", self._model, e)

    def __del__(self) -> None:
        """Serve stops a replica: write what its request log still holds."""
        telemetry = getattr(self, "_telemetry", None)  # None when __init__ failed
        if telemetry is not None:
            telemetry.close()
