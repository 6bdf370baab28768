"""The Optuna journal on the storage root: Optuna's file journal locally, one object per entry
on S3 (create-only, so racing writers keep one order)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from flywheel.storage import join, list_names, read_bytes, write_text
from flywheel.storage.journal import ObjectJournalBackend, journal_backend

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_a_local_root_gets_optunas_file_journal(tmp_path: Path) -> None:
    backend = journal_backend(str(tmp_path / "search" / "t" / "e" / "journal.log"))
    assert isinstance(backend, JournalFileBackend)


def test_an_s3_root_gets_the_object_journal(s3_bucket: str) -> None:
    assert isinstance(journal_backend(f"s3://{s3_bucket}/j"), ObjectJournalBackend)


def test_a_study_survives_in_the_object_journal(root: str) -> None:
    url = join(root, "journal")
    study = optuna.create_study(
        study_name="s", storage=JournalStorage(ObjectJournalBackend(url)), direction="minimize"
    )
    study.set_user_attr("flywheel.experiment", "t/e")
    for x in (3.0, 1.0, 2.0):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 5)})
        study.tell(trial, x)
    running = study.ask()  # left running, as a job that died would leave it

    again = optuna.load_study(study_name="s", storage=JournalStorage(ObjectJournalBackend(url)))

    assert [t.value for t in again.trials[:3]] == [3.0, 1.0, 2.0]
    assert again.best_value == 1.0
    assert again.trials[running.number].state == TrialState.RUNNING
    assert again.user_attrs == {"flywheel.experiment": "t/e"}
    names = list_names(url)
    assert names == [f"{n:012d}.json" for n in range(len(names))], "one object per entry, no gap"


def test_racing_writers_keep_one_order_and_lose_nothing(root: str) -> None:
    url = join(root, "journal")
    first, second = ObjectJournalBackend(url), ObjectJournalBackend(url)
    first.append_logs([{"op": "a"}])
    second.append_logs([{"op": "b"}])  # has not read: it races for entry 0 and loses
    first.append_logs([{"op": "c"}, {"op": "d"}])
    assert list(ObjectJournalBackend(url).read_logs(0)) == [
        {"op": "a"}, {"op": "b"}, {"op": "c"}, {"op": "d"},
    ]  # fmt: skip
    assert list(first.read_logs(2)) == [{"op": "c"}, {"op": "d"}]


def test_other_objects_in_the_folder_are_ignored(root: str) -> None:
    url = join(root, "journal")
    backend = ObjectJournalBackend(url)
    backend.append_logs([{"op": "a"}])
    write_text(join(url, "notes.txt"), "not an entry")
    assert list(backend.read_logs(0)) == [{"op": "a"}]
    assert read_bytes(join(url, "000000000000.json")) == b'{"op":"a"}'


@pytest.mark.parametrize("count", [0, 1])
def test_reading_past_the_end_gives_nothing(root: str, count: int) -> None:
    backend = ObjectJournalBackend(join(root, "journal"))
    backend.append_logs([{"n": i} for i in range(count)])
    assert list(backend.read_logs(count)) == []
