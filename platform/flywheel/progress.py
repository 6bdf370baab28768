"""Progress events a job prints on its log stream, and their parsing on the client side.

A job prints one line per event: ``FLYWHEEL_PROGRESS {json}``. Ray forwards worker output to the
job log with a prefix, so the marker may sit anywhere in a line. Pure: no I/O beyond ``print``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

MARKER = "FLYWHEEL_PROGRESS "

Stage = Literal[
    "setup",
    "baseline",
    "overfit",
    "search",
    "train",
    "register",
    "serve",
    "rollout",
    "done",
    "failed",
]


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a job's progress."""

    stage: Stage
    message: str = ""
    epoch: int | None = None
    epochs: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def to_line(self) -> str:
        """The log line that carries this event."""
        return MARKER + json.dumps(asdict(self), sort_keys=True)


def parse_progress(line: str) -> ProgressEvent | None:
    """The event carried by a log line, or None for ordinary lines and malformed events."""
    start = line.find(MARKER)
    if start < 0:
        return None
    try:
        raw = json.loads(line[start + len(MARKER) :])
        return ProgressEvent(
            stage=raw["stage"],
            message=str(raw.get("message", "")),
            epoch=raw.get("epoch"),
            epochs=raw.get("epochs"),
            metrics={str(k): float(v) for k, v in (raw.get("metrics") or {}).items()},
        )
    except (ValueError, KeyError, TypeError):
        return None


def emit(event: ProgressEvent) -> None:
    """Print an event on stdout, where the job log picks it up."""
    print(event.to_line(), flush=True)
