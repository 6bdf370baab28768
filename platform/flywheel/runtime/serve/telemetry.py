"""What an ingress replica tells the outside: Prometheus metrics and the sampled request log.

Metrics go through ``ray.util.metrics``: recording one is a call into the replica's core worker
(no network, no lock held across I/O), and Ray's metrics agent on the node exports them on its
Prometheus endpoint (``ray start --metrics-export-port``) with the prefix ``ray_``:

- ``flywheel_serve_requests_total{model,version,shadow}``: answered and failed requests.
- ``flywheel_serve_request_errors_total{model,version,shadow}``: requests the model failed.
- ``flywheel_serve_request_latency_seconds{model,version,shadow}``: histogram of model time.
- ``flywheel_serve_shadow_comparisons_total{model,version,agrees}``: shadow answers compared
  with the answer returned (the agreement rate is the ``agrees="true"`` share).
- ``flywheel_serve_drift_alert{model}``: 1 while the model's drift alert (the state the last
  ``flywheel monitor`` check stored) is raised, else 0.
- ``flywheel_request_log_lost_records_total{model,reason}``: sampled records the request log
  dropped (``queue_full`` or ``write_failed``).

The request log (:class:`flywheel.request_log.RequestLogWriter`) queues a sample of requests,
one record per row of a batch (:func:`records_to_logged`), and every feedback record, in a
bounded queue that a background thread writes; :meth:`ReplicaTelemetry.observe` never blocks
and never raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import numpy as np
from ray.util.metrics import Counter, Gauge, Histogram

from flywheel.alerts import read_alert
from flywheel.errors import FlywheelError
from flywheel.request_log import LoggedFeedback, LoggedRequest, RequestLogWriter, is_sampled
from flywheel.rollout import ModelRoute
from flywheel.runtime.serve.stats import RequestRecord

#: The metric families as Ray's metrics agent exports them (what Prometheus stores).
EXPORTED_METRICS = (
    "ray_flywheel_serve_requests_total",
    "ray_flywheel_serve_request_errors_total",
    "ray_flywheel_serve_request_latency_seconds",
    "ray_flywheel_serve_shadow_comparisons_total",
    "ray_flywheel_serve_drift_alert",
    "ray_flywheel_request_log_lost_records_total",
)
#: Upper bounds (s) of the latency histogram's buckets.
LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
#: Seconds between two reads of the stored drift alert.
DRIFT_REFRESH_S = 30.0
#: Rows of one batched request written to the request log at most.
MAX_LOGGED_ROWS = 64

_log = logging.getLogger("ray.serve")
_TAGS = ("model", "version", "shadow")


class ReplicaTelemetry:
    """Metrics and request log of one ingress replica of ``model``."""

    def __init__(self, model: str, storage_root: str) -> None:
        self._model, self._root = model, storage_root
        self._requests = Counter(
            "flywheel_serve_requests", "Requests a version answered or failed.", _TAGS
        )
        self._errors = Counter(
            "flywheel_serve_request_errors", "Requests a version failed to answer.", _TAGS
        )
        self._latency = Histogram(
            "flywheel_serve_request_latency_seconds", "Model time of answered requests.",
            LATENCY_BUCKETS_S, _TAGS,
        )  # fmt: skip
        self._shadow = Counter(
            "flywheel_serve_shadow_comparisons", "Shadow answers compared with the answer.",
            ("model", "version", "agrees"),
        )  # fmt: skip
        self._drift = Gauge(
            "flywheel_serve_drift_alert", "1 while the model's drift alert is raised.", ("model",)
        )
        self._lost = Counter(
            "flywheel_request_log_lost_records", "Sampled requests the log dropped.",
            ("model", "reason"),
        )  # fmt: skip
        self._log: RequestLogWriter | None = None
        self._lost_seen = {"queue_full": 0, "write_failed": 0}
        self._drift_read_s = float("-inf")

    def follow(self, route: ModelRoute) -> None:
        """Start the request log, or apply a new route's sample rate and retention."""
        if self._log is None:
            self._log = RequestLogWriter(
                self._root, route.log_sample_rate, route.log_retention_hours
            )
        self._log.sample_rate = route.log_sample_rate
        self._log.retention_hours = route.log_retention_hours

    def observe(
        self,
        record: RequestRecord,
        inputs: tuple[np.ndarray, ...] = (),
        predictions: Sequence[int | None] = (),
    ) -> None:
        """Count one request and offer its rows to the request log (``predictions``: one per
        row of a batch); never raises, never blocks."""
        try:
            tags = {"model": record.model, "version": record.version,
                    "shadow": str(record.shadow).lower()}  # fmt: skip
            self._requests.inc(1, tags)
            if not record.ok:
                self._errors.inc(1, tags)
            else:
                self._latency.observe(record.latency_ms / 1000.0, tags)
            if record.agrees is not None:
                agrees = {"model": record.model, "version": record.version,
                          "agrees": str(record.agrees).lower()}  # fmt: skip
                self._shadow.inc(1, agrees)
            if self._log is not None and is_sampled(record.request_id, self._log.sample_rate):
                for logged in records_to_logged(record, inputs, predictions):
                    self._log.log_request(logged)
        except Exception:  # telemetry must never fail an answer
            _log.exception("telemetry of a %s request failed", self._model)

    def feedback(self, record: LoggedFeedback) -> None:
        """Offer a feedback record to the request log (feedback is never sampled)."""
        if self._log is not None:
            self._log.log_feedback(record)

    async def report(self) -> None:
        """Export the request log's losses and, now and then, the stored drift alert."""
        for reason, total in self.lost_records.items():
            self._count_lost(reason, total)
        if time.monotonic() - self._drift_read_s >= DRIFT_REFRESH_S:
            self._drift_read_s = time.monotonic()
            try:
                alert = await asyncio.to_thread(read_alert, self._root, self._model)
            except FlywheelError as e:  # keep the last value; try again at the next refresh
                _log.warning("drift alert of %s unreadable: %s", self._model, e)
                return
            self._drift.set(1.0 if alert.active else 0.0, {"model": self._model})

    @property
    def lost_records(self) -> dict[str, int]:
        """Records the request log dropped so far, by reason."""
        if self._log is None:
            return {"queue_full": 0, "write_failed": 0}
        return {"queue_full": self._log.dropped, "write_failed": self._log.failed}

    def close(self) -> None:
        """Write what the request log holds."""
        if self._log is not None:
            self._log.close()

    def _count_lost(self, reason: str, total: int) -> None:
        if total > self._lost_seen[reason]:
            self._lost.inc(
                total - self._lost_seen[reason], {"model": self._model, "reason": reason}
            )
            self._lost_seen[reason] = total


def records_to_logged(
    record: RequestRecord,
    inputs: tuple[np.ndarray, ...],
    predictions: Sequence[int | None] = (),
) -> list[LoggedRequest]:
    """The request log's records of a request: one per row of its first input (at most
    :data:`MAX_LOGGED_ROWS`), flattened, with the version's prediction for that row.

    A one-row request keeps its id; the rows of a batch are ``<id>/<row>``, so that each row
    counts as one example in a drift window. A failed or empty request is one record without
    inputs.
    """
    first = inputs[0] if inputs else None
    rows = first if first is not None and first.ndim >= 1 and len(first) else None
    if rows is None:
        return [_logged(record, record.request_id, None, record.prediction)]
    if len(rows) == 1:
        return [_logged(record, record.request_id, rows[0], record.prediction)]
    return [
        _logged(record, f"{record.request_id}/{i}", rows[i],
                predictions[i] if i < len(predictions) else None)
        for i in range(min(len(rows), MAX_LOGGED_ROWS))
    ]  # fmt: skip


def _logged(
    record: RequestRecord, request_id: str, row: np.ndarray | None, prediction: int | None
) -> LoggedRequest:
    return LoggedRequest(
        request_id=request_id, model=record.model, version=record.version,
        time_s=record.time_s, latency_ms=record.latency_ms, ok=record.ok,
        inputs=[] if row is None else np.asarray(row, dtype=np.float64).reshape(-1).tolist(),
        input_shape=[] if row is None else list(np.shape(row)),
        prediction=prediction, shadow=record.shadow,
    )  # fmt: skip
