"""One Serve deployment per model version: loads it from the MLflow registry, batches requests.

Each version is a Serve application of its own (no HTTP route): the gateway calls it through a
deployment handle. Batch size and wait come from the ``serve.batching`` spec.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import numpy as np
import torch
from ray import serve

from flywheel.specs.serving import ServeSpec
from flywheel.tracking import TensorInfo, load_serving_model

DEPLOYMENT_NAME = "model"


def version_app_name(model: str, version: str) -> str:
    """The Serve application of one model version."""
    return f"flywheel-model-{model}-v{version}"


def model_version_app(tracking_uri: str, model_uri: str, spec: ServeSpec) -> Any:
    """The bound Serve application of one version, with the spec's replicas and resources."""
    resources: dict[str, Any] = {
        "num_cpus": spec.resources.num_cpus,
        "num_gpus": spec.resources.num_gpus,
    }
    if spec.resources.memory_mib is not None:
        resources["memory"] = spec.resources.memory_mib * 1024 * 1024
    scaling = spec.autoscaling
    return ModelVersion.options(  # type: ignore[attr-defined]
        ray_actor_options=resources,
        autoscaling_config={
            "min_replicas": scaling.min_replicas,
            "initial_replicas": scaling.min_replicas,
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
        },
        max_ongoing_requests=max(spec.batching.max_batch_size * 2, 16),
    ).bind(tracking_uri, model_uri, spec.batching.model_dump())


@serve.deployment(name=DEPLOYMENT_NAME)
class ModelVersion:
    """A registered model version answering batches of feature arrays."""

    def __init__(self, tracking_uri: str, model_uri: str, batching: dict[str, Any]) -> None:
        torch.set_num_threads(1)  # replicas share the node's cores; one thread each
        loaded = load_serving_model(tracking_uri, model_uri)
        self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self._module = loaded.module.to(self._device)
        with contextlib.suppress(NotImplementedError):  # exported (pt2) graphs are always eval
            self._module.eval()
        self._inputs, self._outputs = loaded.inputs, loaded.outputs
        self._batching = bool(batching["enabled"])
        batched: Any = self._batched  # serve.batch adds the setters; its type hides them
        batched.set_max_batch_size(int(batching["max_batch_size"]))
        batched.set_batch_wait_timeout_s(float(batching["batch_wait_timeout_s"]))

    def metadata(self) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
        """The input and output tensors of the model's signature."""
        return self._inputs, self._outputs

    async def predict(self, features: np.ndarray) -> np.ndarray:
        """The model's output for ``features`` (rows of one request)."""
        if not self._batching:
            return (await asyncio.to_thread(self._forward, [features]))[0]
        result: np.ndarray = await self._batched(features)
        return result

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _batched(self, requests: list[np.ndarray]) -> list[np.ndarray]:
        return await asyncio.to_thread(self._forward, requests)

    def _forward(self, requests: list[np.ndarray]) -> list[np.ndarray]:
        """One model call over the rows of every request; split back per request."""
        sizes = [len(r) for r in requests]
        features = torch.from_numpy(np.concatenate(requests)).to(self._device)
        with torch.inference_mode():
            output = self._module(features).float().cpu().numpy()
        return list(np.split(output, np.cumsum(sizes)[:-1]))
