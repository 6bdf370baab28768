"""The control plane's MLflow identities against a real MLflow server with basic auth: each team
reads its own runs and models only, the serving reader reads all and writes nothing, jobs get
their team's identity, and `GET /api/v1/mlflow/env` hands the caller its own.

Cost: one MLflow server for the module (5 to 10 s to start), a few requests per test.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server.auth.client import AuthServiceClient
from tests.mlflow_server import AuthMlflowServer, running_auth_mlflow

from flywheel.mlflow_auth import MlflowIdentity, team_identity
from flywheel.server.app import create_app
from flywheel.server.mlflow_identities import MlflowIdentities
from flywheel.settings import Settings
from flywheel.tracking import ROLLOUT_EXPERIMENT, TAG_TEAM, ensure_experiment

from .helpers import (
    TEAMS,
    MemoryBackend,
    experiment_folder,
    http_server,
    running_plane,
    submit,
    team_tokens,
)

FLYWHEEL = str(Path(sys.executable).parent / "flywheel")


@pytest.fixture(scope="module")
def server() -> Iterator[AuthMlflowServer]:
    with running_auth_mlflow(Path(tempfile.mkdtemp(prefix="fw-mlflow-"))) as running:
        yield running


@pytest.fixture
def identities(server: AuthMlflowServer, monkeypatch: pytest.MonkeyPatch) -> MlflowIdentities:
    """Fresh identities (as after a restart of the control plane); this process acts as the
    admin, as the control plane does."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    for name, value in server.config.admin.env().items():
        monkeypatch.setenv(name, value)
    rollouts = functools.partial(ensure_experiment, server.url, ROLLOUT_EXPERIMENT)
    return MlflowIdentities(server.url, server.config.admin, rollouts)


@contextmanager
def acting_as(identity: MlflowIdentity | None) -> Iterator[None]:
    """MLflow calls of this process made as ``identity`` (None: without credentials)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (identity.env() if identity else {}).items():
            patch.setenv(name, value)
        if identity is None:
            patch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
            patch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
        yield


def denied(call: functools.partial[object]) -> str:
    with pytest.raises(MlflowException) as caught:
        call()
    return caught.value.error_code


def test_a_team_reads_its_own_runs_and_models_only(
    identities: MlflowIdentities, server: AuthMlflowServer
) -> None:
    client = MlflowClient(server.url)
    vision, language = identities.team("vision"), identities.team("language")
    with acting_as(vision):
        experiment_id = client.create_experiment("vision/only")
        run_id = client.create_run(experiment_id).info.run_id
        client.log_param(run_id, "lr", "0.1")
        client.create_registered_model("vision-only")
        assert client.get_run(run_id).data.params == {"lr": "0.1"}
    with acting_as(language):
        assert denied(functools.partial(client.get_run, run_id)) == "PERMISSION_DENIED"
        assert denied(functools.partial(client.get_experiment, experiment_id)) == (
            "PERMISSION_DENIED"
        )
        assert denied(functools.partial(client.get_registered_model, "vision-only")) == (
            "PERMISSION_DENIED"
        )
        assert client.search_runs([experiment_id]) == [] or denied(
            functools.partial(client.search_runs, [experiment_id])
        )
        names = [e.name for e in client.search_experiments()]
        assert "vision/only" not in names
    with acting_as(None):
        assert denied(functools.partial(client.get_run, run_id)) == "UNAUTHENTICATED"


def test_a_team_adopts_what_its_jobs_made_before_mlflow_had_authentication(
    server: AuthMlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made by the admin, as every run of a home from before authentication reads now: the
    team's identity takes its experiments and its models over on first use, no other team."""
    for name, value in server.config.admin.env().items():
        monkeypatch.setenv(name, value)
    client = MlflowClient(server.url)
    experiment_id = client.create_experiment("adopter/old")
    run_id = client.create_run(experiment_id, tags={TAG_TEAM: "adopter"}).info.run_id
    client.create_registered_model("adopter-old")
    client.create_model_version("adopter-old", f"runs:/{run_id}/model", run_id=run_id)
    rollouts = functools.partial(ensure_experiment, server.url, ROLLOUT_EXPERIMENT)
    identities = MlflowIdentities(server.url, server.config.admin, rollouts)

    with acting_as(identities.team("adopter")):
        assert client.get_run(run_id).info.experiment_id == experiment_id
        assert client.get_registered_model("adopter-old").name == "adopter-old"
        client.log_param(run_id, "resumed", "yes")
    with acting_as(identities.team("adopter-x")):  # a name that starts the same
        assert denied(functools.partial(client.get_run, run_id)) == "PERMISSION_DENIED"
        assert denied(functools.partial(client.get_registered_model, "adopter-old")) == (
            "PERMISSION_DENIED"
        )


def test_the_serving_reader_reads_every_team_and_writes_nothing(
    identities: MlflowIdentities, server: AuthMlflowServer
) -> None:
    client = MlflowClient(server.url)
    with acting_as(identities.team("vision")):
        experiment_id = client.create_experiment("vision/served")
        run_id = client.create_run(experiment_id).info.run_id
        client.create_registered_model("vision-served")
    with acting_as(identities.serving()):
        assert client.get_run(run_id).info.experiment_id == experiment_id
        assert client.get_registered_model("vision-served").name == "vision-served"
        assert denied(functools.partial(client.log_param, run_id, "x", "1")) == (
            "PERMISSION_DENIED"
        )


def test_every_team_records_rollouts_in_the_shared_experiment(
    identities: MlflowIdentities, server: AuthMlflowServer
) -> None:
    client = MlflowClient(server.url)
    shared = ensure_experiment(server.url, ROLLOUT_EXPERIMENT)  # as the admin
    for team in ("vision", "language"):
        with acting_as(identities.team(team)):
            run = client.create_run(shared, run_name=f"{team}-deploy")
            client.set_terminated(run.info.run_id)


def test_a_restarted_control_plane_resets_a_changed_password(
    identities: MlflowIdentities, server: AuthMlflowServer
) -> None:
    vision = identities.team("vision")
    stale = MlflowIdentity(vision.username, type(vision.password)("stale-password-123"))
    client = MlflowClient(server.url)
    with acting_as(server.config.admin):
        AuthServiceClient(server.url).update_user_password(vision.username, "changed-elsewhere1")
    with acting_as(vision):
        assert denied(functools.partial(client.search_experiments)) == "UNAUTHENTICATED"
    rollouts = functools.partial(ensure_experiment, server.url, ROLLOUT_EXPERIMENT)
    restarted = MlflowIdentities(server.url, server.config.admin, rollouts)
    assert restarted.team("vision") == vision
    with acting_as(vision):
        client.search_experiments()
    with acting_as(stale):
        assert denied(functools.partial(client.search_experiments)) == "UNAUTHENTICATED"


def test_jobs_get_their_teams_identity_the_stored_plan_does_not(
    identities: MlflowIdentities, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home")
    backend = MemoryBackend()
    with running_plane(settings, TEAMS, backend, identities) as control:
        submit(control, experiment_folder(tmp_path), control.vision)
        control.step()
    (job,) = backend.jobs.values()
    vision = team_identity(identities.admin, "vision")
    assert job.plan.env_vars["MLFLOW_TRACKING_USERNAME"] == "team-vision"
    assert job.plan.env_vars["MLFLOW_TRACKING_PASSWORD"] == vision.password.get_secret_value()
    plan_file = next(data for name, data in job.files.items() if name.endswith(".json"))
    assert b"MLFLOW_TRACKING_PASSWORD" not in plan_file
    assert json.loads(plan_file)["env_vars"].get("MLFLOW_TRACKING_USERNAME") is None


def test_the_mlflow_env_route_answers_with_the_callers_identity(
    identities: MlflowIdentities, server: AuthMlflowServer, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=server.url)
    with running_plane(settings, TEAMS, MemoryBackend(), identities) as control:
        team = control.http.get("/api/v1/mlflow/env", headers=control.vision)
        admin = control.http.get("/api/v1/mlflow/env", headers=control.admin)
        anonymous = control.http.get("/api/v1/mlflow/env")
    assert team.status_code == 200 and team.headers["cache-control"] == "no-store"
    vision = team_identity(identities.admin, "vision")
    assert team.json() == {"tracking_uri": server.url, "username": "team-vision",
                           "password": vision.password.get_secret_value()}  # fmt: skip
    assert admin.json()["username"] == identities.admin.username
    assert anonymous.status_code == 401


def test_without_authentication_the_route_gives_the_uri_only(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri="http://127.0.0.1:1")
    with running_plane(settings, TEAMS, MemoryBackend()) as control:
        answer = control.http.get("/api/v1/mlflow/env", headers=control.vision).json()
    assert answer == {"tracking_uri": "http://127.0.0.1:1", "username": None, "password": None}


def test_flywheel_mlflow_env_prints_exports_that_mlflow_clients_use(
    identities: MlflowIdentities, server: AuthMlflowServer, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, mlflow_tracking_uri=server.url)
    app = create_app(settings, TEAMS, MemoryBackend(), run_queue=False, mlflow=identities)
    with http_server(app) as url:
        with acting_as(identities.team("vision")):
            MlflowClient(server.url).create_experiment("vision/cli")
        token = team_tokens(TestClient(app), settings, TEAMS)["vision"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYWHEEL_", "MLFLOW_"))}
        env |= {"FLYWHEEL_CONTROL_PLANE_URL": url, "FLYWHEEL_TOKEN": token,
                "FLYWHEEL_HOME": str(tmp_path)}  # fmt: skip
        done = subprocess.run([FLYWHEEL, "mlflow", "env"], env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    exports = dict(shlex.split(line)[1].split("=", 1) for line in done.stdout.splitlines())
    assert exports["MLFLOW_TRACKING_USERNAME"] == "team-vision"
    assert exports["MLFLOW_TRACKING_URI"] == server.url
    assert token not in done.stdout + done.stderr
    with pytest.MonkeyPatch.context() as patch:
        for name, value in exports.items():
            patch.setenv(name, value)
        # The URI given explicitly: an earlier test's mlflow.set_tracking_uri would win over it.
        client = MlflowClient(exports["MLFLOW_TRACKING_URI"])
        names = [e.name for e in client.search_experiments()]
    assert "vision/cli" in names
