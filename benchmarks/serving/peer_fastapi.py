"""The plain peer: the same registered model in one FastAPI + uvicorn process, no batching.

It answers the same OIP v2 inference requests as the gateway (one route, no checks beyond
parsing), so that the comparison measures what flywheel's gateway, routing and Serve hops cost.

    python benchmarks/serving/peer_fastapi.py MODEL_URI PORT
"""

from __future__ import annotations

import sys

import mlflow.pytorch
import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, Request


def build_app(model_uri: str) -> FastAPI:
    torch.set_num_threads(1)
    model = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    app = FastAPI()

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> dict[str, object]:
        document = await request.json()
        tensor = document["inputs"][0]
        features = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        with torch.inference_mode():
            output = model(torch.from_numpy(features)).numpy()
        return {
            "model_name": name,
            "outputs": [{"name": "output-0", "datatype": "FP32", "shape": list(output.shape),
                         "data": output.reshape(-1).tolist()}],
        }  # fmt: skip

    return app


if __name__ == "__main__":
    uvicorn.run(
        build_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning"
    )
