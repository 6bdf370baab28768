"""The storage root as Ray Train and Tune want it: a ``storage_path`` and a pyarrow filesystem.

For an ``s3://`` root Ray gets flywheel's own s3fs filesystem wrapped for pyarrow, so that its
checkpoints and experiment state go through the same endpoint, timeouts and retries as
everything else (:mod:`flywheel.storage.objects`), and the path without its scheme, as Ray
expects with a custom filesystem. A local root passes through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.fs

from flywheel.storage.objects import s3_filesystem
from flywheel.storage_layout import parse_root


@dataclass(frozen=True)
class RayStorage:
    """Arguments for ``RunConfig(storage_path=..., storage_filesystem=...)``."""

    path: str
    filesystem: pyarrow.fs.FileSystem | None


def ray_storage(url: str) -> RayStorage:
    """Where Ray Train or Tune should persist a run that belongs under ``url``."""
    root = parse_root(url)
    if not root.is_s3:
        return RayStorage(root.prefix, None)
    handler = pyarrow.fs.FSSpecHandler(s3_filesystem())
    return RayStorage(f"{root.bucket}/{root.prefix}".rstrip("/"), pyarrow.fs.PyFileSystem(handler))
