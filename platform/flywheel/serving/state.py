"""What Serve reports about the applications it runs, whichever backend asked it.

The local backend reads it from Serve's REST API; on Kubernetes it is read from the RayService's
status, where KubeRay copies it. Both hand the serving service these same types. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeploymentState:
    """One deployment as Serve reports it."""

    name: str
    status: str
    running_replicas: int
    generation: int | None  # of the route in its user_config, where it has one


@dataclass(frozen=True)
class ApplicationState:
    """One application as Serve reports it."""

    name: str
    status: str
    message: str
    deployments: tuple[DeploymentState, ...]
