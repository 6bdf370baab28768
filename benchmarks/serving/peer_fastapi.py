"""The plain peer: the same model in one FastAPI + uvicorn process, no batching.

It answers the same OIP v2 inference requests as flywheel's gateway (one route, no checks beyond
parsing), so that the comparison measures what flywheel's routing and Serve's hops cost.

    python -m benchmarks.serving.peer_fastapi MODEL_FOLDER PORT
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI, Request

from benchmarks.serving import model


def build_app(folder: str) -> FastAPI:
    loaded = model.load(folder)
    app = FastAPI()

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> dict[str, object]:
        return model.answer(loaded, name, await request.json())

    return app


if __name__ == "__main__":
    uvicorn.run(
        build_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning"
    )
