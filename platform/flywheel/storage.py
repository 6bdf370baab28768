"""The storage root: a local directory or ``s3://bucket/prefix``, through one fsspec interface.

s3fs serves ``s3://`` (credentials and endpoint from the standard AWS environment variables,
``AWS_ENDPOINT_URL`` for S3-compatible stores); anything without a scheme is a local path.
"""

from __future__ import annotations

from pathlib import Path

import fsspec
from fsspec.core import url_to_fs

from flywheel.errors import FlywheelError


def join(root: str, *parts: str) -> str:
    """``root`` and ``parts`` joined with ``/`` (works for local paths and URLs alike)."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])


def upload_tree(local_dir: Path, url: str) -> str:
    """Copy a local folder to ``url`` (replacing what is there); returns ``url``."""
    fs, path = _fs(url)
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
        fs.makedirs(path, exist_ok=True)
        fs.put(f"{local_dir}/", path, recursive=True)
    except OSError as e:
        raise FlywheelError(f"cannot write {url}: {e}") from e
    return url


def download_tree(url: str, local_dir: Path) -> Path:
    """Copy the folder at ``url`` into ``local_dir``; returns ``local_dir``."""
    fs, path = _fs(url)
    if not fs.exists(path):
        raise FlywheelError(f"{url} does not exist in the storage root")
    local_dir.mkdir(parents=True, exist_ok=True)
    try:
        fs.get(f"{path.rstrip('/')}/", str(local_dir), recursive=True)
    except OSError as e:
        raise FlywheelError(f"cannot read {url}: {e}") from e
    return local_dir


def write_text(url: str, text: str) -> str:
    """Write ``text`` to the file at ``url`` (folders made as needed); returns ``url``."""
    return write_bytes(url, text.encode())


def read_texts(url: str, pattern: str = "*") -> list[str]:
    """The contents of the files matching ``pattern`` in the folder ``url`` (none if absent)."""
    fs, path = _fs(url)
    try:
        if not fs.exists(path):
            return []
        return [fs.cat_file(name).decode() for name in sorted(fs.glob(f"{path}/{pattern}"))]
    except OSError as e:
        raise FlywheelError(f"cannot read {url}: {e}") from e


def write_bytes(url: str, data: bytes) -> str:
    """Write ``data`` to the file at ``url`` (folders made as needed); returns ``url``."""
    fs, path = _fs(url)
    try:
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "wb") as handle:
            handle.write(data)
    except OSError as e:
        raise FlywheelError(f"cannot write {url}: {e}") from e
    return url


def read_bytes(url: str) -> bytes | None:
    """The bytes of the file at ``url``, or None when there is no such file."""
    fs, path = _fs(url)
    try:
        data: bytes = fs.cat_file(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise FlywheelError(f"cannot read {url}: {e}") from e
    return data


def list_files(url: str, pattern: str = "**") -> list[tuple[str, int]]:
    """``(url, size in bytes)`` of the files under the folder ``url`` matching ``pattern``."""
    fs, path = _fs(url)
    try:
        if not fs.exists(path):
            return []
        found = fs.glob(f"{path.rstrip('/')}/{pattern}", detail=True)
    except OSError as e:
        raise FlywheelError(f"cannot list {url}: {e}") from e
    prefix = url[: len(url) - len(path)] if url.endswith(path) else ""
    return sorted(
        (f"{prefix}{name}", int(info.get("size") or 0))
        for name, info in found.items()
        if info.get("type") == "file"
    )


def remove(url: str) -> None:
    """Delete the file or folder at ``url``; nothing happens when it is absent."""
    fs, path = _fs(url)
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except OSError as e:
        raise FlywheelError(f"cannot delete {url}: {e}") from e


def _fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = url_to_fs(url)
    return fs, str(path)
