"""The MLflow identities the control plane manages, through the REST API of MLflow's basic-auth
app, as its admin.

A team's user is created the first time the team needs it (a job, ``flywheel mlflow env``) and
its password set to the one derived for it (:mod:`flywheel.mlflow_auth`), so a user left by an
older admin password is brought back in line. Each team may write to the shared rollout
experiment (serving records there on its behalf); everything else a team can see in MLflow is
what its own identity created. The serving reader may read every experiment and registered model
and write nothing.

Errors become :class:`~flywheel.errors.PlatformError` with MLflow's status and error code only:
no request body (passwords) ever reaches a message or a log.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from flywheel.errors import PlatformError
from flywheel.mlflow_auth import MlflowIdentity, serving_identity, team_identity
from flywheel.tracking import TAG_TEAM

_CREATE_USER = "/api/2.0/mlflow/users/create"
_UPDATE_PASSWORD = "/api/2.0/mlflow/users/update-password"
_GRANT = "/api/3.0/mlflow/users/permissions/grant"
_SEARCH_EXPERIMENTS = "/api/2.0/mlflow/experiments/search"
_SEARCH_MODELS = "/api/2.0/mlflow/registered-models/search"
_GET_RUN = "/api/2.0/mlflow/runs/get"
_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
_TIMEOUT_S = 30.0


class _Answer(BaseModel):
    """The part of an MLflow REST answer this module reads (the rest is ignored)."""


class _Experiment(BaseModel):
    experiment_id: str
    name: str = ""


class _Experiments(_Answer):
    experiments: list[_Experiment] = []


class _Version(BaseModel):
    version: int
    run_id: str | None = None


class _Model(BaseModel):
    name: str
    latest_versions: list[_Version] = []


class _Models(_Answer):
    registered_models: list[_Model] = []


class _Tag(BaseModel):
    key: str
    value: str = ""


class _RunData(BaseModel):
    tags: list[_Tag] = []


class _Run(BaseModel):
    data: _RunData = _RunData()


class _RunAnswer(_Answer):
    run: _Run = _Run()


_A = TypeVar("_A", bound=_Answer)


class MlflowIdentities:
    """The admin identity, and the team and serving identities it manages on one MLflow server.

    ``shared_experiment`` returns the id of the rollout experiment (created by the admin when
    missing); each team gets EDIT on it.
    """

    def __init__(
        self, tracking_uri: str, admin: MlflowIdentity, shared_experiment: Callable[[], str],
        http: httpx.Client | None = None,
    ) -> None:  # fmt: skip
        self.tracking_uri = tracking_uri
        self.admin = admin
        self._shared_experiment = shared_experiment
        self._http = http or httpx.Client(timeout=_TIMEOUT_S, trust_env=False)
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def team(self, team: str) -> MlflowIdentity:
        """``team``'s identity, its user created (or its password reset) on first use."""
        identity = team_identity(self.admin, team)
        with self._lock:
            if identity.username not in self._ready:
                self._ensure_user(identity)
                self._grant(identity.username, "experiment", self._shared_experiment(), "EDIT")
                self._adopt(identity.username, team)
                self._ready.add(identity.username)
        return identity

    def _adopt(self, username: str, team: str) -> None:
        """Give the team MANAGE on what its jobs made before MLflow had authentication (owned by
        no user then): its experiments (``<team>/...``, the default name) and the registered
        models whose latest version comes from a run tagged with the team. A grant is an
        upsert, so what the team created itself is unchanged."""
        page = self._get(_SEARCH_EXPERIMENTS, {"max_results": "1000"}, _Experiments)
        for experiment in page.experiments:
            if experiment.name.startswith(f"{team}/"):
                self._grant(username, "experiment", experiment.experiment_id, "MANAGE")
        models = self._get(_SEARCH_MODELS, {"max_results": "1000"}, _Models).registered_models
        for model in models:
            latest = max(model.latest_versions, key=lambda v: v.version, default=None)
            if latest and latest.run_id and self._run_team(latest.run_id) == team:
                self._grant(username, "registered_model", model.name, "MANAGE")

    def _run_team(self, run_id: str) -> str | None:
        tags = self._get(_GET_RUN, {"run_id": run_id}, _RunAnswer).run.data.tags
        return next((t.value for t in tags if t.key == TAG_TEAM), None)

    def _get(self, path: str, params: dict[str, str], answer: type[_A]) -> _A:
        """A read as the admin; an answer that is not the JSON expected, or a missing run, reads
        as empty."""
        auth = (self.admin.username, self.admin.password.get_secret_value())
        try:
            response = self._http.get(
                self.tracking_uri.rstrip("/") + path, params=params, auth=auth
            )
        except httpx.HTTPError as e:
            raise PlatformError(
                f"cannot reach MLflow at {self.tracking_uri} ({type(e).__name__}); is the "
                "platform up (`flywheel status`)?"
            ) from None
        if not response.is_success:
            return answer()
        try:
            return answer.model_validate_json(response.content)
        except ValidationError:
            return answer()

    def serving(self) -> MlflowIdentity:
        """The serving reader, its user and its read grants made on first use."""
        identity = serving_identity(self.admin)
        with self._lock:
            if identity.username not in self._ready:
                self._ensure_user(identity)
                for resource_type in ("experiment", "registered_model"):
                    self._grant(identity.username, resource_type, "*", "READ")
                self._ready.add(identity.username)
        return identity

    def _ensure_user(self, identity: MlflowIdentity) -> None:
        body = {"username": identity.username, "password": identity.password.get_secret_value()}
        if not self._post(_CREATE_USER, body, "POST"):
            self._post(_UPDATE_PASSWORD, body, "PATCH")

    def _grant(self, username: str, resource_type: str, resource_id: str, permission: str) -> None:
        body = {
            "username": username, "resource_type": resource_type, "resource_id": resource_id,
            "permission": permission,
        }  # fmt: skip
        self._post(_GRANT, body, "POST")

    def _post(self, path: str, body: dict[str, str], method: str) -> bool:
        """Send ``body`` as the admin: True when done, False when it existed already."""
        auth = (self.admin.username, self.admin.password.get_secret_value())
        url = self.tracking_uri.rstrip("/") + path
        try:
            response = self._http.request(method, url, json=body, auth=auth)
        except httpx.HTTPError as e:
            raise PlatformError(
                f"cannot reach MLflow at {self.tracking_uri} ({type(e).__name__}) to manage its "
                "users; is the platform up (`flywheel status`)?"
            ) from None  # the request, and so the password, stays out of the traceback
        if response.is_success:
            return True
        code = _error_code(response)
        if code == _ALREADY_EXISTS:
            return False
        raise PlatformError(
            f"MLflow refused to manage user {body['username']!r}: HTTP {response.status_code} "
            f"{code}; check the MLflow admin password in the auth config of `flywheel up`"
        )


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error_code", ""))
    except (ValueError, AttributeError):
        return ""
