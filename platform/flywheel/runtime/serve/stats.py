"""Request statistics: one detached Ray actor that holds what the ingress replicas observed.

Ingress replicas report each answered request in batches (after answering). It holds no routing
state: routes come from the serving document only. Feedback counts are rebuilt from the stored
feedback records when the actor starts again. The request-log sampler of monitoring is a separate
concern.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict, defaultdict, deque
from dataclasses import asdict, dataclass
from typing import Any

import ray

from flywheel import storage
from flywheel.rollout import Observation
from flywheel.serving.stats import VersionStats

ACTOR_NAME = "flywheel-serve-stats"
NAMESPACE = "flywheel"

_MAX_RECORDS_PER_VERSION = 20_000
_MAX_REMEMBERED_REQUESTS = 200_000
_RATE_WINDOW_S = 60.0


@dataclass(frozen=True)
class RequestRecord:
    """One request a version answered (or failed), as the gateway saw it."""

    request_id: str
    model: str
    version: str
    shadow: bool
    ok: bool
    latency_ms: float
    time_s: float
    prediction: int | None = None
    agrees: bool | None = None  # shadow only: same prediction as the answer returned


def feedback_url(storage_root: str, model: str) -> str:
    return storage.join(storage_root, "serving", "feedback", model)


def request_stats(storage_root: str) -> Any:
    """The statistics actor, created (detached) when it does not exist yet."""
    return RequestStats.options(  # type: ignore[attr-defined]
        name=ACTOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        num_cpus=0, max_concurrency=64,
    ).remote(storage_root)  # fmt: skip


@ray.remote
class RequestStats:
    """Per-version request records, recent requests (for feedback), feedback counts."""

    def __init__(self, storage_root: str) -> None:
        self._root = storage_root
        self._records: dict[tuple[str, str], deque[RequestRecord]] = defaultdict(
            lambda: deque(maxlen=_MAX_RECORDS_PER_VERSION)
        )
        self._requests: OrderedDict[str, RequestRecord] = OrderedDict()
        self._feedback: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        self._loaded: set[str] = set()

    def report(self, records: list[RequestRecord]) -> None:
        """An ingress replica's batch of answered (or failed) requests."""
        for record in records:
            self._load_feedback(record.model)
            self._records[(record.model, record.version)].append(record)
            if not record.shadow:
                self._requests[record.request_id] = record
        while len(self._requests) > _MAX_REMEMBERED_REQUESTS:
            self._requests.popitem(last=False)

    def lookup(self, request_id: str) -> RequestRecord | None:
        return self._requests.get(request_id)

    def add_feedback(self, model: str, version: str, correct: bool) -> None:
        self._load_feedback(model)
        counts = self._feedback[(model, version)]
        counts[0] += 1
        counts[1] += int(correct)

    def observe(self, model: str, version: str, since_s: float) -> Observation:
        """What the answers of ``version`` since ``since_s`` (wall clock) looked like."""
        records = [
            r for r in self._records[(model, version)] if r.time_s >= since_s and not r.shadow
        ]
        total, correct = self._feedback[(model, version)]
        return Observation(
            requests=len(records),
            errors=sum(not r.ok for r in records),
            latencies_ms=tuple(r.latency_ms for r in records if r.ok),
            feedback=total,
            correct=correct,
        )

    def version_stats(self) -> list[VersionStats]:
        """Request rate, errors, shadow agreement and online accuracy of every version seen."""
        keys = sorted(set(self._records) | set(self._feedback))
        return [self._version_stats(model, version) for model, version in keys]

    def _version_stats(self, model: str, version: str) -> VersionStats:
        records = list(self._records[(model, version)])
        now = time.time()
        recent = [r for r in records if now - r.time_s <= _RATE_WINDOW_S and not r.shadow]
        shadows = [r for r in records if r.shadow and r.agrees is not None]
        total, correct = self._feedback[(model, version)]
        agreement = sum(bool(r.agrees) for r in shadows) / len(shadows) if shadows else None
        return VersionStats(
            model=model,
            version=version,
            requests=sum(not r.shadow for r in records),
            shadow_requests=sum(r.shadow for r in records),
            errors=sum(not r.ok for r in records),
            request_rate_per_s=len(recent) / _RATE_WINDOW_S,
            shadow_agreement=agreement,
            feedback=total,
            online_accuracy=correct / total if total else None,
        )

    def shadow_records(self, model: str, version: str) -> list[dict[str, Any]]:
        return [asdict(r) for r in self._records[(model, version)] if r.shadow]

    def _load_feedback(self, model: str) -> None:
        """Count the feedback stored for ``model`` once, the first time the model is seen."""
        if model in self._loaded:
            return
        self._loaded.add(model)
        for text in storage.read_texts(feedback_url(self._root, model), "*.json"):
            record = json.loads(text)
            if record.get("correct") is not None:
                counts = self._feedback[(model, str(record["version"]))]
                counts[0] += 1
                counts[1] += int(bool(record["correct"]))
