"""The plain Serve peer: a minimal ``@serve.deployment`` with a FastAPI ingress that runs the same
model the same way as the FastAPI peer, one replica, no flywheel code in the request path.

The benchmark deploys it through Serve's REST API (``import_path``
``benchmarks.serving.peer_serve:app``) on a private platform of its own, once behind Serve's
Python proxy and once behind HAProxy (direct ingress).

No ``from __future__ import annotations``: FastAPI reads the route's annotations at run time.
"""

from typing import Any

from fastapi import FastAPI, Request
from ray import serve

from benchmarks.serving import model

api = FastAPI()


@serve.deployment
@serve.ingress(api)
class PlainModel:
    def __init__(self, folder: str) -> None:
        self._model = model.load(folder)

    @api.post("/v2/models/{name}/infer")
    async def infer(self, name: str, request: Request) -> dict[str, Any]:
        return model.answer(self._model, name, await request.json())


def app(args: dict[str, Any]) -> Any:
    """The application builder the Serve config names; ``args``: ``{"folder": MODEL_FOLDER}``."""
    return PlainModel.bind(str(args["folder"]))  # type: ignore[attr-defined]
