"""Data snapshots: where they live under the storage root and what their manifest says.

A snapshot is the exact training and validation data of an experiment, as Parquet, stored once
per content fingerprint::

    <storage root>/snapshots/<fingerprint>/train.parquet
                                          /validation.parquet
                                          /manifest.json      (written last)

The manifest is written after both Parquet files, so a snapshot exists exactly when its manifest
does: a job that dies halfway leaves nothing a later run would reuse. The writer is
:mod:`flywheel.runtime.snapshot`; this module only reads, and parses leniently (a newer writer's
extra fields are ignored). The manifest's model lives in :mod:`flywheel.wire`: the control plane
sends it to clients as it reads it.
"""

from __future__ import annotations

from pydantic import ValidationError

from flywheel import storage
from flywheel.errors import FlywheelError
from flywheel.wire import SnapshotManifest

#: Names of the parts of a snapshot, in the order they are listed.
PARTS = ("train", "validation")
MANIFEST_FILE = "manifest.json"


def snapshot_url(storage_root: str, fingerprint: str) -> str:
    """The folder of the snapshot with ``fingerprint``."""
    return storage.join(storage_root, "snapshots", fingerprint)


def part_url(storage_root: str, fingerprint: str, part: str) -> str:
    """The Parquet file of one part (``train`` or ``validation``) of a snapshot."""
    return storage.join(snapshot_url(storage_root, fingerprint), f"{part}.parquet")


def read_manifest(folder_url: str) -> SnapshotManifest | None:
    """The manifest of the snapshot in ``folder_url``, or None when there is no complete one."""
    url = storage.join(folder_url, MANIFEST_FILE)
    data = storage.read_bytes(url)
    if data is None:
        return None
    try:
        return SnapshotManifest.model_validate_json(data)
    except ValidationError as e:
        raise FlywheelError(f"{url} is not a snapshot manifest: {e}") from e
