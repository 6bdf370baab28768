"""The client facade, over an in-memory job backend (a real implementation of JobBackend)."""

from pathlib import Path

import pytest

from flywheel.client import Client
from flywheel.errors import JobError, SpecError
from flywheel.jobs import JobInfo
from flywheel.plans import META_BUNDLE, PLAN_PATH, JobPlan
from flywheel.progress import ProgressEvent
from flywheel.settings import Settings

TASK = "def build_model(hparams):\n    pass\n\ndef load_data(hparams):\n    pass\n"
SPEC = "name: digits\nteam: vision\ntask:\n  module: task\n"


class MemoryBackend:
    """Jobs kept in memory; each `get` advances a job along a scripted log."""

    def __init__(self, script: list[tuple[str, str]] | None = None) -> None:
        self.submitted: dict[str, tuple[JobPlan, set[str]]] = {}
        self.script = script or []
        self.calls = 0

    def submit(self, plan: JobPlan, bundle_dir: Path) -> str:
        files = {str(p.relative_to(bundle_dir)) for p in bundle_dir.rglob("*") if p.is_file()}
        self.submitted[plan.job_id] = (plan, files)
        return plan.job_id

    def list(self) -> list[JobInfo]:
        return [self.get(job_id) for job_id in reversed(self.submitted)]  # newest first

    def get(self, job_id: str) -> JobInfo:
        state = "STOPPED"
        if self.script:
            state = self.script[min(self.calls, len(self.script) - 1)][0]
        self.calls += 1
        plan = self.submitted[job_id][0] if job_id in self.submitted else None
        bundle = plan.metadata[META_BUNDLE] if plan else ""
        return JobInfo(job_id, state, "vision", "digits", "", bundle, "", None, None)  # type: ignore[arg-type]

    def logs(self, job_id: str) -> str:
        return self.script[min(self.calls - 1, len(self.script) - 1)][1]

    def stop(self, job_id: str) -> bool:
        return job_id in self.submitted


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "task.py").write_text(TASK)
    (folder / "train.yaml").write_text(SPEC)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "task.cpython-311.pyc").write_bytes(b"")
    return folder / "train.yaml"


def test_submit_bundles_the_folder_with_the_plan(experiment: Path, tmp_path: Path) -> None:
    backend = MemoryBackend()
    client = Client(Settings(home=tmp_path), backend)
    job_id = client.submit(experiment)
    plan, files = backend.submitted[job_id]
    assert files == {"task.py", "train.yaml", str(PLAN_PATH)}
    assert plan.spec.name == "digits" and plan.spec_file == "train.yaml"


def test_invalid_spec_submits_nothing(experiment: Path, tmp_path: Path) -> None:
    experiment.write_text(SPEC + "trian: {}\n")
    backend = MemoryBackend()
    with pytest.raises(SpecError) as caught:
        Client(Settings(home=tmp_path), backend).submit(experiment)
    assert str(caught.value) == f"{experiment}:5: trian: unknown field; did you mean 'train'?"
    assert backend.submitted == {}


def test_missing_task_function_is_reported_at_the_module_line(
    experiment: Path, tmp_path: Path
) -> None:
    (experiment.parent / "task.py").write_text("def build_model(hparams):\n    pass\n")
    with pytest.raises(SpecError) as caught:
        Client(Settings(home=tmp_path), MemoryBackend()).validate(experiment)
    assert (
        str(caught.value)
        == f"{experiment}:4: task.module: module 'task' does not define load_data(hparams)"
    )


def test_follow_yields_new_lines_and_events_until_the_job_ends(tmp_path: Path) -> None:
    first = ProgressEvent("train", epoch=1, epochs=2).to_line()
    second = ProgressEvent("train", epoch=2, epochs=2).to_line()
    script = [
        ("RUNNING", "hello\npart"),
        ("RUNNING", f"hello\npartial line\n{first}\n{first}\n"),
        ("SUCCEEDED", f"hello\npartial line\n{first}\n{first}\n{second}\nbye"),
    ]
    client = Client(Settings(home=tmp_path), MemoryBackend(script))
    updates = list(client.follow("job", poll_s=0))
    assert [u.job.state for u in updates] == ["RUNNING", "RUNNING", "SUCCEEDED"]
    assert [line for u in updates for line in u.lines] == [
        "hello",
        "partial line",
        first,
        first,
        second,
        "bye",
    ]
    events = [e for u in updates for e in u.events]
    assert [e.epoch for e in events] == [1, 2]  # the repeated line shows once


def test_token_comes_from_settings_before_the_file(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, ray_auth_token="from-settings")  # type: ignore[arg-type]
    assert Client(settings)._ray_token() == "from-settings"
    token_file = Settings(home=tmp_path).ray_auth_token_path
    token_file.parent.mkdir(parents=True)
    token_file.write_text("from-file\n")
    assert Client(Settings(home=tmp_path))._ray_token() == "from-file"


SEARCH = """\
search:
  space:
    train.optimizer.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}
  budget: 4
"""


def test_the_bundle_is_kept_under_the_storage_root(experiment: Path, tmp_path: Path) -> None:
    backend = MemoryBackend()
    job_id = Client(Settings(home=tmp_path), backend).submit(experiment)
    kept = tmp_path / "storage" / "bundles" / job_id
    assert (kept / "task.py").is_file() and (kept / PLAN_PATH).is_file()


def test_resume_resubmits_the_last_bundle_with_resume_on(experiment: Path, tmp_path: Path) -> None:
    experiment.write_text(SPEC + SEARCH)
    backend = MemoryBackend()
    client = Client(Settings(home=tmp_path), backend)
    first = client.submit(experiment)
    experiment.parent.joinpath("task.py").unlink()  # the user's folder is not needed any more

    second = client.resume("digits")

    plan, files = backend.submitted[second]
    assert second != first and plan.resume and plan.spec.search is not None
    assert "task.py" in files
    stored = JobPlan.model_validate_json(
        (tmp_path / "storage/bundles" / second / PLAN_PATH).read_text()
    )
    assert stored == plan


def test_resume_without_a_search_is_refused(experiment: Path, tmp_path: Path) -> None:
    client = Client(Settings(home=tmp_path), MemoryBackend())
    client.submit(experiment)
    with pytest.raises(JobError, match="no search to resume"):
        client.resume("digits")
    with pytest.raises(JobError, match="no search section"):
        client.submit(experiment, resume=True)


def test_resume_of_an_unknown_experiment(tmp_path: Path) -> None:
    with pytest.raises(JobError, match="no job of experiment 'nope'"):
        Client(Settings(home=tmp_path), MemoryBackend()).resume("nope")
