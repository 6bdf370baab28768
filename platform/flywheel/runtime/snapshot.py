"""Writing data snapshots: the train and validation split of an experiment as Parquet.

The layout and the manifest are described in :mod:`flywheel.snapshots`. The fingerprint covers
the values, shapes and dtypes of both parts, so a rerun with the same spec (split seed, fraction)
and the same data finds the snapshot already there and reuses it.

Features are flattened per example. Up to :data:`MAX_FEATURE_COLUMNS` values become one column
each (``x0``, ``x1``, ...: a table a person can query); wider examples become one fixed-size
list column ``x``. The target is the column ``y`` (a list column when it is not a scalar), and
``index`` is the example's position in the dataset ``load_data`` returned.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel import storage
from flywheel.runtime.data import Split, fingerprint
from flywheel.snapshots import MANIFEST_FILE, part_url, read_manifest, snapshot_url
from flywheel.tracking import TAG_SNAPSHOT, TAG_SNAPSHOT_URL, ExperimentRun
from flywheel.wire import ColumnInfo, SnapshotManifest, SnapshotPart

#: Examples with more feature values than this are stored as one list column.
MAX_FEATURE_COLUMNS = 1024


@dataclass(frozen=True)
class SnapshotResult:
    """A snapshot that is now in the storage root, and whether this call wrote it."""

    manifest: SnapshotManifest
    url: str
    reused: bool


def snapshot_fingerprint(features: np.ndarray, targets: np.ndarray, split: Split) -> str:
    """sha256 over the train and validation parts (values, shapes, dtypes, order)."""
    train = fingerprint(features[split.train_indices], targets[split.train_indices])
    val = fingerprint(features[split.val_indices], targets[split.val_indices])
    return hashlib.sha256(f"train:{train};validation:{val}".encode()).hexdigest()


def write_snapshot(
    storage_root: str, features: np.ndarray, targets: np.ndarray, split: Split, source: str
) -> SnapshotResult:
    """Store the split as a snapshot, unless one with the same fingerprint exists already."""
    digest = snapshot_fingerprint(features, targets, split)
    url = snapshot_url(storage_root, digest)
    existing = read_manifest(url)
    if existing is not None:
        return SnapshotResult(existing, url, reused=True)
    parts, schema = [], None
    for name, indices in (("train", split.train_indices), ("validation", split.val_indices)):
        table = to_table(features, targets, indices)
        data = _parquet_bytes(table)
        storage.write_bytes(part_url(storage_root, digest, name), data)
        parts.append(SnapshotPart(name=name, file=f"{name}.parquet", rows=table.num_rows,
                                  size_bytes=len(data)))  # fmt: skip
        schema = table.schema
    assert schema is not None
    manifest = SnapshotManifest(
        fingerprint=digest,
        source=source,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        feature_shape=list(features.shape[1:]),
        target_shape=list(targets.shape[1:]),
        columns=[ColumnInfo(name=f.name, type=str(f.type)) for f in schema],
        parts=parts,
    )
    # Last: the manifest is what makes the snapshot exist (see flywheel.snapshots).
    storage.write_text(storage.join(url, MANIFEST_FILE), json.dumps(manifest.model_dump()))
    return SnapshotResult(manifest, url, reused=False)


def record_snapshot(
    storage_root: str,
    task_module: str,
    run: ExperimentRun,
    features: np.ndarray,
    targets: np.ndarray,
    split: Split,
) -> SnapshotResult:
    """Store the split as a snapshot (or reuse it); log both parts as the run's dataset inputs.

    Each input records the Parquet file as its source and the fingerprint as its digest; the
    run's tags name the snapshot, which `flywheel data show` looks up.
    """
    source = f"{task_module}.load_data"
    result = write_snapshot(storage_root, features, targets, split, source)
    digest = result.manifest.fingerprint
    for part, context, indices in (
        ("train", "training", split.train_indices),
        ("validation", "validation", split.val_indices),
    ):
        run.log_dataset(
            features[indices], targets[indices], name=f"{source}:{part}", digest=digest[:36],
            source=part_url(storage_root, digest, part), context=context,
        )  # fmt: skip
    run.set_tags({TAG_SNAPSHOT: digest, TAG_SNAPSHOT_URL: result.url})
    return result


def to_table(features: np.ndarray, targets: np.ndarray, indices: list[int]) -> pa.Table:
    """The examples at ``indices`` as an Arrow table: ``index``, features, ``y``."""
    rows = np.asarray(indices, dtype=np.int64)
    flat = np.ascontiguousarray(features[rows].reshape(len(rows), -1))
    columns: dict[str, pa.Array] = {"index": pa.array(rows)}
    if flat.shape[1] <= MAX_FEATURE_COLUMNS:
        columns.update({f"x{i}": pa.array(flat[:, i]) for i in range(flat.shape[1])})
    else:
        columns["x"] = _list_column(flat)
    target = targets[rows]
    columns["y"] = pa.array(target) if target.ndim == 1 else _list_column(
        np.ascontiguousarray(target.reshape(len(rows), -1))
    )  # fmt: skip
    return pa.table(columns)


def _list_column(values: np.ndarray) -> pa.Array:
    """A 2-D array as one fixed-size list per row."""
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()
