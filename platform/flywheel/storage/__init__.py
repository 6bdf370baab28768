"""The storage root: a local directory or ``s3://bucket/prefix``, through one fsspec interface.

- :mod:`flywheel.storage_layout`: every path under a root (pure);
- :mod:`flywheel.storage.objects`: atomic reads and writes, retries, errors (fsspec, s3fs);
- :mod:`flywheel.storage.arrow`: the same filesystem for Ray Train and Tune (pyarrow);
- :mod:`flywheel.storage.journal`: the Optuna journal of a search on the root.

The last two are imported where they are used (inside Ray), so that the CLI loads neither
pyarrow nor optuna.
"""

from __future__ import annotations

from flywheel.storage.objects import (
    create_bytes,
    download_tree,
    latest_modified_s,
    list_files,
    list_names,
    read_bytes,
    read_texts,
    remove,
    upload_tree,
    write_bytes,
    write_text,
)
from flywheel.storage_layout import StorageLayout, bucket_of, join, parse_root

__all__ = [
    "StorageLayout",
    "bucket_of",
    "create_bytes",
    "download_tree",
    "join",
    "latest_modified_s",
    "list_files",
    "list_names",
    "parse_root",
    "read_bytes",
    "read_texts",
    "remove",
    "upload_tree",
    "write_bytes",
    "write_text",
]
