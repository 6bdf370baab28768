"""How the serving document reaches Ray Serve: the ServingBackend protocol and its local adapter.

:class:`ServeRestBackend` drives Serve declaratively through the Ray dashboard's REST API with the
cluster token: ``PUT /api/serve/applications/`` states every application, and
``GET /api/serve/applications/`` says how far Serve got. No Ray job, no log parsing. On
Kubernetes, :class:`~flywheel.k8s.serving_backend.RayServiceBackend` renders the same config
into a RayService's ``serveConfigV2``. What either reports is
:mod:`flywheel.serving.state` (re-exported here).
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from flywheel.errors import ServeError
from flywheel.serving.config import ServeConfig
from flywheel.serving.state import ApplicationState, DeploymentState

_PATH = "/api/serve/applications/"
_TIMEOUT_S = 30.0


__all__ = ["ApplicationState", "DeploymentState", "ServeRestBackend", "ServingBackend"]


class ServingBackend(Protocol):
    """Applies a Serve config and reports the applications."""

    def apply(self, config: ServeConfig) -> None:
        """Make Serve run exactly ``config``'s applications (others are deleted)."""
        ...

    def applications(self) -> dict[str, ApplicationState]:
        """Every application Serve runs, by name; empty when Serve is not started."""
        ...


class ServeRestBackend:
    """Serve's REST API on the Ray dashboard at ``dashboard_url``, with the cluster ``token``."""

    def __init__(self, dashboard_url: str, token: str | None) -> None:
        self._url = dashboard_url.rstrip("/") + _PATH
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def apply(self, config: ServeConfig) -> None:
        self._request("PUT", config.payload())

    def applications(self) -> dict[str, ApplicationState]:
        document = self._request("GET", None)
        applications = document.get("applications") or {}
        return {name: _application(name, app) for name, app in applications.items()}

    def _request(self, method: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        try:
            with httpx.Client(timeout=_TIMEOUT_S, trust_env=False, headers=self._headers) as http:
                response = http.request(method, self._url, json=payload)
        except httpx.HTTPError as e:
            raise ServeError(
                f"Serve's REST API at {self._url} does not answer ({type(e).__name__}); "
                "is the platform up? `flywheel status`"
            ) from e
        if response.is_error:
            raise ServeError(
                f"{method} {self._url}: HTTP {response.status_code}: {response.text[:2000]}"
            )
        if not response.content:
            return {}
        answer: dict[str, Any] = response.json()
        return answer


def _application(name: str, app: dict[str, Any]) -> ApplicationState:
    deployments = tuple(
        _deployment(deployment_name, deployment)
        for deployment_name, deployment in (app.get("deployments") or {}).items()
    )
    return ApplicationState(
        name, str(app.get("status", "")), str(app.get("message", "")), deployments
    )


def _deployment(name: str, deployment: dict[str, Any]) -> DeploymentState:
    replicas = deployment.get("replicas") or []
    running = sum(1 for r in replicas if r.get("state") == "RUNNING")
    user_config = (deployment.get("deployment_config") or {}).get("user_config") or {}
    generation = user_config.get("generation")
    return DeploymentState(
        name,
        str(deployment.get("status", "")),
        running,
        generation if isinstance(generation, int) else None,
    )
