"""HTTP to the control plane (``/api/v1``): the token, the errors, the typed answers.

Every answer is parsed into a :mod:`flywheel.wire` model; every error answer becomes the
:class:`~flywheel.errors.FlywheelError` its status stands for. The token is sent, never shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from flywheel.errors import (
    AccessError,
    AuthenticationError,
    BundleError,
    BundleTooLargeError,
    DataNotFoundError,
    FlywheelError,
    JobError,
    JobNotFoundError,
    PermissionDeniedError,
    PlatformError,
    RetrainError,
    RetrainRunningError,
    ServeConflictError,
    ServeError,
    ServeInputError,
    SpecError,
    SpecProblem,
    TeamNotFoundError,
)
from flywheel.settings import Settings
from flywheel.wire import ErrorBody

ModelT = TypeVar("ModelT", bound=BaseModel)

_TIMEOUT_S = 60.0
API = "/api/v1"


class ControlPlaneApi:
    """One control plane, reached with one token."""

    def __init__(self, settings: Settings, http: httpx.Client | None = None) -> None:
        self._settings = settings
        self._http = http

    def call(self, method: str, path: str, answer: type[ModelT], **kwargs: Any) -> ModelT:
        """``method`` ``/api/v1{path}`` and parse the answer as ``answer``."""
        response = self._send(method, path, **kwargs)
        return answer.model_validate_json(response.content)

    def call_list(self, path: str, item: type[ModelT]) -> list[ModelT]:
        response = self._send("GET", path)
        return TypeAdapter(list[item]).validate_json(response.content)  # type: ignore[valid-type]

    def text(self, path: str, params: dict[str, str] | None = None) -> str:
        return self._send("GET", path, params=params).text

    def stream(self, path: str, params: dict[str, str]) -> Iterator[str]:
        """The chunks of a streamed text answer, as they come."""
        http = self._client()
        try:
            with http.stream("GET", API + path, params=params, timeout=None) as response:
                if response.is_error:
                    response.read()
                    raise _error(response)
                yield from response.iter_text()
        except httpx.TransportError as e:
            raise self._unreachable(e) from e

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client().request(method, API + path, **kwargs)
        except httpx.TransportError as e:
            raise self._unreachable(e) from e
        if response.is_error:
            raise _error(response)
        return response

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                base_url=self._settings.control_url, timeout=_TIMEOUT_S, trust_env=False
            )
        token = read_token(self._settings)
        if token is not None:
            self._http.headers["Authorization"] = f"Bearer {token}"
        return self._http

    def _unreachable(self, e: httpx.TransportError) -> PlatformError:
        return PlatformError(
            f"cannot reach the control plane at {self._settings.control_url} "
            f"({type(e).__name__}); start the platform with `flywheel up`"
        )


def read_token(settings: Settings) -> str | None:
    """FLYWHEEL_TOKEN, else the token file of the settings, else the admin token file when this
    user can read it (the one who ran `flywheel up`)."""
    if settings.token is not None:
        return settings.token.get_secret_value().strip()
    for path in (settings.token_file, settings.admin_token_path):
        if path is not None and _readable(path):
            return path.read_text().strip() or None
    return None


def _readable(path: Path) -> bool:
    try:
        return path.is_file() and bool(path.read_text().strip())
    except OSError:
        return False


#: Error classes an answer's ``kind`` may name; anything else becomes a FlywheelError.
_KINDS: dict[str, type[FlywheelError]] = {
    kind.__name__: kind
    for kind in (
        AuthenticationError, PermissionDeniedError, BundleError, BundleTooLargeError, JobError,
        JobNotFoundError, DataNotFoundError, PlatformError, TeamNotFoundError, AccessError,
        ServeError, ServeInputError, ServeConflictError, RetrainError, RetrainRunningError,
    )
}  # fmt: skip


def _error(response: httpx.Response) -> FlywheelError:
    """The error an answer stands for, with the server's message."""
    try:
        body = ErrorBody.model_validate_json(response.content)
    except ValueError:
        return FlywheelError(
            f"control plane answered HTTP {response.status_code}: {_detail(response)}"
        )
    if body.problems:
        return SpecError([SpecProblem(p.file, p.line, p.path, p.message) for p in body.problems])
    kind = _KINDS.get(body.kind, FlywheelError)
    error = kind.__new__(kind)  # some constructors take other arguments than the message
    Exception.__init__(error, body.error)
    return error


def _detail(response: httpx.Response) -> str:
    """A refused request's fields and what is wrong with each (FastAPI's 422 ``detail``), else
    the answer's text."""
    try:
        detail = response.json()["detail"]
        return "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in detail
        )
    except (ValueError, KeyError, TypeError):
        return response.text
