"""The server-wide endpoints: ``GET /v2`` (server metadata), health, unknown models, statistics.

A Serve application at ``/``; each served model's application has the longer prefix
``/v2/models/<model>``, so whatever reaches this one under ``/v2/models/`` names no served model.

No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations at run time.
"""

import importlib.metadata
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from starlette.exceptions import HTTPException

from flywheel.rollout import Observation
from flywheel.runtime.serve.oip import server_metadata
from flywheel.runtime.serve.oip_schema import Live, Ready, ServerMetadata
from flywheel.runtime.serve.stats import request_stats
from flywheel.serving.stats import StepObservation, VersionStats

SERVER_NAME = "flywheel"

api = FastAPI(title="flywheel serving (Open Inference Protocol v2)")


@api.exception_handler(HTTPException)
async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse({"error": f"invalid request: {error.errors()}"}, status_code=400)


@serve.deployment(name="root")
@serve.ingress(api)
class Root:
    """Server metadata, liveness, readiness and the statistics of every served version."""

    def __init__(self, storage_root: str) -> None:
        self._stats = request_stats(storage_root)
        self._version = importlib.metadata.version("flywheel")

    @api.get("/v2", response_model=None, responses={200: {"model": ServerMetadata}})
    async def server(self) -> dict[str, Any]:
        return server_metadata(SERVER_NAME, self._version)

    @api.get("/v2/health/live", response_model=None, responses={200: {"model": Live}})
    async def live(self) -> dict[str, bool]:
        return {"live": True}

    @api.get("/v2/health/ready", response_model=None, responses={200: {"model": Ready}})
    async def ready(self) -> dict[str, bool]:
        return {"ready": True}

    @api.api_route("/v2/models/{name}", methods=["GET", "POST"])
    async def unknown_model(self, name: str) -> JSONResponse:
        return JSONResponse({"error": f"unknown model {name!r}"}, status_code=404)

    @api.api_route("/v2/models/{name}/{rest:path}", methods=["GET", "POST"])
    async def unknown_model_path(self, name: str, rest: str) -> JSONResponse:
        return JSONResponse({"error": f"unknown model {name!r}"}, status_code=404)

    @api.get("/flywheel/stats")
    async def stats(self) -> list[VersionStats]:
        """What the ingress replicas observed of every version, for `flywheel models`."""
        listed: list[VersionStats] = await self._stats.version_stats.remote()
        return listed

    @api.get("/flywheel/observe")
    async def observe(self, model: str, version: str, since_s: float) -> StepObservation:
        """What ``version`` answered since ``since_s``: what a progressive step is judged on."""
        observed: Observation = await self._stats.observe.remote(model, version, since_s)
        return StepObservation(
            requests=observed.requests, errors=observed.errors,
            latencies_ms=list(observed.latencies_ms), feedback=observed.feedback,
            correct=observed.correct,
        )  # fmt: skip
