"""Model versions loaded inside an ingress replica, and how they run a request.

A small model's every served version lives in each replica, so that a request is answered
where it arrives (no second hop). Concurrent requests may be batched (``@serve.batch``). A
forward pass expected to take under :data:`INLINE_FORWARD_S` runs on the replica's event loop:
handing it to a thread costs two thread wake-ups (0.2 ms and more on a busy machine), more than
the pass itself. A longer one runs on the version's thread, so that the event loop keeps
answering. Either way one version runs one forward pass at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from ray import serve

from flywheel.specs.serving import BatchingSpec
from flywheel.tracking import ServingModel, TensorInfo, load_serving_model

Inputs = tuple[np.ndarray, ...]
Outputs = tuple[np.ndarray, ...]
#: A forward pass expected to take less than this (s) runs on the event loop, not on a thread.
INLINE_FORWARD_S = 0.001


class LoadedVersion:
    """One registered model version, ready to answer."""

    def __init__(self, version: str, loaded: ServingModel, batching: BatchingSpec) -> None:
        self.version = version
        self.inputs: tuple[TensorInfo, ...] = loaded.inputs
        self.outputs: tuple[TensorInfo, ...] = loaded.outputs
        self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self._module = loaded.module.to(self._device)
        with contextlib.suppress(NotImplementedError):  # exported (pt2) graphs are always eval
            self._module.eval()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"v{version}")
        self._threaded = 0  # forward passes handed to the thread and not yet done
        self._row_s = float("inf")  # seconds per row of the last pass: the first one is threaded
        # One batch queue per version: @serve.batch on a method would share one across instances.
        self._batched: Any = serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)(
            self._run_batch
        )
        self.set_batching(batching)

    def set_batching(self, batching: BatchingSpec) -> None:
        """Apply new batching settings (a reconfigure), without reloading the model."""
        self._batching = batching.enabled
        self._batched.set_max_batch_size(batching.max_batch_size)
        self._batched.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)

    async def predict(self, inputs: Inputs) -> Outputs:
        """The model's outputs (in its signature's order) for the rows of one request."""
        if not self._batching:
            return (await self._run_batch([inputs]))[0]
        result: Outputs = await self._batched(inputs)
        return result

    def close(self) -> None:
        self._executor.shutdown(wait=False)

    async def _run_batch(self, requests: list[Inputs]) -> list[Outputs]:
        """One forward pass: on the event loop when it is expected to be short and no pass is
        running on the thread (a version runs one at a time), else on the thread."""
        rows = sum(len(r[0]) for r in requests)
        if self._threaded == 0 and rows * self._row_s < INLINE_FORWARD_S:
            return self._forward(requests)
        self._threaded += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._forward, requests)
        finally:
            self._threaded -= 1

    def _forward(self, requests: list[Inputs]) -> list[Outputs]:
        """One model call over the rows of every request; the outputs split back per request."""
        started = time.perf_counter()
        sizes = [len(r[0]) for r in requests]
        tensors = [
            torch.from_numpy(np.concatenate([r[i] for r in requests])).to(self._device)
            for i in range(len(requests[0]))
        ]
        with torch.inference_mode():
            answer = self._module(*tensors)
        outputs = answer if isinstance(answer, tuple | list) else (answer,)
        arrays = [_to_numpy(o) for o in outputs]
        self._row_s = (time.perf_counter() - started) / max(sum(sizes), 1)
        if len(requests) == 1:
            return [tuple(arrays)]
        cuts = np.cumsum(sizes)[:-1]
        per_output = [np.split(a, cuts) for a in arrays]
        return [tuple(parts[k] for parts in per_output) for k in range(len(requests))]


def load_version(
    tracking_uri: str, model: str, version: str, batching: BatchingSpec
) -> LoadedVersion:
    """Load ``version`` of ``model`` from the registry."""
    torch.set_num_threads(1)  # replicas share the node's cores; one thread each
    return LoadedVersion(
        version, load_serving_model(tracking_uri, f"models:/{model}/{version}"), batching
    )


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    if tensor.dtype in (torch.bfloat16,):
        tensor = tensor.float()
    array: np.ndarray = tensor.detach().cpu().numpy()
    return array
