"""Data snapshots: where they live under the storage root and what their manifest says.

A snapshot is the exact training and validation data of an experiment, as Parquet, stored once
per content fingerprint::

    <storage root>/snapshots/<fingerprint>/train.parquet
                                          /validation.parquet
                                          /manifest.json      (written last)

The manifest is written after both Parquet files, so a snapshot exists exactly when its manifest
does: a job that dies halfway leaves nothing a later run would reuse. The writer is
:mod:`flywheel.runtime.snapshot`; this module only reads, and parses leniently (a newer writer's
extra fields are ignored).
"""

from __future__ import annotations

from pydantic import Field, ValidationError

from flywheel import storage
from flywheel.errors import FlywheelError
from flywheel.specs.base import LenientModel

#: Names of the parts of a snapshot, in the order they are listed.
PARTS = ("train", "validation")
MANIFEST_FILE = "manifest.json"


class ColumnInfo(LenientModel):
    """One Parquet column of a snapshot."""

    name: str = Field(description="Column name.")
    type: str = Field(description="Arrow type, as Arrow prints it.")


class SnapshotPart(LenientModel):
    """One Parquet file of a snapshot (train or validation)."""

    name: str = Field(description="`train` or `validation`.")
    file: str = Field(description="File name inside the snapshot folder.")
    rows: int = Field(description="Number of examples.")
    size_bytes: int = Field(description="Size of the Parquet file, in bytes.")


class SnapshotManifest(LenientModel):
    """What a snapshot holds: its fingerprint, source, schema and parts."""

    fingerprint: str = Field(description="sha256 of the train and validation data (the address).")
    source: str = Field(description="Where the data came from, e.g. `task.load_data`.")
    created_at: str = Field(description="When the snapshot was first written (ISO 8601, UTC).")
    feature_shape: list[int] = Field(description="Shape of one example's features.")
    target_shape: list[int] = Field(description="Shape of one example's target.")
    columns: list[ColumnInfo] = Field(description="Parquet schema shared by the parts.")
    parts: list[SnapshotPart] = Field(description="The train and validation files.")

    @property
    def size_bytes(self) -> int:
        """Total size of the Parquet files."""
        return sum(part.size_bytes for part in self.parts)


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
