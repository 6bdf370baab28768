"""Reading and writing under a storage root through fsspec: local files, or S3 through s3fs.

Atomic writes. Nothing half-written is ever visible under its final name:

- one object (:func:`write_bytes`): on S3 a PUT (multipart uploads included) is atomic; on a
  local disk the bytes go to a hidden temporary name in the same folder, then ``os.replace``;
- create-only (:func:`create_bytes`): S3's conditional PUT (``If-None-Match: *``), a hard link
  locally; the loser of a race learns it and nothing is overwritten;
- a folder (:func:`upload_tree`): its files first, then ``_MANIFEST.json`` listing each file's
  size and sha256. A folder without its manifest is incomplete; :func:`download_tree` refuses it
  and checks every file against it.

Retries. Every S3 request is retried by botocore's ``standard`` retry mode (exponential backoff
with jitter, capped at 20 s) on connection errors, timeouts, throttling and 5xx answers:
``AWS_MAX_ATTEMPTS`` attempts (default :data:`DEFAULT_MAX_ATTEMPTS`). Ray Train and Tune write
through the same configured filesystem (:mod:`flywheel.storage.arrow`). What still fails is a
:class:`~flywheel.errors.StorageError` naming the operation and the bucket, with any credential
scrubbed from the reason.

Endpoint, region and credentials come from the standard AWS variables (``AWS_ENDPOINT_URL``,
``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``), read by botocore.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from flywheel.errors import StorageError
from flywheel.storage_layout import join, parse_root

#: Attempts per S3 request (the first included) unless AWS_MAX_ATTEMPTS says otherwise.
DEFAULT_MAX_ATTEMPTS = 10
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60
#: Written last into an uploaded folder: the folder is complete when it is there.
MANIFEST = "_MANIFEST.json"
#: Operations for which FileNotFoundError means "nothing there" rather than a failure.
_READS = frozenset({"read", "list"})
#: Variables that shape an S3 client: a change of any of them gives a new one.
_AWS_VARIABLES = (
    "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_MAX_ATTEMPTS",
)  # fmt: skip
#: Packages whose exceptions mean that the store could not be reached or refused a request.
_S3_CLIENT_PACKAGES = frozenset({"botocore", "aiobotocore", "aiohttp", "s3fs"})
#: Variables whose values must never appear in an error message.
_SECRET_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem that holds ``url`` and the path within it."""
    root = parse_root(url)
    if not root.is_s3:
        return LocalFileSystem(), root.prefix
    path = f"{root.bucket}/{root.prefix}".rstrip("/")
    return s3_filesystem(), path


def s3_filesystem() -> fsspec.AbstractFileSystem:
    """s3fs configured with flywheel's timeouts and botocore's standard retries.

    One instance per AWS environment (endpoint, region, credentials, attempts): building its
    client costs about a second, and a change of environment must give a new one. Listings
    are never cached, so a reader always sees what others wrote.
    """
    env = tuple(os.environ.get(name, "") for name in _AWS_VARIABLES)
    return _s3_filesystem(hashlib.sha256("\0".join(env).encode()).hexdigest())


@functools.lru_cache(maxsize=4)
def _s3_filesystem(environment_digest: str) -> fsspec.AbstractFileSystem:
    """s3fs through fsspec's registry: loaded on first use, so the CLI does not pay for it."""
    max_attempts = int(os.environ.get("AWS_MAX_ATTEMPTS") or DEFAULT_MAX_ATTEMPTS)
    return fsspec.filesystem(
        "s3",
        skip_instance_cache=True,
        use_listings_cache=False,
        config_kwargs={
            "retries": {"mode": "standard", "max_attempts": max_attempts},
            "connect_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": READ_TIMEOUT_S,
        },
    )


def write_bytes(url: str, data: bytes) -> str:
    """Write ``data`` to ``url`` atomically (folders made as needed); returns ``url``."""
    fs, path = filesystem(url)
    with translated("write", url):
        if isinstance(fs, LocalFileSystem):
            _replace_local(Path(path), data)
        else:
            fs.pipe_file(path, data)
    return url


def write_text(url: str, text: str) -> str:
    """Write ``text`` (UTF-8) to ``url`` atomically; returns ``url``."""
    return write_bytes(url, text.encode())


def create_bytes(url: str, data: bytes) -> bool:
    """Write ``data`` to ``url`` only if nothing is there; False when something already is."""
    fs, path = filesystem(url)
    with translated("create", url):
        try:
            if isinstance(fs, LocalFileSystem):
                _link_local(Path(path), data)
            else:
                fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
    return True


def read_bytes(url: str) -> bytes | None:
    """The bytes at ``url``, or None when there is nothing there."""
    fs, path = filesystem(url)
    with translated("read", url):
        try:
            return bytes(fs.cat_file(path))
        except FileNotFoundError:
            return None


def read_many(folder_url: str, names: list[str]) -> dict[str, bytes]:
    """The files ``names`` of the folder ``folder_url``, fetched concurrently; missing ones are
    left out of the answer."""
    if not names:
        return {}
    fs, path = filesystem(folder_url)
    paths = {join(path, name): name for name in names}
    with translated("read", folder_url):
        contents = fs.cat(list(paths), on_error="omit")
    return {paths[p]: bytes(data) for p, data in contents.items() if p in paths}


def list_names(url: str) -> list[str]:
    """Sorted names of the files directly in the folder ``url`` (none if it is absent)."""
    fs, path = filesystem(url)
    with translated("list", url):
        try:
            entries = fs.ls(path, detail=True)
        except FileNotFoundError:
            return []
    return sorted(str(e["name"]).rsplit("/", 1)[-1] for e in entries if e["type"] == "file")


def list_files(url: str, pattern: str = "**") -> list[tuple[str, int]]:
    """``(url, size in bytes)`` of the files under the folder ``url`` matching ``pattern``."""
    fs, path = filesystem(url)
    with translated("list", url):
        if not fs.exists(path):
            return []
        found = fs.glob(f"{path.rstrip('/')}/{pattern}", detail=True)
    prefix = url[: len(url) - len(path)] if url.endswith(path) else ""
    return sorted(
        (f"{prefix}{name}", int(info.get("size") or 0))
        for name, info in found.items()
        if info.get("type") == "file"
    )


def latest_modified_s(url: str) -> float | None:
    """When a file under the folder ``url`` was last written (epoch s); None when it has none."""
    fs, path = filesystem(url)
    with translated("list", url):
        if not fs.exists(path):
            return None
        found = fs.find(path, detail=True)
    times = [_modified_s(info) for info in found.values() if info.get("type") == "file"]
    return max((t for t in times if t is not None), default=None)


def _modified_s(info: dict[str, object]) -> float | None:
    """A file's modification time from fsspec's info: ``mtime`` (local), ``LastModified`` (S3)."""
    value = info.get("mtime", info.get("LastModified"))
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if isinstance(value, int | float) else None


def remove(url: str) -> None:
    """Delete the file or folder at ``url``; nothing happens when it is absent."""
    fs, path = filesystem(url)
    with translated("delete", url):
        if fs.exists(path):
            fs.rm(path, recursive=True)


def read_texts(url: str, pattern: str = "*") -> list[str]:
    """The contents of the files matching ``pattern`` in the folder ``url`` (none if absent)."""
    fs, path = filesystem(url)
    with translated("read", url):
        names = sorted(fs.glob(f"{path}/{pattern}"))
        if not names:
            return []
        contents = fs.cat(names, on_error="omit")
    return [bytes(contents[name]).decode() for name in names if name in contents]


def upload_tree(local_dir: Path, url: str) -> str:
    """Copy a local folder to ``url`` (replacing what is there), manifest last; returns ``url``."""
    files = {
        p.relative_to(local_dir).as_posix(): p
        for p in sorted(local_dir.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    fs, path = filesystem(url)
    with translated("upload", url):
        if fs.exists(join(path, MANIFEST)):
            fs.rm_file(join(path, MANIFEST))  # incomplete from here on, until the new one
        if fs.exists(path):
            fs.rm(path, recursive=True)
    for name, file in files.items():
        write_bytes(join(url, name), file.read_bytes())
    manifest = {name: _digest(file.read_bytes()) for name, file in files.items()}
    write_text(join(url, MANIFEST), json.dumps({"files": manifest}, indent=1, sort_keys=True))
    return url


def download_tree(url: str, local_dir: Path) -> Path:
    """Copy the complete folder at ``url`` into ``local_dir``, checked against its manifest."""
    manifest_bytes = read_bytes(join(url, MANIFEST))
    if manifest_bytes is None:
        raise StorageError(
            "download", url, parse_root(url).bucket, "it is missing or incomplete (no manifest)"
        )
    files: dict[str, dict[str, object]] = json.loads(manifest_bytes).get("files", {})
    local_dir.mkdir(parents=True, exist_ok=True)
    for name, expected in files.items():
        data = read_bytes(join(url, name))
        if data is None or _digest(data) != expected:
            raise StorageError(
                "download", url, parse_root(url).bucket, f"{name} does not match the manifest"
            )
        target = local_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return local_dir


def is_complete_tree(url: str) -> bool:
    """Whether the folder at ``url`` has its manifest and every file in it matches."""
    manifest_bytes = read_bytes(join(url, MANIFEST))
    if manifest_bytes is None:
        return False
    files: dict[str, dict[str, object]] = json.loads(manifest_bytes).get("files", {})
    return all(
        (data := read_bytes(join(url, name))) is not None and _digest(data) == expected
        for name, expected in files.items()
    )


@contextmanager
def translated(operation: str, url: str) -> Iterator[None]:
    """Turn what escapes s3fs, botocore or the OS into a StorageError.

    FileExistsError passes through, and so does FileNotFoundError when reading: callers
    decide what absence means. Writing, it means that the bucket is missing.
    """
    try:
        yield
    except FileExistsError:
        raise
    except FileNotFoundError as e:
        if operation in _READS:
            raise
        reason = redact(f"{type(e).__name__}: {e}")
        raise StorageError(operation, url, parse_root(url).bucket, reason) from None
    except Exception as e:
        if not _is_storage_failure(e):
            raise
        reason = redact(f"{type(e).__name__}: {e}")
        raise StorageError(operation, url, parse_root(url).bucket, reason) from None


def _is_storage_failure(error: Exception) -> bool:
    """An OS error, or one raised by the S3 client stack (botocore's connection errors are not
    OSErrors; s3fs translates the rest). Anything else is a bug and keeps its traceback."""
    package = type(error).__module__.split(".", 1)[0]
    return isinstance(error, OSError) or package in _S3_CLIENT_PACKAGES


def redact(text: str) -> str:
    """``text`` with the values of the AWS credential variables replaced by ``***``."""
    for name in _SECRET_VARIABLES:
        value = os.environ.get(name, "")
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _digest(data: bytes) -> dict[str, object]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _replace_local(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_beside(path, data)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _link_local(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data`` unless it exists (FileExistsError), all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_beside(path, data)
    try:
        os.link(temporary, path)
    finally:
        temporary.unlink()


def _temporary_beside(path: Path, data: bytes) -> Path:
    """A hidden file next to ``path`` holding ``data``, flushed to disk."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary
