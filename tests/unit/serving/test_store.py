"""The stores of the serving document: compare-and-set on the generation, atomic writes; one
file on a local root, one object per generation on S3 (moto's server)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from flywheel.backends.documents import FileDocumentStore, ObjectDocumentStore, document_store
from flywheel.errors import ServeConflictError
from flywheel.serving import document as changes
from flywheel.serving.document import ServingDocument
from flywheel.specs.serving import ServeSpec
from flywheel.storage.objects import list_names


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


@pytest.mark.parametrize("kind", ["file", "objects"])
def test_of_many_concurrent_writers_on_one_generation_exactly_one_wins(
    tmp_path: Path, kind: str
) -> None:
    store = FileDocumentStore(tmp_path) if kind == "file" else ObjectDocumentStore(str(tmp_path))
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


@pytest.fixture(params=["local", "s3"])
def object_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A storage root for ObjectDocumentStore: a local folder, or a bucket of moto's S3."""
    if request.param == "local":
        return str(tmp_path / "root")
    return f"s3://{request.getfixturevalue('s3_bucket')}/fw"


def test_an_s3_root_keeps_one_object_per_generation_and_reads_the_newest(s3_bucket: str) -> None:
    store = document_store(f"s3://{s3_bucket}/fw")
    assert isinstance(store, ObjectDocumentStore) and store.read() == ServingDocument()
    first = changes.deploy(store.read(), "m", "1", ServeSpec())
    store.compare_and_set(0, first)
    second = changes.deploy(first, "m", "2", ServeSpec())
    store.compare_and_set(1, second)
    assert store.read() == second
    names = list_names(f"s3://{s3_bucket}/fw/serving/documents")
    assert names == ["000000000001.json", "000000000002.json"]
    assert isinstance(document_store(str(Path("/tmp"))), FileDocumentStore)


def test_object_store_writers_on_one_generation_conflict_and_change_nothing(
    object_root: str,
) -> None:
    store = ObjectDocumentStore(object_root)
    first = changes.deploy(store.read(), "m", "1", ServeSpec())
    store.compare_and_set(0, first)
    other = changes.deploy(ServingDocument(), "m", "2", ServeSpec())
    with pytest.raises(ServeConflictError, match="past generation 0"):
        store.compare_and_set(0, other)
    assert store.read() == first


def test_an_object_store_keeps_the_newest_generations_and_prunes_the_rest(
    object_root: str,
) -> None:
    store = ObjectDocumentStore(object_root, keep=3)
    document = store.read()
    for version in range(1, 6):
        changed = changes.deploy(document, "m", str(version), ServeSpec())
        store.compare_and_set(document.generation, changed)
        document = changed
    assert list_names(object_root) == [f"{g:012d}.json" for g in (3, 4, 5)]
    assert store.read().models["m"].champion == "5"
    stale = changes.deploy(ServingDocument(generation=1), "m", "9", ServeSpec())
    with pytest.raises(ServeConflictError, match="past generation 1"):
        store.compare_and_set(1, stale)  # its generation was pruned: still a conflict
    assert list_names(object_root) == [f"{g:012d}.json" for g in (3, 4, 5)]
    with pytest.raises(ValueError, match="keep at least"):
        ObjectDocumentStore(object_root, keep=0)
