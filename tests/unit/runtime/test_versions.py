"""A loaded version runs several inputs and outputs; each request gets its own rows back; short
forward passes run on the event loop, long ones on the version's thread, one at a time."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import torch

from flywheel.runtime.serve.versions import INLINE_FORWARD_S, LoadedVersion
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


class Recorder(torch.nn.Module):
    """Doubles its input; records the thread of each pass and the most passes at once."""

    def __init__(self, pause_s: float = 0.0) -> None:
        super().__init__()
        self.pause_s, self.threads, self.running, self.most = pause_s, [], 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.running += 1
        self.most = max(self.most, self.running)
        self.threads.append(threading.current_thread().name)
        time.sleep(self.pause_s)
        self.running -= 1
        return x * 2


def recorder_version(module: Recorder) -> LoadedVersion:
    one = (TensorInfo("x", "float32", (-1, 1)),)
    return LoadedVersion("1", ServingModel(module, one, one), BatchingSpec(enabled=False))


def test_a_short_forward_pass_runs_on_the_event_loop_once_one_was_timed() -> None:
    """The first pass (its duration unknown) runs on the version's thread; once a pass took
    under INLINE_FORWARD_S (torch's first call can take longer), the next runs on the event
    loop: a thread hop would cost more than it does."""
    module = Recorder()
    version = recorder_version(module)

    async def five() -> list[np.ndarray]:
        return [(await version.predict((np.ones((1, 1), np.float32),)))[0] for _ in range(5)]

    answers = asyncio.run(five())
    assert [a.tolist() for a in answers] == [[[2.0]]] * 5
    assert module.threads[0].startswith("v1") and module.threads[-1] == "MainThread"
    version.close()


def test_a_long_forward_pass_stays_on_the_thread_and_passes_never_overlap() -> None:
    module = Recorder(pause_s=2 * INLINE_FORWARD_S)
    version = recorder_version(module)
    batch = [(np.ones((1, 1), np.float32),)] * 4
    asyncio.run(answer_all(version, batch))
    asyncio.run(answer_all(version, batch))
    assert all(name.startswith("v1") for name in module.threads) and module.most == 1
    version.close()
