"""`flywheel retrain` behind the control plane: the fed-back requests become a feedback set, and a
retraining experiment is queued from the stored spec and bundle of the one that registered the
model. Refusals change nothing.

A real control plane (SQLite) over FastAPI's TestClient, a real MLflow registry on SQLite, the
request log written by its real writer under the storage root.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from pydantic import SecretStr

from flywheel.client import Client
from flywheel.errors import FlywheelError, JobError, ServeInputError
from flywheel.feedback_sets import read_feedback_set
from flywheel.plans import JobPlan
from flywheel.request_log import LoggedFeedback, LoggedRequest, RequestLogWriter
from flywheel.server.app import create_app
from flywheel.settings import Settings
from flywheel.tracking import TAG_JOB_ID, TAG_TEAM, model_team

from .helpers import (
    SPEC,
    TEAMS,
    MemoryBackend,
    bearer,
    experiment_folder,
    folder_tar_gz,
    team_tokens,
)
from .serving_helpers import serving_plane, stats_server

MODEL = "digits-fw"


@dataclasses.dataclass
class Plane:
    http: TestClient
    settings: Settings
    uri: str
    tokens: dict[str, str]

    def client(self, team: str | None) -> Client:
        token = self.tokens[team] if team else self.settings.admin_token_path.read_text().strip()
        return Client(self.settings.model_copy(update={"token": SecretStr(token)}), http=self.http)

    def submit(self, team: str, spec: str = SPEC) -> str:
        folder = experiment_folder(self.settings.home.parent / f"exp-{team}", spec)
        response = self.http.post(
            "/api/v1/experiments", headers=bearer(self.tokens[team]),
            data={"spec_file": "train.yaml"},
            files={"bundle": ("bundle.tar.gz", folder_tar_gz(folder), "application/gzip")},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def register(self, model: str, team: str, job_id: str | None) -> None:
        """One version of ``model``, from a run of ``team`` tagged with ``job_id``."""
        client = MlflowClient(self.uri)
        experiment = client.create_experiment(f"runs-of-{model}")
        tags = {TAG_TEAM: team, **({TAG_JOB_ID: job_id} if job_id else {})}
        run = client.create_run(experiment, tags=tags)
        client.create_registered_model(model)
        client.create_model_version(model, source=str(self.settings.home), run_id=run.info.run_id)

    def experiments(self) -> list[dict[str, object]]:
        admin = bearer(self.settings.admin_token_path.read_text().strip())
        listed: list[dict[str, object]] = self.http.get("/api/v1/experiments", headers=admin).json()
        return listed


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # the serving plane's registry too
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=uri)
    with stats_server() as port:
        serving = dataclasses.replace(
            serving_plane(tmp_path, port), owner=functools.partial(model_team, uri)
        )
        app = create_app(settings, TEAMS, MemoryBackend(), run_queue=False, serving=serving)
        with TestClient(app) as http:
            yield Plane(http, settings, uri, team_tokens(http, settings, TEAMS))


def log_traffic(settings: Settings, model: str, fed_back: dict[str, tuple[int, int]]) -> None:
    """One logged request per id (prediction, label): feedback for each, plus one request
    without feedback and one feedback record without a logged request."""
    log = RequestLogWriter(str(settings.storage_root), 1.0, 24, flush_every_s=3600)
    for i, (request_id, (prediction, label)) in enumerate(fed_back.items()):
        inputs = [float(i), 1.0, 2.0, 3.0]
        log.log_request(LoggedRequest(request_id, model, "1", 1e9 + i, 2.0, True, inputs, [4],
                                      prediction))  # fmt: skip
        log.log_feedback(LoggedFeedback(request_id, model, "1", 1e9 + i + 0.5, label, prediction))
    log.log_request(LoggedRequest("unlabelled", model, "1", 1e9 + 50, 2.0, True, [9.0] * 4, [4], 1))
    log.log_feedback(LoggedFeedback("never-logged", model, "1", 1e9 + 60, 3, 3))
    log.close()


def test_a_retraining_adds_the_fed_back_requests_mistakes_repeated(plane: Plane) -> None:
    job_id = plane.submit("vision")
    plane.register(MODEL, "vision", job_id)
    log_traffic(plane.settings, MODEL, {"a": (3, 8), "b": (1, 1), "c": (8, 3), "d": (2, 2)})

    queued = plane.client("vision").retrain(MODEL)

    feedback = queued.feedback
    assert (feedback.requests, feedback.wrong, feedback.right) == (4, 2, 2)
    assert (feedback.rows, feedback.from_version, feedback.model) == (2 * 3 + 2, "1", MODEL)
    features, labels, request_ids = read_feedback_set(feedback)
    assert sorted(set(request_ids)) == ["a", "b", "c", "d"]
    assert request_ids.count("a") == 3 and request_ids.count("b") == 1
    assert labels.tolist() == [8, 8, 8, 1, 3, 3, 3, 2]
    assert np.array_equal(features[0], [0.0, 1.0, 2.0, 3.0])
    experiment = queued.experiment
    assert (experiment.state, experiment.team, experiment.name) == ("QUEUED", "vision", "digits")
    assert f"retrains {MODEL} version 1" in experiment.transitions[0].reason
    stored = plane.client("vision").job(experiment.id)
    assert stored.id != job_id and stored.state == "QUEUED"


def test_the_queued_plan_carries_the_feedback_set_and_the_source_bundle(plane: Plane) -> None:
    job_id = plane.submit("vision")
    plane.register(MODEL, "vision", job_id)
    log_traffic(plane.settings, MODEL, {"a": (3, 8)})

    queued = plane.client("vision").retrain(MODEL)

    backend_plan = _plan_of(plane, queued.experiment.id)
    assert backend_plan.feedback == queued.feedback
    assert backend_plan.resume is False and backend_plan.spec.name == "digits"
    bundle = Path(backend_plan.metadata["flywheel.bundle"])
    assert (bundle / "task.py").is_file() and (bundle / "train.yaml").read_text() == SPEC


def test_a_second_retraining_while_one_waits_is_refused(plane: Plane) -> None:
    job_id = plane.submit("vision")
    plane.register(MODEL, "vision", job_id)
    log_traffic(plane.settings, MODEL, {"a": (3, 8)})
    plane.client("vision").retrain(MODEL)
    before = len(plane.experiments())

    with pytest.raises(JobError, match=r"retraining .* is QUEUED"):
        plane.client("vision").retrain(MODEL)

    assert len(plane.experiments()) == before


def test_another_teams_model_is_refused_like_an_unknown_one(plane: Plane) -> None:
    job_id = plane.submit("vision")
    plane.register(MODEL, "vision", job_id)
    log_traffic(plane.settings, MODEL, {"a": (3, 8)})

    with pytest.raises(ServeInputError) as theirs:
        plane.client("language").retrain(MODEL)
    with pytest.raises(ServeInputError) as unknown:
        plane.client("language").retrain("no-such-model")

    assert str(theirs.value).replace(MODEL, "X") == str(unknown.value).replace("no-such-model", "X")
    assert len(plane.experiments()) == 1


@pytest.mark.parametrize(
    ("job", "spec", "message"),
    [
        ("none", SPEC, "not registered by an experiment of this control plane"),
        ("unknown", SPEC, "not registered by an experiment of this control plane"),
        ("own", SPEC.replace("module: task\n", "module: task\n  kind: regression\n"),
         "needs class labels"),
        ("own-no-feedback", SPEC, "no feedback on a logged request"),
    ],
    ids=["outside-an-experiment", "unknown-job", "regression", "no-feedback"],
)  # fmt: skip
def test_a_model_that_cannot_be_retrained_gets_a_clear_error_and_nothing_is_queued(
    plane: Plane, job: str, spec: str, message: str
) -> None:
    job_id = plane.submit("vision", spec)
    registered = {"none": None, "unknown": "vision-digits-0000"}.get(job, job_id)
    plane.register(MODEL, "vision", registered)
    if job != "own-no-feedback":
        log_traffic(plane.settings, MODEL, {"a": (3, 8)})

    with pytest.raises(FlywheelError, match=message):
        plane.client("vision").retrain(MODEL)

    assert len(plane.experiments()) == 1
    assert not (Path(plane.settings.storage_root) / "feedback-sets").exists()


def test_a_bad_model_name_is_a_4xx(plane: Plane) -> None:
    response = plane.http.post(
        "/api/v1/models/bad name!/retrain", headers=bearer(plane.tokens["vision"])
    )

    assert response.status_code == 422


def _plan_of(plane: Plane, experiment_id: str) -> JobPlan:
    """The plan the control plane stored in the experiment's bundle."""
    admin = bearer(plane.settings.admin_token_path.read_text().strip())
    experiments = plane.http.get("/api/v1/experiments", headers=admin).json()
    assert any(e["id"] == experiment_id for e in experiments)
    bundle = Path(plane.settings.storage_root) / "bundles" / experiment_id
    return JobPlan.model_validate_json((bundle / ".flywheel" / "plan.json").read_text())
