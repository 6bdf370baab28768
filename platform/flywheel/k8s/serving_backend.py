"""The serving backend of the control plane on Kubernetes: the Serve config as a RayService.

:class:`RayServiceBackend` is a :class:`~flywheel.backends.serving.ServingBackend`. ``apply``
renders the RayService whose ``serveConfigV2`` is the config the serving service hands it
(:func:`~flywheel.k8s.rayservice.serve_config_to_rayservice`), checks it, and creates it or
replaces its spec; KubeRay then submits a changed ``serveConfigV2`` to Serve on the running
cluster. ``applications`` reads the RayService back
(:func:`~flywheel.k8s.service_status.rayservice_to_applications`).

It reaches the API server only through :class:`RayServiceApi`, two calls that
:class:`~flywheel.k8s.client.KubernetesApi` (the thin kubernetes-client adapter) and
:class:`~flywheel.k8s.backend.InMemoryKubeRayApi` (tests) both implement. A refusal of the API
server becomes a :class:`~flywheel.errors.ServeError` naming the RayService, so the serving
service puts the previous document back as it does when Serve refuses a config.
"""

from __future__ import annotations

from typing import Any, Protocol

from flywheel.errors import K8sError, ServeError
from flywheel.k8s.manifests import require_valid
from flywheel.k8s.rayjob import K8sTarget
from flywheel.k8s.rayservice import serve_config_to_rayservice
from flywheel.k8s.service_status import rayservice_to_applications
from flywheel.serving.config import ServeConfig
from flywheel.serving.state import ApplicationState


class RayServiceApi(Protocol):
    """The API calls the serving backend makes; nothing else reaches the cluster."""

    def apply_rayservice(self, namespace: str, manifest: dict[str, Any]) -> None:
        """Create the RayService, or replace its spec if it exists; raise K8sError if refused."""

    def get_rayservice(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The RayService, or None if there is none; raise K8sError if the read is refused."""


class RayServiceBackend:
    """Serving through the RayService ``name`` in ``namespace``, with Ray pods from ``target``."""

    def __init__(self, api: RayServiceApi, target: K8sTarget, namespace: str, name: str) -> None:
        self._api = api
        self._target = target
        self._namespace = namespace
        self._name = name

    @property
    def where(self) -> str:
        """``namespace/name`` of the RayService."""
        return f"{self._namespace}/{self._name}"

    def apply(self, config: ServeConfig) -> None:
        """Create or update the RayService so that its ``serveConfigV2`` is ``config``."""
        rayservice = serve_config_to_rayservice(config, self._target, self._name, self._namespace)
        try:
            require_valid([rayservice])
            self._api.apply_rayservice(self._namespace, rayservice.to_manifest())
        except K8sError as e:
            raise ServeError(
                f"cannot apply the serving document to RayService {self.where}: {e}; are "
                f"KubeRay's CRDs installed, and may the control plane manage RayServices in "
                f"{self._namespace} (the chart's Role; FLYWHEEL_SERVING_NAMESPACE)?"
            ) from e

    def applications(self) -> dict[str, ApplicationState]:
        """The applications KubeRay reports for the cluster that takes traffic; empty before
        the RayService exists."""
        try:
            document = self._api.get_rayservice(self._namespace, self._name)
        except K8sError as e:
            raise ServeError(f"cannot read RayService {self.where}: {e}") from e
        return {} if document is None else rayservice_to_applications(document)
