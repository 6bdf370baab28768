"""The file store of the serving document: compare-and-set on the generation, atomic writes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from flywheel.backends.documents import FileDocumentStore
from flywheel.errors import ServeConflictError
from flywheel.serving import document as changes
from flywheel.serving.document import ServingDocument
from flywheel.specs.serving import ServeSpec


def test_an_empty_store_reads_generation_zero(tmp_path: Path) -> None:
    assert FileDocumentStore(tmp_path / "serving").read() == ServingDocument()


def test_a_write_on_a_stale_generation_is_a_conflict_and_changes_nothing(tmp_path: Path) -> None:
    store = FileDocumentStore(tmp_path)
    first = changes.deploy(store.read(), "m", "1", ServeSpec())
    store.compare_and_set(0, first)
    other = changes.deploy(ServingDocument(), "m", "2", ServeSpec())
    with pytest.raises(ServeConflictError, match="generation 1, expected 0"):
        store.compare_and_set(0, other)
    assert store.read() == first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_of_many_concurrent_writers_on_one_generation_exactly_one_wins(tmp_path: Path) -> None:
    store = FileDocumentStore(tmp_path)
    start = store.read()
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def write(version: str) -> None:
        barrier.wait()
        try:
            store.compare_and_set(
                start.generation, changes.deploy(start, "m", version, ServeSpec())
            )
            outcomes.append(f"won {version}")
        except ServeConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write, args=(str(v),)) for v in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [won] = [o for o in outcomes if o.startswith("won")]
    assert outcomes.count("conflict") == 7
    assert store.read().models["m"].champion == won.split()[1]
