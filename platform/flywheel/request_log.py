"""The request log: a sample of served requests and all feedback, durable under the storage root.

Layout (JSON lines, one file per flush, partitioned by model, kind, date and hour, UTC)::

    <storage root>/request-log/<model>/requests/date=2026-11-30/hour=09/<writer>-<seq>.jsonl
    <storage root>/request-log/<model>/feedback/date=2026-11-30/hour=09/<writer>-<seq>.jsonl

Writing, from the serving data plane (the whole interface)::

    log = RequestLogWriter(storage_root, sample_rate=0.1, retention_hours=168)
    log.log_request(LoggedRequest(...))    # never blocks, never raises: a sample is queued
    log.log_feedback(LoggedFeedback(...))  # every feedback record is queued
    log.close()                            # flushes what is queued

A background thread writes the queue every ``flush_every_s`` seconds and deletes hour partitions
older than ``retention_hours``. Whether a request is sampled depends only on its id
(:func:`is_sampled`), so every replica samples the same requests. When the queue is full the
oldest records are dropped (and counted in ``dropped``); records whose file cannot be written are
logged, dropped and counted in ``failed``: the log never slows or fails an answer.

Reading (:func:`read_requests`, :func:`read_feedback`) is lenient: unknown fields are ignored
and a line that does not parse is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

from flywheel import storage

Kind = Literal["requests", "feedback"]
Label = int | float | str

_log = logging.getLogger("flywheel.request_log")
_HOUR_S = 3600.0
#: Fields read back as strings whatever a writer made of them (MLflow versions are numbers too).
_NAMES = ("request_id", "model", "version")


@dataclass(frozen=True)
class LoggedRequest:
    """One answered (or failed) request, as the gateway saw it."""

    request_id: str
    model: str
    version: str
    time_s: float
    latency_ms: float
    ok: bool
    inputs: list[float] = field(default_factory=list)  # the example, flattened
    input_shape: list[int] = field(default_factory=list)
    prediction: Label | None = None
    shadow: bool = False


@dataclass(frozen=True)
class LoggedFeedback:
    """The true label of an answered request, with what the version had predicted."""

    request_id: str
    model: str
    version: str
    time_s: float
    label: Label
    prediction: Label | None = None

    @property
    def correct(self) -> bool | None:
        """Whether the prediction was the label; None when there was no prediction."""
        return None if self.prediction is None else self.prediction == self.label


def is_sampled(request_id: str, sample_rate: float) -> bool:
    """Whether ``request_id`` is in the sample: a hash of the id below ``sample_rate``."""
    if sample_rate >= 1.0:
        return True
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < sample_rate


def log_url(storage_root: str, model: str, kind: Kind) -> str:
    """The folder of one model's requests or feedback."""
    return storage.join(storage_root, "request-log", model, kind)


def partition(time_s: float) -> str:
    """The partition folder of a moment: ``date=YYYY-MM-DD/hour=HH`` (UTC)."""
    moment = datetime.fromtimestamp(time_s, tz=UTC)
    return f"date={moment:%Y-%m-%d}/hour={moment:%H}"


class RequestLogWriter:
    """Queues records and writes them in the background; see the module docstring."""

    def __init__(
        self,
        storage_root: str,
        sample_rate: float,
        retention_hours: float,
        flush_every_s: float = 2.0,
        max_queued: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._root = storage_root
        self.sample_rate = sample_rate
        self.retention_hours = retention_hours
        self._flush_every_s = flush_every_s
        self._clock = clock
        self._queue: deque[LoggedRequest | LoggedFeedback] = deque(maxlen=max_queued)
        self._writer_id = uuid.uuid4().hex[:12]
        self._sequence = 0
        self._lock = threading.Lock()  # one flush at a time
        self._stop = threading.Event()
        self._last_prune_s = 0.0
        self.dropped = 0  # records pushed out of a full queue
        self.failed = 0  # records lost because their file could not be written
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def log_request(self, record: LoggedRequest) -> bool:
        """Queue ``record`` if it is in the sample; returns whether it was."""
        if not is_sampled(record.request_id, self.sample_rate):
            return False
        self._enqueue(record)
        return True

    def log_feedback(self, record: LoggedFeedback) -> None:
        """Queue a feedback record (feedback is never sampled)."""
        self._enqueue(record)

    def flush(self) -> None:
        """Write everything queued now, one file per model and kind and hour. Never raises: the
        records of a file that cannot be written are dropped and counted in ``failed``."""
        with self._lock:
            batch = [self._queue.popleft() for _ in range(len(self._queue))]
            groups: dict[str, list[str]] = {}
            for record in batch:
                kind: Kind = "requests" if isinstance(record, LoggedRequest) else "feedback"
                folder = storage.join(
                    log_url(self._root, record.model, kind), partition(record.time_s)
                )
                # vars(), not asdict(): asdict deep-copies every input value (0.6 ms a record)
                groups.setdefault(folder, []).append(json.dumps(vars(record)))
            for folder, lines in groups.items():
                self._sequence += 1
                name = f"{self._writer_id}-{self._sequence:08d}.jsonl"
                try:
                    storage.write_text(storage.join(folder, name), "\n".join(lines) + "\n")
                except Exception as e:  # storage trouble: drop this file's records, count them
                    self.failed += len(lines)
                    _log.warning("request log: %d records lost: %s", len(lines), e)

    def prune(self) -> int:
        """Delete the hour partitions older than the retention; returns how many."""
        cutoff_s = self._clock() - self.retention_hours * _HOUR_S
        return prune(self._root, cutoff_s)

    def close(self) -> None:
        """Stop the background thread and write what is queued."""
        self._stop.set()
        self._thread.join()
        self.flush()

    def _enqueue(self, record: LoggedRequest | LoggedFeedback) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1  # the oldest record falls out of the deque
        self._queue.append(record)

    def _run(self) -> None:
        while not self._stop.wait(self._flush_every_s):
            try:
                self.flush()
                if self._clock() - self._last_prune_s >= _HOUR_S / 4:
                    self._last_prune_s = self._clock()
                    self.prune()
            except Exception as e:  # storage trouble: keep serving, try again later
                _log.warning("request log: %s", e)


def prune(storage_root: str, cutoff_s: float) -> int:
    """Delete every model's hour partitions that ended before ``cutoff_s``; returns how many."""
    root = storage.join(storage_root, "request-log")
    old = {
        folder
        for url, _ in storage.list_files(root, "**/*.jsonl")
        if (folder := url.rsplit("/", 1)[0]) and _partition_end_s(folder) <= cutoff_s
    }
    for folder in sorted(old):
        storage.remove(folder)
    return len(old)


def read_requests(
    storage_root: str, model: str, last_n: int | None = None, since_s: float | None = None
) -> list[LoggedRequest]:
    """Logged requests of ``model``, oldest first: the last ``last_n`` and/or those since."""
    records = _read(storage_root, model, "requests", LoggedRequest, last_n, since_s)
    return [r for r in records if isinstance(r, LoggedRequest)]


def read_feedback(
    storage_root: str, model: str, since_s: float | None = None
) -> list[LoggedFeedback]:
    """Feedback records of ``model``, oldest first."""
    records = _read(storage_root, model, "feedback", LoggedFeedback, None, since_s)
    return [r for r in records if isinstance(r, LoggedFeedback)]


def _read(
    storage_root: str,
    model: str,
    kind: Kind,
    cls: type[LoggedRequest] | type[LoggedFeedback],
    last_n: int | None,
    since_s: float | None,
) -> list[LoggedRequest | LoggedFeedback]:
    """Newest partitions first, until ``last_n`` records are found or ``since_s`` is passed."""
    by_folder: dict[str, list[str]] = {}
    for url, _ in storage.list_files(log_url(storage_root, model, kind), "**/*.jsonl"):
        by_folder.setdefault(url.rsplit("/", 1)[0], []).append(url)
    found: list[LoggedRequest | LoggedFeedback] = []
    for folder in sorted(by_folder, reverse=True):
        if since_s is not None and _partition_end_s(folder) <= since_s:
            break
        for url in by_folder[folder]:
            found.extend(_parse_lines(storage.read_bytes(url) or b"", cls))
        if last_n is not None and len(found) >= last_n and since_s is None:
            break
    found.sort(key=lambda r: r.time_s)
    if since_s is not None:
        found = [r for r in found if r.time_s >= since_s]
    return found[-last_n:] if last_n is not None else found


def _parse_lines(
    data: bytes, cls: type[LoggedRequest] | type[LoggedFeedback]
) -> list[LoggedRequest | LoggedFeedback]:
    known = {f.name for f in fields(cls)}
    records: list[LoggedRequest | LoggedFeedback] = []
    for line in data.decode(errors="replace").splitlines():
        try:
            values: dict[str, Any] = json.loads(line)
            kept: dict[str, Any] = {
                k: str(v) if k in _NAMES else v for k, v in values.items() if k in known
            }
            records.append(cls(**kept))
        except (ValueError, TypeError):
            continue  # a torn or foreign line: skip it, keep the rest
    return records


def _partition_end_s(folder: str) -> float:
    """When the hour of a ``.../date=YYYY-MM-DD/hour=HH`` folder ends (inf if not one)."""
    try:
        date = folder.rsplit("/date=", 1)[1].split("/", 1)[0]
        hour = folder.rsplit("/hour=", 1)[1]
        start = datetime.strptime(f"{date} {hour}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    except (IndexError, ValueError):
        return float("inf")
    return start.timestamp() + _HOUR_S
