"""MLflow access on the session's platform: MLflow answers only with credentials, each team's
identity (from `flywheel mlflow env`) reads its own runs and registered models and none of
another team's, the Ray head holds the read-only serving identity, and no password reaches a log.

Cost: a few seconds: runs and models are made directly with the teams' identities, nothing trains.
"""

from __future__ import annotations

import functools
import shlex
import stat
from pathlib import Path

import httpx
import mlflow.artifacts
import pytest
from mlflow import MlflowClient

from flywheel.client import Client
from flywheel.local import RAY, PlatformStatus
from flywheel.mlflow_auth import read_auth_config, serving_identity
from flywheel.settings import Settings
from flywheel.wire import MlflowAccess

from .helpers import acting_as, error_code, run_cli, team_settings

pytestmark = pytest.mark.integration


def test_each_team_reads_its_own_runs_and_models_and_nothing_of_another_team(
    embedded_platform: PlatformStatus, platform_settings: Settings, tmp_path: Path
) -> None:
    uri = platform_settings.tracking_uri
    # `models:/` URIs resolve through the process's tracking URI, which a test of another
    # platform may have set before: set it, as the other tests that load models do.
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    vision = Client(team_settings(platform_settings, "vision")).mlflow_env()
    language = Client(team_settings(platform_settings, "language")).mlflow_env()
    assert (vision.username, language.username) == ("team-vision", "team-language")
    assert vision.tracking_uri == uri

    with acting_as(vision.username, vision.password):
        experiment_id = client.create_experiment("vision/mlflow-access")
        run = client.create_run(experiment_id, run_name="access")
        client.log_param(run.info.run_id, "lr", "0.01")
        client.log_text(run.info.run_id, "weights", "model/weights.txt")
        client.create_registered_model("vision-access")
        client.create_model_version(
            "vision-access", f"{run.info.artifact_uri}/model", run_id=run.info.run_id
        )
        assert client.get_run(run.info.run_id).data.params == {"lr": "0.01"}
    with acting_as(language.username, language.password):
        for read in (
            functools.partial(client.get_run, run.info.run_id),
            functools.partial(client.get_experiment, experiment_id),
            functools.partial(client.get_registered_model, "vision-access"),
            functools.partial(client.get_model_version, "vision-access", "1"),
            functools.partial(client.log_param, run.info.run_id, "lr", "0.02"),
        ):
            assert error_code(read) == "PERMISSION_DENIED", read
        assert "vision/mlflow-access" not in [e.name for e in client.search_experiments()]
        assert "vision-access" not in [m.name for m in client.search_registered_models()]
    with acting_as(None, None):
        assert error_code(functools.partial(client.get_run, run.info.run_id)) == "UNAUTHENTICATED"
    anonymous = httpx.get(f"{uri}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                          trust_env=False)  # fmt: skip
    assert anonymous.status_code == 401

    # Serve replicas load models as the read-only serving identity of the Ray head.
    admin = read_auth_config(platform_settings.mlflow_auth_config_path)
    assert admin is not None
    serving = serving_identity(admin.admin)
    with acting_as(serving.username, serving.password.get_secret_value()):
        folder = mlflow.artifacts.download_artifacts(
            "models:/vision-access/1", dst_path=str(tmp_path), tracking_uri=uri
        )
        assert (Path(folder) / "weights.txt").read_text() == "weights"
        assert error_code(functools.partial(client.log_param, run.info.run_id, "x", "1")) == (
            "PERMISSION_DENIED"
        )
    ray_env = _environ(embedded_platform.component(RAY).pid)
    assert ray_env["MLFLOW_TRACKING_USERNAME"] == serving.username
    secrets = [admin.admin.password.get_secret_value(), str(vision.password),
               str(language.password)]  # fmt: skip
    assert not any(secret in "".join(ray_env.values()) for secret in secrets)


def test_flywheel_mlflow_env_prints_exports_mlflow_clients_work_with(
    embedded_platform: PlatformStatus, platform_settings: Settings
) -> None:
    settings = team_settings(platform_settings, "language")
    assert settings.token is not None
    token = settings.token.get_secret_value()
    with acting_as(*_credentials(Client(settings).mlflow_env())):
        MlflowClient(platform_settings.tracking_uri).create_experiment("language/mlflow-env")

    printed = run_cli(platform_settings, "mlflow", "env", env={"FLYWHEEL_TOKEN": token})

    assert printed.returncode == 0, printed.stderr
    assert token not in printed.stdout + printed.stderr
    exports = dict(shlex.split(line)[1].split("=", 1) for line in printed.stdout.splitlines())
    assert set(exports) == {
        "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
    }  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        for name, value in exports.items():
            patch.setenv(name, value)
        # The URI given explicitly: an earlier test's mlflow.set_tracking_uri would win over it.
        client = MlflowClient(exports["MLFLOW_TRACKING_URI"])
        names = [e.name for e in client.search_experiments()]
    assert "language/mlflow-env" in names
    assert "vision/mlflow-access" not in names
    admin = run_cli(platform_settings, "mlflow", "env")  # the admin token file of `up`
    assert "MLFLOW_TRACKING_USERNAME=flywheel-admin" in admin.stdout


def test_the_auth_config_is_private_and_no_password_is_logged(
    embedded_platform: PlatformStatus, platform_settings: Settings
) -> None:
    path = platform_settings.mlflow_auth_config_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = read_auth_config(path)
    assert config is not None
    language = Client(team_settings(platform_settings, "language")).mlflow_env()
    secrets = [config.admin.password.get_secret_value(), str(language.password),
               serving_identity(config.admin).password.get_secret_value()]  # fmt: skip
    logs = [*(platform_settings.home / "logs").glob("*.log"),
            *platform_settings.resolved_ray_temp_dir.glob("session_latest/logs/*")]  # fmt: skip
    for log in (p for p in logs if p.is_file()):
        text = log.read_bytes()
        assert not any(secret.encode() in text for secret in secrets), log


def _credentials(access: MlflowAccess) -> tuple[str | None, str | None]:
    return access.username, access.password


def _environ(pid: int | None) -> dict[str, str]:
    assert pid is not None
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (item.decode(errors="replace").partition("=") for item in raw if item)
    return {name: value for name, _, value in pairs}
