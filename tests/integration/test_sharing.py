"""Two teams share one real Ray cluster through the control plane: a borrower's search is
preempted when the owner wants its quota back, then loses its SIGKILLed Ray head, and resumes
each time without rerunning a finished trial.

The module's platform is its own (teams sized to this 2-CPU cluster; the test kills its Ray
head): about 30 s to start. The test takes about 4 minutes on 2 cores.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from flywheel.client import Client
from flywheel.errors import PortInUseError
from flywheel.local import EmbeddedPlatform
from flywheel.settings import Settings

from .helpers import (
    EXPERIMENTS,
    copy_experiment,
    finished_trials,
    mlflow_admin,
    run_of_job,
    search_spec,
    team_settings,
    wait_for_state,
)

pytestmark = pytest.mark.integration

#: ``owner`` lends its CPU while idle; ``borrower`` may borrow one. The cluster has 2 CPUs.
TEAMS = """\
teams:
  - {name: owner, quota: {cpu: 1, memory_gib: 8}}
  - {name: borrower, quota: {cpu: 1, memory_gib: 8}, borrowing_limit: {cpu: 1, memory_gib: 8}}
"""

#: The owner's own work, which takes its lent CPU back: one short training on one worker.
MINE = """\
name: mine
team: owner
task: {module: task}
train: {epochs: 1, batch_size: 64, scaling: {num_workers: 1}}
hparams: {sleep_s: 0.05}
checks: {baseline: false, overfit_one_batch: {enabled: false}}
tracking: {register_model: false}
"""


@pytest.fixture(scope="module")
def shared(free_port_settings: Callable[..., Settings]) -> Iterator[Settings]:
    """A platform of two teams on this machine's 2 CPUs; stopped after."""
    home = Path(tempfile.mkdtemp(prefix="fw-share-"))
    (home / "teams.yaml").write_text(TEAMS)
    settings = free_port_settings(home, ray_num_cpus=2)
    platform = EmbeddedPlatform(settings)
    try:
        platform.up()
        with mlflow_admin(settings):  # this platform's own MLflow admin, not the session's
            yield settings
    finally:
        platform.down()
        shutil.rmtree(home, ignore_errors=True)


def study_trials(settings: Settings, team: str, name: str, study: str) -> dict[int, object]:
    """The finished trials of a search of this platform (its journal on the local root)."""
    path = Path(settings.storage_root) / f"search/{team}/{name}/journal.log"
    return finished_trials(JournalStorage(JournalFileBackend(str(path))), study)


def wait_for_trials(settings: Settings, team: str, name: str, study: str, count: int) -> None:
    deadline = time.monotonic() + 240
    while True:
        try:
            if len(study_trials(settings, team, name, study)) >= count:
                return
        except (KeyError, FileNotFoundError, ValueError):
            pass  # the journal or the study is not written yet
        assert time.monotonic() < deadline, f"{count} trials of {name} did not finish"
        time.sleep(0.5)


def assert_no_run_left_running(settings: Settings, job_id: str) -> None:
    parent = run_of_job(settings.tracking_uri, job_id)
    runs = MlflowClient(settings.tracking_uri).search_runs([parent.info.experiment_id])
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]


@pytest.mark.timeout(900)
def test_a_borrower_outlives_preemption_and_a_killed_ray_head_without_rerunning_a_trial(
    shared: Settings, tmp_path: Path
) -> None:
    """One search lives through both: the owner takes its quota back (the search drains and
    waits), then, once it runs again, its Ray head is SIGKILLed and started again."""
    borrower = Client(team_settings(shared, "borrower"))
    owner = Client(team_settings(shared, "owner"))
    text = search_spec("wide", 6, "borrower", concurrent=2)
    wide = borrower.submit(copy_experiment(EXPERIMENTS / "slow_digits", tmp_path / "wide", text))
    study = f"{wide}:coarse"
    wait_for_state(borrower, wide, {"RUNNING"})
    assert borrower.teams()[0].usage.cpu == 2, "the borrower runs on its quota and a loan"
    wait_for_trials(shared, "borrower", "wide", study, 1)

    mine = owner.submit(copy_experiment(EXPERIMENTS / "slow_digits", tmp_path / "mine", MINE))

    assert wait_for_state(borrower, wide, {"PREEMPTED"}) == "PREEMPTED"
    preempted = study_trials(shared, "borrower", "wide", study)
    assert 1 <= len(preempted) < 6
    assert_no_run_left_running(shared, wide)
    assert wait_for_state(owner, mine, {"SUCCEEDED", "FAILED"}) == "SUCCEEDED"
    wait_for_state(borrower, wide, {"RUNNING"})
    wait_for_trials(shared, "borrower", "wide", study, len(preempted) + 1)

    kill_ray_head(shared)
    headless = study_trials(shared, "borrower", "wide", study)
    start_again(shared)  # starts Ray again; MLflow and the control plane kept running

    final = wait_for_state(borrower, wide, {"SUCCEEDED", "FAILED"})
    assert final == "SUCCEEDED", [(t.to_state, t.reason) for t in borrower.job(wide).transitions]
    finished = study_trials(shared, "borrower", "wide", study)
    assert len(finished) == 6, "the stage's budget is met exactly"
    assert preempted.items() <= headless.items() <= finished.items(), "no finished trial reran"
    transitions = borrower.job(wide).transitions
    assert [t.to_state for t in transitions] == [
        "QUEUED", "ADMITTED", "RUNNING", "PREEMPTING", "PREEMPTED", "ADMITTED", "RUNNING",
        "QUEUED", "ADMITTED", "RUNNING", "SUCCEEDED",
    ]  # fmt: skip
    assert "no longer knows" in transitions[7].reason
    trials = MlflowClient(shared.tracking_uri).search_runs(
        [run_of_job(shared.tracking_uri, wide).info.experiment_id],
        filter_string="tags.`flywheel.stage` = 'coarse' and attributes.status = 'FINISHED'",
    )
    assert len(trials) == 6, "each finished trial has one finished run: none ran twice"
    assert_no_run_left_running(shared, wide)


def kill_ray_head(settings: Settings) -> None:
    """SIGKILL every process of the platform's Ray: the session of `ray start`, then, until none
    is left, every process that names the head's temp folder in its command line (raylet's
    agents and the workers)."""
    os.killpg(int((settings.home / "run" / "ray.pid").read_text()), signal.SIGKILL)
    temp = str(settings.resolved_ray_temp_dir.expanduser().absolute())
    deadline = time.monotonic() + 30
    while pids := [p for p in _pids_naming(temp) if p != os.getpid()]:
        assert time.monotonic() < deadline, f"Ray processes {pids} outlived SIGKILL"
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


def _pids_naming(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().decode(errors="replace")
                state = (entry / "stat").read_text().split(") ")[-1][:1]
            except OSError:
                continue  # gone meanwhile
            if text in command and state != "Z":
                pids.append(int(entry.name))
    return pids


def start_again(settings: Settings) -> None:
    """`flywheel up` as an operator runs it after the crash, again while a port the killed
    processes held is not free yet."""
    deadline = time.monotonic() + 60
    while True:
        try:
            EmbeddedPlatform(settings).up()
            return
        except PortInUseError:
            assert time.monotonic() < deadline, "the killed Ray's ports stayed taken"
            time.sleep(1)
