"""The Optuna journal of a search, on the storage root, so that it outlives the Ray cluster.

A local root keeps Optuna's own file journal (one append-only file with a lock, which also
works on a shared POSIX filesystem). Object stores have no append and no lock, so an ``s3://``
root gets :class:`ObjectJournalBackend`: one object per log entry, named by its zero-padded log
number, written create-only (S3's ``If-None-Match: *``). Two writers that race for the same
number cannot both win: the loser sees ``FileExistsError`` and takes the next number, so the
journal stays one total order without a lock. Entries are immutable once written, so a reader
fetches only the numbers it has not seen. Why not Optuna's RDB storage: the control plane's
database is not there for every job (a job on a bare Ray cluster, or the database down while a
search runs), and the journal belongs with the checkpoints it refers to (docs/architecture.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from optuna.storages.journal import BaseJournalBackend, JournalFileBackend

from flywheel.storage.objects import create_bytes, list_names, read_many
from flywheel.storage_layout import join, parse_root

#: Digits of an entry's number: names sort in log order.
_NUMBER_DIGITS = 12
_SUFFIX = ".json"


def journal_backend(url: str) -> BaseJournalBackend:
    """The journal at ``url``: a file on a local root, a folder of objects on S3."""
    root = parse_root(url)
    if root.is_s3:
        return ObjectJournalBackend(url)
    os.makedirs(os.path.dirname(root.prefix) or ".", exist_ok=True)
    return JournalFileBackend(root.prefix)


class ObjectJournalBackend(BaseJournalBackend):
    """An Optuna journal kept as one object per log entry in a folder of an object store."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._next = 0  # the lowest log number that might still be free

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        """Every entry numbered ``log_number_from`` or later, in order."""
        numbers = sorted(n for n in map(_number, list_names(self._url)) if n is not None)
        if numbers:
            self._next = max(self._next, numbers[-1] + 1)
        wanted = [_name(n) for n in numbers if n >= log_number_from]
        contents = read_many(self._url, wanted)
        logs = []
        for name in wanted:
            if name not in contents:  # listed, then gone: only a deleted journal does that
                break
            logs.append(json.loads(contents[name]))
        return logs

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Append each log under the next free number (create-only: a lost race moves on)."""
        for log in logs:
            data = json.dumps(log, separators=(",", ":")).encode()
            while not create_bytes(self._entry(self._next), data):
                self._next += 1
            self._next += 1

    def _entry(self, number: int) -> str:
        return join(self._url, _name(number))


def _name(number: int) -> str:
    return f"{number:0{_NUMBER_DIGITS}d}{_SUFFIX}"


def _number(name: str) -> int | None:
    """The log number of an entry's object name; None for anything else in the folder."""
    stem = name.removesuffix(_SUFFIX)
    if name == stem or len(stem) != _NUMBER_DIGITS or not stem.isdigit():
        return None
    return int(stem)
