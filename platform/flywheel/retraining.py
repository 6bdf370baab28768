"""Retraining data from production: the logged requests that got feedback, weighted to mistakes.

Pure. A feedback record gives a request's true label; the request log holds its inputs (for the
sampled requests, so raise ``monitor.sample_rate`` to feed more back). Each labelled request
becomes one training example; the ones the model got wrong are repeated ``wrong_repeats`` times,
so the next training weighs them more, the way oversampling does for a rare class. The request
ids are kept, so the data snapshot of the retraining shows which production examples were added.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from flywheel.request_log import LoggedFeedback, LoggedRequest
from flywheel.specs.base import LenientModel
from flywheel.specs.serving import MonitorSpec
from flywheel.wire import AlertState


@dataclass(frozen=True)
class RetrainingData:
    """Examples from production, one row per repetition."""

    features: np.ndarray  # (rows, *input_shape), float32
    labels: np.ndarray  # (rows,), int64
    request_ids: tuple[str, ...]  # the request of each row
    mistaken: tuple[bool, ...]  # whether the model got each row's request wrong
    wrong: int  # labelled requests the model got wrong (each repeated)
    right: int  # labelled requests it got right (each once)
    skipped: int  # feedback without a logged request, or with a label that is not a class


def retraining_data(
    requests: Sequence[LoggedRequest],
    feedback: Sequence[LoggedFeedback],
    wrong_repeats: int = 3,
) -> RetrainingData:
    """Join feedback to logged requests by id; repeat the mistakes ``wrong_repeats`` times.

    The last feedback of a request wins. Rows come in the order of the feedback.
    """
    if wrong_repeats < 1:
        raise ValueError("wrong_repeats must be at least 1")
    logged = {r.request_id: r for r in requests if r.ok and r.inputs and not r.shadow}
    latest = {f.request_id: f for f in feedback}
    rows: list[tuple[LoggedRequest, int, bool]] = []
    wrong = right = skipped = 0
    for request_id, record in latest.items():
        request = logged.get(request_id)
        label = _class(record.label)
        if request is None or label is None:
            skipped += 1
            continue
        mistaken = request.prediction is None or _class(request.prediction) != label
        wrong, right = wrong + mistaken, right + (not mistaken)
        rows.extend([(request, label, mistaken)] * (wrong_repeats if mistaken else 1))
    shape = tuple(rows[0][0].input_shape) if rows and rows[0][0].input_shape else (-1,)
    features = np.asarray([r.inputs for r, _, _ in rows], dtype=np.float32)
    return RetrainingData(
        features=features.reshape((len(rows), *shape)) if rows else features,
        labels=np.asarray([label for _, label, _ in rows], dtype=np.int64),
        request_ids=tuple(r.request_id for r, _, _ in rows),
        mistaken=tuple(m for _, _, m in rows),
        wrong=wrong,
        right=right,
        skipped=skipped,
    )


def _class(value: object) -> int | None:
    """A class index from a label or prediction (``3``, ``3.0``, ``"3"``); None if not one."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() and number >= 0 else None


class RetrainRecord(LenientModel):
    """The last automatic retraining of a model, stored beside its alert state."""

    incident_s: float = Field(description="`since_s` of the alert that triggered it.")
    submitted_s: float = Field(description="When it was queued (epoch s).")
    experiment_id: str = Field(description="The retraining experiment.")


def retrain_due(
    alert: AlertState, rules: MonitorSpec, last: RetrainRecord | None, now_s: float
) -> bool:
    """Whether a drift alert should queue a retraining now.

    Only while the alert is raised, only when the serve section asks for it, once per incident
    (an alert keeps its ``since_s`` while it stays raised), and never within the cool-down of
    the last one: an alert that clears and is raised again soon after starts no second one.
    """
    if not (rules.retrain_on_alert and alert.active and alert.since_s is not None):
        return False
    if last is None:
        return True
    if last.incident_s == alert.since_s:
        return False
    return now_s - last.submitted_s >= rules.retrain_cooldown_hours * 3600.0
