"""The client facade against a real control plane app (FastAPI's TestClient is an httpx.Client)
over the in-memory experiment backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from flywheel.api_client import read_token
from flywheel.client import Client
from flywheel.errors import (
    AuthenticationError,
    JobError,
    JobNotFoundError,
    PermissionDeniedError,
    SpecError,
)
from flywheel.progress import ProgressEvent
from flywheel.settings import Settings

from .helpers import SEARCH, SPEC, TASK, ControlPlane


@pytest.fixture
def database_url() -> None:
    """The database does not matter to the client: SQLite only (overrides the conftest's)."""
    return None


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "task.py").write_text(TASK)
    (folder / "train.yaml").write_text(SPEC)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "task.cpython-311.pyc").write_bytes(b"")
    (folder / "linked.py").symlink_to(folder / "task.py")
    return folder / "train.yaml"


def _client(control: ControlPlane, headers: dict[str, str]) -> Client:
    """A client whose token is set the way FLYWHEEL_TOKEN sets it."""
    token = headers["Authorization"].removeprefix("Bearer ")
    return Client(control.settings.model_copy(update={"token": SecretStr(token)}), control.http)


def test_submit_bundles_the_folder_with_the_plan(control: ControlPlane, experiment: Path) -> None:
    experiment_id = _client(control, control.vision).submit(experiment)
    control.step()
    job = control.backend.jobs[experiment_id]
    assert set(job.files) == {"task.py", "train.yaml", ".flywheel/plan.json"}
    assert job.plan.spec.name == "digits" and job.plan.spec_file == "train.yaml"


def test_invalid_spec_submits_nothing(control: ControlPlane, experiment: Path) -> None:
    experiment.write_text(SPEC + "trian: {}\n")
    client = _client(control, control.vision)
    with pytest.raises(SpecError) as caught:
        client.submit(experiment)
    assert str(caught.value) == f"{experiment}:5: trian: unknown field; did you mean 'train'?"
    assert client.jobs() == []


def test_missing_task_function_is_reported_at_the_module_line(tmp_path: Path) -> None:
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "train.yaml").write_text(SPEC)
    (folder / "task.py").write_text("def build_model(hparams):\n    pass\n")
    with pytest.raises(SpecError) as caught:
        Client(Settings(home=tmp_path)).validate(folder / "train.yaml")
    assert str(caught.value) == (
        f"{folder / 'train.yaml'}:4: task.module: module 'task' does not define load_data(hparams)"
    )


def test_errors_come_back_as_flywheel_errors(control: ControlPlane, experiment: Path) -> None:
    experiment_id = _client(control, control.vision).submit(experiment)
    with pytest.raises(PermissionDeniedError, match="belongs to team 'vision'"):
        _client(control, control.language).job(experiment_id)
    with pytest.raises(JobNotFoundError, match="no job with id 'nope'"):
        _client(control, control.language).job("nope")
    with pytest.raises(AuthenticationError, match="unknown token"):
        _client(control, {"Authorization": "Bearer fw_wrong"}).jobs()


def test_follow_streams_lines_and_events_until_the_end(
    control: ControlPlane, experiment: Path
) -> None:
    client = _client(control, control.vision)
    experiment_id = client.submit(experiment)
    control.step()
    first = ProgressEvent("train", epoch=1, epochs=2).to_line()
    second = ProgressEvent("train", epoch=2, epochs=2).to_line()
    job = control.backend.jobs[experiment_id]
    job.state, job.log = "SUCCEEDED", f"hello\n{first}\n{first}\n{second}\nbye"
    control.step()
    updates = list(client.follow(experiment_id))
    assert [line for u in updates for line in u.lines] == ["hello", first, first, second, "bye"]
    assert [e.epoch for u in updates for e in u.events] == [1, 2]  # the repeat shows once
    assert updates[-1].job.state == "SUCCEEDED"


def test_token_comes_from_the_setting_then_the_files(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, token="fw_from-env")  # type: ignore[arg-type]
    assert read_token(settings) == "fw_from-env"
    token_file = tmp_path / "team-token"
    token_file.write_text("fw_from-file\n")
    assert read_token(Settings(home=tmp_path, token_file=token_file)) == "fw_from-file"
    admin = Settings(home=tmp_path).admin_token_path
    admin.parent.mkdir(parents=True)
    admin.write_text("fw_admin\n")
    assert read_token(Settings(home=tmp_path)) == "fw_admin"


def test_resume_queues_the_last_bundle_with_resume_on(
    control: ControlPlane, experiment: Path
) -> None:
    experiment.write_text(SPEC + SEARCH)
    client = _client(control, control.vision)
    first = client.submit(experiment)
    client.stop(first)
    experiment.parent.joinpath("task.py").unlink()  # the user's folder is not needed any more

    second = client.resume("digits")
    control.step()

    job = control.backend.jobs[second]
    assert second != first and job.plan.resume and "task.py" in job.files
    assert json.loads(job.files[".flywheel/plan.json"])["resume"] is True


def test_resume_without_a_search_is_refused(control: ControlPlane, experiment: Path) -> None:
    client = _client(control, control.vision)
    client.stop(client.submit(experiment))
    with pytest.raises(JobError, match="no search to resume"):
        client.resume("digits")
    with pytest.raises(JobError, match="no search section"):
        client.submit(experiment, resume=True)


def test_resume_of_an_unknown_experiment(control: ControlPlane) -> None:
    with pytest.raises(JobError, match="has no experiment 'nope'"):
        _client(control, control.vision).resume("nope")


def test_follow_waits_for_the_job_to_run_before_streaming(
    control: ControlPlane, experiment: Path
) -> None:
    client = _client(control, control.vision)
    experiment_id = client.submit(experiment)
    control.step()  # admitted: its Ray job may not exist yet
    updates = client.follow(experiment_id, poll_s=0)
    waiting = next(updates)
    assert (waiting.job.state, waiting.lines) == ("ADMITTED", ())
    job = control.backend.jobs[experiment_id]
    job.state, job.log = "RUNNING", "started\n"
    control.step()
    assert next(updates).lines == ("started",)
    job.state = "SUCCEEDED"
    control.step()
    rest = list(updates)
    assert rest[-1].job.state == "SUCCEEDED" and all(u.lines == () for u in rest)
