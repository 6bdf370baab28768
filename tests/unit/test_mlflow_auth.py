"""The auth config `flywheel up` writes for MLflow, and the identities derived from it."""

from __future__ import annotations

import configparser
import stat
from pathlib import Path

from flywheel.mlflow_auth import (
    ADMIN_USERNAME,
    SERVING_USERNAME,
    ensure_auth_config,
    read_auth_config,
    server_env,
    serving_identity,
    team_identity,
)

DB = "sqlite:////tmp/unused/basic_auth.db"


def test_the_config_is_private_and_denies_by_default(tmp_path: Path) -> None:
    path = tmp_path / "mlflow" / "basic_auth.ini"
    config = ensure_auth_config(path, DB)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    assert parser["mlflow"]["default_permission"] == "NO_PERMISSIONS"
    assert parser["mlflow"]["database_uri"] == DB
    assert parser["mlflow"]["admin_username"] == config.admin.username == ADMIN_USERNAME
    assert len(config.admin.password.get_secret_value()) >= 32
    assert list(tmp_path.glob("mlflow/.*")) == []  # no partial file left


def test_a_second_up_keeps_the_secrets(tmp_path: Path) -> None:
    path = tmp_path / "basic_auth.ini"
    first = ensure_auth_config(path, DB)
    path.chmod(0o644)
    assert ensure_auth_config(path, DB) == first == read_auth_config(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_auth_config(tmp_path / "other.ini", DB).admin != first.admin


def test_no_config_no_admin(tmp_path: Path) -> None:
    assert read_auth_config(tmp_path / "missing.ini") is None


def test_derived_identities_are_stable_distinct_and_long_enough(tmp_path: Path) -> None:
    admin = ensure_auth_config(tmp_path / "a.ini", DB).admin
    vision, language = team_identity(admin, "vision"), team_identity(admin, "language")
    assert (vision.username, language.username) == ("team-vision", "team-language")
    assert team_identity(admin, "vision") == vision
    serving = serving_identity(admin)
    assert serving.username == SERVING_USERNAME
    passwords = {i.password.get_secret_value() for i in (admin, vision, language, serving)}
    assert len(passwords) == 4
    assert all(len(p) >= 12 for p in passwords)  # MLflow's minimum


def test_passwords_stay_out_of_reprs_and_go_into_the_env(tmp_path: Path) -> None:
    path = tmp_path / "a.ini"
    config = ensure_auth_config(path, DB)
    vision = team_identity(config.admin, "vision")
    secret = vision.password.get_secret_value()
    assert secret not in repr(vision) and secret not in str(vision)
    assert config.admin.password.get_secret_value() not in repr(config)
    assert vision.env() == {"MLFLOW_TRACKING_USERNAME": "team-vision",
                            "MLFLOW_TRACKING_PASSWORD": secret}  # fmt: skip
    env = server_env(path, config)
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(path)
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == config.flask_secret_key.get_secret_value()
