"""Feedback sets: the production examples one retraining adds, as one Parquet file.

A feedback set is :func:`flywheel.retraining.retraining_data` written down: one row per training
repetition, with the request it came from (``request_id``), whether the model had got it wrong
(``wrong``), the flattened features (``x``, a fixed-size list) and the label (``y``). It is stored
once per content fingerprint (``<root>/feedback-sets/<model>/<fingerprint>.parquet``), written
atomically, and read back by the retraining job, which logs it as a dataset input beside the
data snapshot: the lineage of a retrained version names every production example it added.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel import storage
from flywheel.errors import FlywheelError
from flywheel.plans import FeedbackSet
from flywheel.retraining import RetrainingData
from flywheel.storage_layout import StorageLayout


def feedback_fingerprint(data: RetrainingData) -> str:
    """sha256 over the features, labels and request ids, in row order."""
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(data.features), np.ascontiguousarray(data.labels)):
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    digest.update("\n".join(data.request_ids).encode())
    return digest.hexdigest()


def write_feedback_set(
    storage_root: str, model: str, from_version: str, data: RetrainingData
) -> FeedbackSet:
    """Store ``data`` under the storage root (once per fingerprint); describe what was stored."""
    if len(data.labels) == 0:
        raise FlywheelError("a feedback set needs at least one fed-back request")
    fingerprint = feedback_fingerprint(data)
    url = StorageLayout(storage_root).feedback_set(model, fingerprint)
    storage.create_bytes(url, _parquet(data))  # the same fingerprint: the same rows, kept once
    return FeedbackSet(
        model=model, from_version=from_version, url=url, fingerprint=fingerprint,
        rows=len(data.labels), requests=len(set(data.request_ids)), wrong=data.wrong,
        right=data.right,
    )  # fmt: skip


def read_feedback_set(feedback: FeedbackSet) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The rows of a stored feedback set: flattened features, labels and request ids."""
    data = storage.read_bytes(feedback.url)
    if data is None:
        raise FlywheelError(
            f"the feedback set {feedback.url} is gone (removed from the storage root?); "
            f"run `flywheel retrain {feedback.model}` again"
        )
    table = pq.read_table(io.BytesIO(data))
    width = table.schema.field("x").type.list_size
    flat = table.column("x").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    features = np.asarray(flat, dtype=np.float32).reshape(table.num_rows, width)
    labels = np.asarray(table.column("y").to_numpy(), dtype=np.int64)
    return features, labels, [str(v) for v in table.column("request_id").to_pylist()]


def _parquet(data: RetrainingData) -> bytes:
    rows = len(data.labels)
    flat = np.ascontiguousarray(data.features.reshape(rows, -1), dtype=np.float32)
    table = pa.table(
        {
            "request_id": pa.array(list(data.request_ids), type=pa.string()),
            "wrong": pa.array(list(data.mistaken), type=pa.bool_()),
            "x": pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1]),
            "y": pa.array(data.labels, type=pa.int64()),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()
