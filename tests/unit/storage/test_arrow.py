"""Ray Train and Tune get the storage root as a storage_path and flywheel's own filesystem."""

from __future__ import annotations

import pickle
from pathlib import Path

from flywheel.storage import read_bytes
from flywheel.storage.arrow import ray_storage


def test_a_local_root_passes_through(tmp_path: Path) -> None:
    storage = ray_storage(str(tmp_path / "checkpoints"))
    assert (storage.path, storage.filesystem) == (str(tmp_path / "checkpoints"), None)


def test_an_s3_root_writes_through_flywheels_filesystem_after_pickling(s3_bucket: str) -> None:
    storage = ray_storage(f"s3://{s3_bucket}/fw/checkpoints")
    assert storage.path == f"{s3_bucket}/fw/checkpoints"
    assert storage.filesystem is not None
    filesystem = pickle.loads(pickle.dumps(storage.filesystem))  # as Ray ships it to workers
    with filesystem.open_output_stream(f"{storage.path}/run/checkpoint.pt") as stream:
        stream.write(b"weights")
    assert read_bytes(f"s3://{s3_bucket}/fw/checkpoints/run/checkpoint.pt") == b"weights"
