"""Where the serving document lives, behind a compare-and-set protocol.

:class:`FileDocumentStore` keeps it in one JSON file: writes happen under an exclusive lock and
replace the file atomically (write a temporary file, then rename), so a reader never sees half
a document and a crash loses nothing. The control plane will keep it in its database instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout

from flywheel.errors import ServeConflictError, ServeError
from flywheel.serving.document import ServingDocument

_LOCK_TIMEOUT_S = 30.0


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
