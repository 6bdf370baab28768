"""The router state: one detached Ray actor that holds every model's route and what was observed.

Serving jobs write routes here; gateway replicas read them (polling) and report each answered
request in batches. Routes are also written under the storage root, so that a restarted actor
routes as before; feedback counts are rebuilt from the stored feedback records.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict, defaultdict, deque
from dataclasses import asdict, dataclass
from typing import Any

import ray

from flywheel import storage
from flywheel.rollout import ModelRoute, Observation

ACTOR_NAME = "flywheel-serve-router"
NAMESPACE = "flywheel"

_MAX_RECORDS_PER_VERSION = 20_000
_MAX_REMEMBERED_REQUESTS = 200_000
_RATE_WINDOW_S = 60.0
_ACK_FRESH_S = 10.0


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


def routes_url(storage_root: str) -> str:
    return storage.StorageLayout(storage_root).serving_routes()


def feedback_url(storage_root: str, model: str) -> str:
    return storage.StorageLayout(storage_root).feedback(model)


def router_state(storage_root: str) -> Any:
    """The router state actor, created (detached) when it does not exist yet."""
    return RouterState.options(  # type: ignore[attr-defined]
        name=ACTOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        num_cpus=0, max_concurrency=64,
    ).remote(storage_root)  # fmt: skip


@ray.remote
class RouterState:
    """Routes, per-version request records, recent requests (for feedback), feedback counts."""

    def __init__(self, storage_root: str) -> None:
        self._root = storage_root
        self._routes: dict[str, ModelRoute] = _load_routes(storage_root)
        self._generation = 1
        self._acks: dict[str, tuple[int, float]] = {}
        self._records: dict[tuple[str, str], deque[RequestRecord]] = defaultdict(
            lambda: deque(maxlen=_MAX_RECORDS_PER_VERSION)
        )
        self._requests: OrderedDict[str, RequestRecord] = OrderedDict()
        self._feedback: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        self._load_feedback()

    def sync(
        self, replica: str, seen: int, records: list[RequestRecord]
    ) -> tuple[int, dict[str, ModelRoute] | None]:
        """A gateway replica's poll: store its records, note what it saw, return newer routes."""
        self._acks[replica] = (seen, time.monotonic())
        for record in records:
            self._records[(record.model, record.version)].append(record)
            if not record.shadow:
                self._requests[record.request_id] = record
        while len(self._requests) > _MAX_REMEMBERED_REQUESTS:
            self._requests.popitem(last=False)
        if seen == self._generation:
            return self._generation, None
        return self._generation, dict(self._routes)

    def routes(self) -> dict[str, ModelRoute]:
        return dict(self._routes)

    def set_route(self, model: str, route: ModelRoute | None) -> int:
        """Replace (or with None remove) a model's route; returns the new generation."""
        if route is None:
            self._routes.pop(model, None)
        else:
            self._routes[model] = route
        self._generation += 1
        document = {name: r.model_dump(mode="json") for name, r in self._routes.items()}
        storage.write_text(routes_url(self._root), json.dumps(document, indent=2))
        return self._generation

    def acknowledged(self, generation: int) -> bool:
        """Whether every gateway replica heard from lately has seen ``generation``."""
        now = time.monotonic()
        fresh = [seen for seen, at in self._acks.values() if now - at < _ACK_FRESH_S]
        return bool(fresh) and min(fresh) >= generation

    def lookup(self, request_id: str) -> RequestRecord | None:
        return self._requests.get(request_id)

    def add_feedback(self, model: str, version: str, correct: bool) -> None:
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

    def version_stats(self, model: str, version: str) -> dict[str, Any]:
        """Request rate, errors, shadow agreement and online accuracy of one version."""
        records = list(self._records[(model, version)])
        now = time.time()
        recent = [r for r in records if now - r.time_s <= _RATE_WINDOW_S]
        shadows = [r for r in records if r.shadow and r.agrees is not None]
        total, correct = self._feedback[(model, version)]
        return {
            "requests": sum(not r.shadow for r in records),
            "shadow_requests": sum(r.shadow for r in records),
            "errors": sum(not r.ok for r in records),
            "request_rate_per_s": len(recent) / _RATE_WINDOW_S,
            "shadow_agreement": (sum(bool(r.agrees) for r in shadows) / len(shadows))
            if shadows
            else None,
            "feedback": total,
            "online_accuracy": correct / total if total else None,
        }

    def shadow_records(self, model: str, version: str) -> list[dict[str, Any]]:
        return [asdict(r) for r in self._records[(model, version)] if r.shadow]

    def _load_feedback(self) -> None:
        for model in self._routes:
            for text in storage.read_texts(feedback_url(self._root, model), "*.json"):
                record = json.loads(text)
                if record.get("correct") is not None:
                    self.add_feedback(model, str(record["version"]), bool(record["correct"]))


def _load_routes(storage_root: str) -> dict[str, ModelRoute]:
    texts = storage.read_texts(storage.join(storage_root, "serving"), "routes.json")
    if not texts:
        return {}
    return {name: ModelRoute.model_validate(r) for name, r in json.loads(texts[0]).items()}
