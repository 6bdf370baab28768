"""MLflow's basic-auth app as flywheel runs it: the config file and the identities in it.

``flywheel up`` writes the config (an ini MLflow reads through ``MLFLOW_AUTH_CONFIG_PATH``) once,
mode 0600, with a random admin password, and starts MLflow with ``--app-name basic-auth``. Users
get no permission by default (``NO_PERMISSIONS``): what an identity may read is what it created
(MLflow gives the creator MANAGE) or what the control plane granted it.

Identities:

- the admin (``flywheel-admin``): the control plane's own MLflow calls, and the admin token's
  ``flywheel mlflow env``;
- one per team (``team-<name>``): the team's experiment jobs and its ``flywheel mlflow env``;
- the serving reader (``flywheel-serving``): the Ray head's environment, so that Serve replicas
  can load registered models; it may read, never write.

A team's and the serving reader's password is derived from the admin password (HMAC-SHA256 with
the identity's name), so the control plane stores no second secret and recomputes the same one
after every restart, on any database. Nothing here logs a password or puts one in a message.

No mlflow import: the CLI side (``flywheel up``) uses this module too.
"""

from __future__ import annotations

import configparser
import hashlib
import hmac
import io
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

ADMIN_USERNAME = "flywheel-admin"
SERVING_USERNAME = "flywheel-serving"
TEAM_USERNAME_PREFIX = "team-"
#: The section MLflow reads, and one of flywheel's own that MLflow ignores.
_MLFLOW_SECTION = "mlflow"
_FLYWHEEL_SECTION = "flywheel"
_AUTHORIZATION_FUNCTION = "mlflow.server.auth:authenticate_request_basic_auth"


@dataclass(frozen=True)
class MlflowIdentity:
    """A user of MLflow's basic-auth app; the password never shows in a repr."""

    username: str
    password: SecretStr

    def env(self) -> dict[str, str]:
        """The variables MLflow's clients authenticate with."""
        return {
            "MLFLOW_TRACKING_USERNAME": self.username,
            "MLFLOW_TRACKING_PASSWORD": self.password.get_secret_value(),
        }


@dataclass(frozen=True)
class AuthConfig:
    """What flywheel keeps in the auth ini besides MLflow's own settings."""

    admin: MlflowIdentity
    flask_secret_key: SecretStr


def ensure_auth_config(path: Path, database_uri: str) -> AuthConfig:
    """The auth config at ``path``, written (0600, folder 0700) with fresh secrets when missing.

    An existing file is kept as it is, so ``up`` after ``down`` keeps the admin password that
    MLflow's user database (``database_uri``) already holds.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    existing = read_auth_config(path)
    if existing is not None:
        path.chmod(0o600)
        return existing
    _write_private(path, _config_text(database_uri))
    written = read_auth_config(path)
    assert written is not None  # just written
    return written


def read_auth_config(path: Path) -> AuthConfig | None:
    """The admin identity and the Flask secret in ``path``; None when there is no such file."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text())
    except FileNotFoundError:
        return None
    mlflow = parser[_MLFLOW_SECTION]
    admin = MlflowIdentity(mlflow["admin_username"], SecretStr(mlflow["admin_password"]))
    return AuthConfig(admin, SecretStr(parser[_FLYWHEEL_SECTION]["flask_secret_key"]))


def server_env(path: Path, config: AuthConfig) -> dict[str, str]:
    """Variables of the MLflow server process: where its auth config is, its CSRF key."""
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(path),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": config.flask_secret_key.get_secret_value(),
    }


def team_username(team: str) -> str:
    """The MLflow user of ``team`` (team names are DNS labels: no ``:``, which basic auth bans)."""
    return TEAM_USERNAME_PREFIX + team


def team_identity(admin: MlflowIdentity, team: str) -> MlflowIdentity:
    """``team``'s identity: its user name and the password derived for it."""
    return derived_identity(admin, team_username(team))


def serving_identity(admin: MlflowIdentity) -> MlflowIdentity:
    """The read-only identity Serve replicas load models with."""
    return derived_identity(admin, SERVING_USERNAME)


def derived_identity(admin: MlflowIdentity, username: str) -> MlflowIdentity:
    """``username`` with a password only the holder of the admin password can compute."""
    key = admin.password.get_secret_value().encode()
    digest = hmac.new(key, f"flywheel-mlflow-user:{username}".encode(), hashlib.sha256)
    return MlflowIdentity(username, SecretStr(digest.hexdigest()))


def _config_text(database_uri: str) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser[_MLFLOW_SECTION] = {
        "default_permission": "NO_PERMISSIONS",
        "database_uri": database_uri,
        "admin_username": ADMIN_USERNAME,
        "admin_password": secrets.token_urlsafe(32),
        "authorization_function": _AUTHORIZATION_FUNCTION,
        # One verification of a password (PBKDF2) per user and 5 minutes, not one per request:
        # safe with the one worker `flywheel up` runs, where a password change through the API
        # drops the cached entry at once.
        "auth_cache_ttl_seconds": "300",
    }
    parser[_FLYWHEEL_SECTION] = {"flask_secret_key": secrets.token_urlsafe(32)}
    text = io.StringIO()
    text.write("# Written by `flywheel up`: MLflow's basic-auth config. Secret: keep it 0600.\n")
    parser.write(text)
    return text.getvalue()


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a 0600 file that appears whole (a reader sees all of it or nothing)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(partial, path)
