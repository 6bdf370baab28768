"""Where the serving document lives, behind a compare-and-set protocol.

:func:`document_store` picks the store for a storage root:

- a local root: :class:`FileDocumentStore` keeps it in one JSON file: writes happen under an
  exclusive lock and replace the file atomically (write a temporary file, then rename), so a
  reader never sees half a document and a crash loses nothing;
- an ``s3://`` root (the control plane on Kubernetes, whose replicas share no disk):
  :class:`ObjectDocumentStore` keeps one object per generation, written create-only (S3's
  ``If-None-Match: *``), and reads the newest. Every change raises the generation by one, so
  two writers that start from the same generation race for the same object and only one wins;
  the loser gets ServeConflictError, as with the file. The newest :data:`KEEP_GENERATIONS`
  stay, as history; a write deletes the ones older than those (never the newest, which readers
  and writers go by; a failed deletion is logged and left for the next write).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout

from flywheel.errors import ServeConflictError, ServeError, StorageError
from flywheel.serving.document import ServingDocument
from flywheel.storage.objects import create_bytes, list_names, read_bytes, remove
from flywheel.storage_layout import join, parse_root

_log = logging.getLogger(__name__)

_LOCK_TIMEOUT_S = 30.0
#: Generations of the serving document an object store keeps (the newest of them is current).
KEEP_GENERATIONS = 50
#: Digits of a generation's object name, so that names sort in generation order.
_GENERATION_DIGITS = 12
_SUFFIX = ".json"


class DocumentStore(Protocol):
    """Reads the serving document and replaces it only when nobody changed it meanwhile."""

    def read(self) -> ServingDocument:
        """The current document (an empty one at generation 0 when none was written)."""
        ...

    def compare_and_set(self, expected_generation: int, document: ServingDocument) -> None:
        """Write ``document`` if the stored generation is still ``expected_generation``.

        Raises ServeConflictError otherwise, and changes nothing.
        """
        ...


def document_store(storage_root: str) -> DocumentStore:
    """The serving document's store under ``storage_root`` (its ``serving`` folder)."""
    if parse_root(storage_root).is_s3:
        return ObjectDocumentStore(join(storage_root, "serving", "documents"))
    return FileDocumentStore(Path(storage_root) / "serving")


class FileDocumentStore:
    """The serving document as ``<folder>/document.json``, guarded by ``document.lock``."""

    def __init__(self, folder: Path) -> None:
        self._path = folder / "document.json"
        self._lock = FileLock(str(folder / "document.lock"), timeout=_LOCK_TIMEOUT_S)

    def read(self) -> ServingDocument:
        return self._load()

    def compare_and_set(self, expected_generation: int, document: ServingDocument) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._lock:
                current = self._load().generation
                if current != expected_generation:
                    raise ServeConflictError(
                        f"the serving document changed meanwhile (generation {current}, "
                        f"expected {expected_generation}): another operation won; look with "
                        "`flywheel models` and try again"
                    )
                _atomic_write(self._path, document.model_dump_json(indent=2))
        except Timeout as e:
            raise ServeError(
                f"the serving document {self._path} stayed locked for {_LOCK_TIMEOUT_S:.0f} s; "
                "another operation holds it: try again"
            ) from e

    def _load(self) -> ServingDocument:
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return ServingDocument()
        except OSError as e:
            raise ServeError(f"cannot read the serving document {self._path}: {e}") from e
        return ServingDocument.model_validate_json(text)


class ObjectDocumentStore:
    """The serving document as one object per generation in the folder ``url``."""

    def __init__(self, url: str, keep: int = KEEP_GENERATIONS) -> None:
        if keep < 1:
            raise ValueError(f"keep at least the newest generation, not {keep}")
        self._url = url
        self._keep = keep

    def read(self) -> ServingDocument:
        newest = self._newest()
        if newest is None:
            return ServingDocument()
        data = read_bytes(join(self._url, _object_name(newest)))
        if data is None:
            raise ServeError(f"the serving document {self._url} lost generation {newest}")
        return ServingDocument.model_validate_json(data)

    def compare_and_set(self, expected_generation: int, document: ServingDocument) -> None:
        if document.generation != expected_generation + 1:
            raise ValueError(
                f"a change writes generation {expected_generation + 1}, not {document.generation}"
            )
        current = self._newest() or 0
        name = _object_name(document.generation)
        data = document.model_dump_json(indent=2).encode()
        if current != expected_generation or not create_bytes(join(self._url, name), data):
            raise ServeConflictError(
                f"the serving document changed meanwhile (it is past generation "
                f"{expected_generation}): another operation won; look with "
                "`flywheel models` and try again"
            )
        self._prune(document.generation)

    def _newest(self) -> int | None:
        return max(self._generations(), default=None)

    def _generations(self) -> list[int]:
        return [g for g in map(_generation, list_names(self._url)) if g is not None]

    def _prune(self, newest: int) -> None:
        """Delete the generations older than the newest ``keep``; a failure only logs."""
        try:
            for generation in sorted(self._generations()):
                if generation > newest - self._keep:
                    break
                remove(join(self._url, _object_name(generation)))
        except StorageError as e:
            _log.warning("old serving documents were not pruned (the next write retries): %s", e)


def _object_name(generation: int) -> str:
    return f"{generation:0{_GENERATION_DIGITS}d}{_SUFFIX}"


def _generation(name: str) -> int | None:
    """The generation an object's name holds; None for anything else in the folder."""
    stem = name.removesuffix(_SUFFIX)
    if name == stem or len(stem) != _GENERATION_DIGITS or not stem.isdigit():
        return None
    return int(stem)


def _atomic_write(path: Path, text: str) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
