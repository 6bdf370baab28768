"""On Kubernetes the control plane serves what a succeeded job registered: the job's RayJob
cluster is not the cluster that serves, so its plan carries no serving target.

The control plane here is the real app on SQLite over the in-memory experiment backend; serving
is the real kubernetes serving plane over :class:`KubeRayPlayer` (see
test_serving_on_kubernetes.py) with its document in a bucket of moto's S3 server; the registry
is a real MLflow on SQLite, where the test plays the job's driver: a run tagged with the job's
id registers a version.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from flywheel.backends.documents import document_store
from flywheel.server.__main__ import serving_plane
from flywheel.server.app import create_app
from flywheel.server.serve_finished import ServeFinished, progressive_models
from flywheel.settings import Settings
from flywheel.tracking import TAG_JOB_ID

from .helpers import SPEC, TEAMS, MemoryBackend, bearer, experiment_folder, submit
from .test_serving_on_kubernetes import KubeRayPlayer

SERVED = SPEC + "tracking: {registered_model: digits}\nserve: {rollout: {mode: canary}}\n"


class Plane:
    def __init__(
        self, settings: Settings, api: KubeRayPlayer, http: TestClient, backend: MemoryBackend
    ) -> None:
        self.settings, self.api, self.http, self.backend = settings, api, http, backend
        admin = bearer(settings.admin_token_path.read_text().strip())
        token = http.post("/api/v1/teams/vision/tokens", headers=admin).json()["token"]
        self.vision = bearer(token)
        self.admin = admin

    def step(self) -> None:
        self.http.app.state.driver.step()  # type: ignore[attr-defined]

    def experiment(self, experiment_id: str) -> dict[str, object]:
        body: dict[str, object] = self.http.get(
            f"/api/v1/experiments/{experiment_id}", headers=self.admin
        ).json()
        return body


@pytest.fixture
def plane(tmp_path: Path, s3_bucket: str) -> Iterator[Plane]:
    registry = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = Settings(
        home=tmp_path / "home", backend="kubernetes", storage_root=f"s3://{s3_bucket}/fw",
        mlflow_tracking_uri=registry,
    )  # fmt: skip
    api = KubeRayPlayer()
    serving = serving_plane(settings, kube_api=api)
    backend = MemoryBackend()
    app = create_app(settings, TEAMS, backend, run_queue=False, serving=serving)
    with TestClient(app) as http:
        yield Plane(settings, api, http, backend)


def register_as_job(tracking_uri: str, job_id: str, source: Path) -> str:
    """What the job's driver does: a run tagged with the job's id registers a version."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("vision/digits")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("vision/digits")
    )
    run = client.create_run(experiment_id, tags={TAG_JOB_ID: job_id})
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models("name = 'digits'"):
        client.create_registered_model("digits")
    version = client.create_model_version("digits", str(source), run_id=run.info.run_id)
    return str(version.version)


def run_to_success(plane: Plane, experiment_id: str) -> None:
    plane.step()
    job = plane.backend.jobs[experiment_id]
    job.state = "SUCCEEDED"
    plane.step()


def test_a_succeeded_job_s_version_is_served_then_rolled_out_by_the_control_plane(
    plane: Plane, tmp_path: Path
) -> None:
    folder = experiment_folder(tmp_path, SERVED)
    first = str(submit_as(plane, folder)["id"])
    plane.step()
    plan = json.loads(plane.backend.jobs[first].files[".flywheel/plan.json"])
    assert plan["serve_target"] is None, "the job must leave serving to the control plane"
    assert register_as_job(plane.settings.tracking_uri, first, tmp_path) == "1"
    plane.backend.jobs[first].state = "SUCCEEDED"
    plane.step()

    assert plane.experiment(first)["state"] == "SUCCEEDED"
    reason = plane.experiment(first)["transitions"][-1]["reason"]  # type: ignore[index]
    assert reason.endswith("digits version 1 serves as champion"), reason
    store = document_store(str(plane.settings.storage_root))
    assert store.read().models["digits"].champion == "1"
    assert list(plane.api.rayservices) == [("flywheel", "flywheel-serving")]
    generation = store.read().generation

    second = str(submit_as(plane, folder)["id"])
    plane.step()
    assert register_as_job(plane.settings.tracking_uri, second, tmp_path) == "2"
    plane.backend.jobs[second].state = "SUCCEEDED"
    plane.step()

    served = store.read().models["digits"]
    assert (served.champion, served.challenger and served.challenger.version) == ("1", "2")
    reason = plane.experiment(second)["transitions"][-1]["reason"]  # type: ignore[index]
    assert reason.endswith("digits version 2 serves as challenger"), reason
    assert store.read().generation == generation + 1
    plane.step()  # nothing served twice
    assert store.read().generation == generation + 1


def test_a_job_that_registered_nothing_succeeds_and_says_so(plane: Plane, tmp_path: Path) -> None:
    experiment = str(submit_as(plane, experiment_folder(tmp_path, SERVED))["id"])
    run_to_success(plane, experiment)
    assert plane.experiment(experiment)["state"] == "SUCCEEDED"
    reason = plane.experiment(experiment)["transitions"][-1]["reason"]  # type: ignore[index]
    assert reason.endswith("it registered no version of digits; nothing was served"), reason
    assert document_store(str(plane.settings.storage_root)).read().models == {}


def test_a_registry_that_does_not_answer_keeps_the_experiment_running_until_it_does(
    plane: Plane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once, not in minutes
    experiment = str(submit_as(plane, experiment_folder(tmp_path, SERVED))["id"])
    plane.step()
    register_as_job(plane.settings.tracking_uri, experiment, tmp_path)
    driver = plane.http.app.state.driver  # type: ignore[attr-defined]
    finished: ServeFinished = driver._serve_finished
    driver._serve_finished = ServeFinished("http://127.0.0.1:9", finished.operations)
    plane.backend.jobs[experiment].state = "SUCCEEDED"
    plane.step()
    assert plane.experiment(experiment)["state"] == "ADMITTED"  # not recorded yet
    driver._serve_finished = finished
    plane.step()
    assert plane.experiment(experiment)["state"] == "SUCCEEDED"
    assert document_store(str(plane.settings.storage_root)).read().models["digits"].champion == "1"


def submit_as(plane: Plane, folder: Path) -> dict[str, object]:
    class Control:  # what helpers.submit needs of a control plane
        http = plane.http

    return submit(Control(), folder, plane.vision)  # type: ignore[arg-type]


def test_on_kubernetes_the_control_plane_drives_progressive_rollouts(
    plane: Plane, tmp_path: Path
) -> None:
    client = MlflowClient(plane.settings.tracking_uri)
    client.create_registered_model("digits")
    for _ in range(2):
        client.create_model_version("digits", str(tmp_path))
    operations = plane.http.app.state.context.serving.operations  # type: ignore[attr-defined]
    rollouts = plane.http.app.state.rollouts  # type: ignore[attr-defined]
    assert rollouts is not None, "on Kubernetes the control plane drives progressive rollouts"
    operations.deploy("digits", version="1")
    assert progressive_models(operations)() == []
    operations.rollout("digits", "2", "progressive")
    assert progressive_models(operations)() == ["digits"]
    # Judging a step reads the live traffic's statistics from the serve Service, which does
    # not exist here: the loop got as far as asking it for this model's rollout.
    failed = rollouts.step()
    assert list(failed) == ["digits"] and "serving statistics" in failed["digits"], failed
