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

from flywheel.request_log import LoggedFeedback, LoggedRequest


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
