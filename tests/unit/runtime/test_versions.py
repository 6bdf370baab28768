"""A loaded version runs several inputs and outputs; each request gets its own rows back."""

from __future__ import annotations

import asyncio

import numpy as np
import torch

from flywheel.runtime.serve.versions import LoadedVersion
from flywheel.specs.serving import BatchingSpec
from flywheel.tracking import ServingModel, TensorInfo


class TwoInTwoOut(torch.nn.Module):
    def forward(self, pixels: torch.Tensor, offset: torch.Tensor) -> tuple[torch.Tensor, ...]:
        total = pixels.sum(dim=1, keepdim=True) + offset.unsqueeze(1)
        return total, (total > 0).long().squeeze(1)


MODEL = ServingModel(
    TwoInTwoOut(),
    (TensorInfo("pixels", "float32", (-1, 3)), TensorInfo("offset", "float32", (-1,))),
    (TensorInfo("total", "float32", (-1, 1)), TensorInfo("positive", "int64", (-1,))),
)


def requests(count: int) -> list[tuple[np.ndarray, ...]]:
    return [
        (np.full((i + 1, 3), float(i), np.float32), np.full(i + 1, -1.0, np.float32))
        for i in range(count)
    ]


async def answer_all(version: LoadedVersion, batch: list[tuple[np.ndarray, ...]]) -> list:  # type: ignore[type-arg]
    return await asyncio.gather(*(version.predict(r) for r in batch))


def test_every_concurrent_request_gets_its_own_rows_of_every_output_back() -> None:
    """Unbatched here: @serve.batch needs a Serve replica, the integration tests run it there."""
    version = LoadedVersion("1", MODEL, BatchingSpec(enabled=False))
    answers = asyncio.run(answer_all(version, requests(6)))
    for i, (total, positive) in enumerate(answers):
        assert total.shape == (i + 1, 1) and positive.shape == (i + 1,)
        assert np.allclose(total, 3.0 * i - 1.0)
        assert positive.tolist() == [int(3 * i - 1 > 0)] * (i + 1)
    version.close()
