"""The queue driver over the in-memory backend: admission, reconciliation, stop, requeue."""

from __future__ import annotations

import json
import os
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from flywheel.server.db import open_database
from flywheel.server.models import Base
from flywheel.settings import Settings
from flywheel.specs.teams import TeamsSpec

from .helpers import (
    SEARCH,
    SPEC,
    TEAMS,
    ControlPlane,
    MemoryBackend,
    experiment_folder,
    running_plane,
    submit,
)


def _state(control: ControlPlane, experiment: object) -> str:
    body = control.http.get(f"/api/v1/experiments/{experiment}", headers=control.admin).json()
    return str(body["state"])


def _history(control: ControlPlane, experiment: object) -> list[tuple[str, str]]:
    body = control.http.get(f"/api/v1/experiments/{experiment}", headers=control.admin).json()
    return [(t["to_state"], t["reason"]) for t in body["transitions"]]


def test_an_admitted_experiment_runs_to_its_end(control: ControlPlane, tmp_path: Path) -> None:
    experiment = submit(control, experiment_folder(tmp_path), control.vision)["id"]
    control.step()
    job = control.backend.jobs[str(experiment)]
    assert _state(control, experiment) == "ADMITTED"
    plan = json.loads(job.files[".flywheel/plan.json"])
    assert plan["job_id"] == experiment and not plan["resume"] and "task.py" in job.files
    job.state = "RUNNING"
    control.step()
    assert _state(control, experiment) == "RUNNING"
    job.state, job.log = "SUCCEEDED", "hello\nbye\n"
    control.step()
    assert [s for s, _ in _history(control, experiment)] == [
        "QUEUED", "ADMITTED", "RUNNING", "SUCCEEDED"
    ]  # fmt: skip
    logs = control.http.get(f"/api/v1/experiments/{experiment}/logs", headers=control.vision)
    assert logs.text == "hello\nbye\n"
    streamed = control.http.get(
        f"/api/v1/experiments/{experiment}/logs?follow=true", headers=control.vision
    )
    assert streamed.text == "hello\nbye\n"


def test_a_job_the_cluster_forgot_is_requeued_and_resumes(
    control: ControlPlane, tmp_path: Path
) -> None:
    experiment = str(
        submit(control, experiment_folder(tmp_path, SPEC + SEARCH), control.vision)["id"]
    )
    control.step()
    control.backend.jobs[experiment].state = "RUNNING"
    control.step()
    control.backend.jobs.clear()  # the Ray head died and came back empty
    control.step()
    history = _history(control, experiment)
    assert history[-2][0] == "QUEUED" and "no longer knows job" in history[-2][1]
    assert history[-1] == ("ADMITTED", "admitted to resume")
    assert control.runs.ended == [(experiment, history[-2][1])]  # its MLflow runs end KILLED
    job = control.backend.jobs[f"{experiment}-2"]
    assert json.loads(job.files[".flywheel/plan.json"])["resume"] is True


def test_stopping_a_running_experiment_stops_its_job(control: ControlPlane, tmp_path: Path) -> None:
    experiment = str(submit(control, experiment_folder(tmp_path), control.vision)["id"])
    control.step()
    control.backend.jobs[experiment].state = "RUNNING"
    control.step()
    answer = control.http.post(f"/api/v1/experiments/{experiment}/stop", headers=control.vision)
    assert answer.json()["state"] == "RUNNING"
    control.step()
    assert control.backend.stopped == [experiment]
    control.step()
    reason = f"job {experiment} stopped on request"
    assert _history(control, experiment)[-1] == ("STOPPED", reason)
    assert control.runs.ended == [(experiment, reason)], "runs its trials left RUNNING are ended"


def test_stopping_a_waiting_experiment_is_immediate(control: ControlPlane, tmp_path: Path) -> None:
    experiment = submit(control, experiment_folder(tmp_path), control.vision)["id"]
    answer = control.http.post(f"/api/v1/experiments/{experiment}/stop", headers=control.vision)
    assert answer.json()["state"] == "STOPPED"
    control.step()
    assert control.backend.jobs == {}


def test_a_failed_job_fails_the_experiment(control: ControlPlane, tmp_path: Path) -> None:
    experiment = str(submit(control, experiment_folder(tmp_path), control.vision)["id"])
    control.step()
    control.backend.jobs[experiment].state = "FAILED"
    control.step()
    assert _state(control, experiment) == "FAILED"
    assert control.runs.ended == [(experiment, f"job {experiment} failed")]


def test_the_queue_survives_a_restart(tmp_path: Path) -> None:
    """A second app on the same database sees the queue as the first left it."""
    settings = Settings(home=tmp_path / "home")
    backend = MemoryBackend(capacity_cpu=0.5)  # nothing fits: everything waits
    with running_plane(settings, TEAMS, backend) as plane:
        first = submit(plane, experiment_folder(tmp_path), plane.vision)["id"]
        plane.step()
    with running_plane(settings, TEAMS, backend) as plane:
        listed = plane.http.get("/api/v1/experiments", headers=plane.admin).json()
    assert [(e["id"], e["state"]) for e in listed] == [(first, "QUEUED")]


def test_a_team_taken_out_of_the_teams_file_keeps_its_rows(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    backend = MemoryBackend(capacity_cpu=0.5)
    with running_plane(settings, TEAMS, backend) as plane:
        folder = experiment_folder(tmp_path, SPEC.replace("vision", "language"))
        waiting = submit(plane, folder, plane.language)["id"]
    only_vision = TeamsSpec.model_validate({"teams": [TEAMS.teams[0].model_dump()]})
    with running_plane(settings, only_vision, MemoryBackend()) as plane:
        plane.step()  # admits nothing of language, and does not fail on it
        listed = plane.http.get("/api/v1/experiments", headers=plane.admin).json()
        queue = plane.http.get("/api/v1/queue", headers=plane.admin).json()
    assert [(e["id"], e["state"]) for e in listed] == [(waiting, "QUEUED")]
    assert queue["waiting"] == [] and [t["name"] for t in queue["teams"]] == ["vision"]


def test_a_higher_priority_is_admitted_first(tmp_path: Path) -> None:
    """vision (low) queued first, language (high) later: language runs first when room frees."""
    teams = TeamsSpec.model_validate(
        {"teams": [{"name": "vision", "priority": "low", "quota": {"cpu": 1}},
                   {"name": "language", "priority": "high", "quota": {"cpu": 1}}]}
    )  # fmt: skip
    backend = MemoryBackend(capacity_cpu=1.0)
    with running_plane(Settings(home=tmp_path / "home"), teams, backend) as plane:
        holder = str(submit(plane, experiment_folder(tmp_path / "a"), plane.vision)["id"])
        plane.step()
        low = str(submit(plane, experiment_folder(tmp_path / "b"), plane.vision)["id"])
        language = experiment_folder(tmp_path / "c", SPEC.replace("vision", "language"))
        high = str(submit(plane, language, plane.language)["id"])
        plane.step()
        assert (_state(plane, low), _state(plane, high)) == ("QUEUED", "QUEUED")
        backend.jobs[holder].state = "SUCCEEDED"
        plane.step()
        assert (_state(plane, low), _state(plane, high)) == ("QUEUED", "ADMITTED")


def test_migrations_build_the_schema_of_the_models(tmp_path: Path) -> None:
    sessions = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with sessions() as session:
        context = MigrationContext.configure(session.connection())
        assert compare_metadata(context, Base.metadata) == []


def test_an_owner_preempts_borrowed_work_which_resumes_later(
    control: ControlPlane, tmp_path: Path
) -> None:
    """language fills its quota and borrows vision's idle one; vision's submission takes it back:
    the borrower drains, waits as PREEMPTED, and resumes its search when room comes back."""
    spec = SPEC.replace("team: vision", "team: language") + SEARCH
    own = str(submit(control, experiment_folder(tmp_path / "a", spec), control.language)["id"])
    borrowed = str(submit(control, experiment_folder(tmp_path / "b", spec), control.language)["id"])
    control.step()
    assert {_state(control, own), _state(control, borrowed)} == {"ADMITTED"}
    owner = str(submit(control, experiment_folder(tmp_path / "c"), control.vision)["id"])

    control.step()  # the owner's quota is lent: drain the borrower
    assert _state(control, borrowed) == "PREEMPTING" and _state(control, owner) == "QUEUED"
    assert control.backend.stopped == [borrowed]
    control.step()  # the drained job has stopped: its resources are free
    assert _state(control, borrowed) == "PREEMPTED" and _state(control, owner) == "ADMITTED"
    assert [job for job, _ in control.runs.ended] == [borrowed]
    explained = control.http.get(
        f"/api/v1/experiments/{borrowed}/explain", headers=control.language
    ).json()
    assert explained["waiting"] and explained["holders"]
    # The holder is vision's: language is told which team holds it, never which experiment.
    assert owner not in json.dumps(explained) and "team vision" in explained["holders"]
    queued = control.http.get("/api/v1/queue", headers=control.language).json()
    assert owner not in json.dumps(queued) and queued["waiting"]
    admin = control.http.get(f"/api/v1/experiments/{borrowed}/explain", headers=control.admin)
    assert owner in admin.json()["holders"]

    control.backend.jobs[owner].state = "SUCCEEDED"
    control.step()
    history = [state for state, _ in _history(control, borrowed)]
    assert history == ["QUEUED", "ADMITTED", "PREEMPTING", "PREEMPTED", "ADMITTED"]
    resumed = control.backend.jobs[f"{borrowed}-2"]
    assert json.loads(resumed.files[".flywheel/plan.json"])["resume"] is True
    usage = control.http.get("/api/v1/teams/language", headers=control.language).json()
    assert usage["gpu_minutes_lost"] == 0.0  # CPU work only: no GPU-minutes lost


def test_queue_teams_and_explain_say_why_work_waits(control: ControlPlane, tmp_path: Path) -> None:
    control.backend.capacity_cpu = 1.0  # room for one experiment of one worker
    first = str(submit(control, experiment_folder(tmp_path / "a"), control.vision)["id"])
    second = str(submit(control, experiment_folder(tmp_path / "b"), control.vision)["id"])
    control.step()

    queue = control.http.get("/api/v1/queue", headers=control.vision).json()
    [entry] = queue["waiting"]
    assert entry["experiment"] == second and entry["position"] == 1
    assert first in entry["holders"] and entry["reason"]
    assert control.http.get("/api/v1/queue", headers=control.language).json()["waiting"] == []
    [usage] = control.http.get("/api/v1/teams", headers=control.vision).json()
    assert usage["name"] == "vision" and usage["usage"]["cpu"] == 1.0
    assert (usage["admitted"], usage["queued"]) == (1, 1)
    explained = control.http.get(f"/api/v1/experiments/{second}/explain", headers=control.vision)
    body = explained.json()
    assert body["waiting"] and body["position"] == 1 and first in body["holders"]
    assert body["reason"] == entry["reason"]
    done = control.http.get(f"/api/v1/experiments/{first}/explain", headers=control.vision)
    assert done.json()["waiting"] is False


def test_a_running_experiment_s_last_save_is_read_from_its_checkpoints(
    control: ControlPlane, tmp_path: Path
) -> None:
    """The newest file under the experiment's checkpoints (or search state) is its last save:
    what a preemption would lose is counted from there."""
    experiment = str(submit(control, experiment_folder(tmp_path / "a"), control.vision)["id"])
    control.step()
    control.backend.jobs[experiment].state = "RUNNING"
    saved = Path(control.settings.storage_root) / "checkpoints" / "vision" / "digits" / "run"
    saved.mkdir(parents=True)
    (saved / "checkpoint_000003.pt").write_bytes(b"state")
    os.utime(saved / "checkpoint_000003.pt", (1.7e9, 1.7e9))
    before = control.http.get(f"/api/v1/experiments/{experiment}", headers=control.vision)

    control.step()

    view = control.http.get(f"/api/v1/experiments/{experiment}", headers=control.vision).json()
    assert before.json()["last_save_s"] is None
    assert view["state"] == "RUNNING" and view["last_save_s"] == 1.7e9
