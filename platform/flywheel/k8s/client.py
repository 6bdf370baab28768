"""The one adapter over the kubernetes client: a :class:`~flywheel.k8s.backend.KubeRayApi`.

Thin on purpose: each method is one API call, its errors translated into flywheel's. No API
server runs in this project's tests: the backend's behaviour is tested through
:class:`~flywheel.k8s.backend.InMemoryKubeRayApi`, and this adapter against a small HTTP server
that speaks the API's paths (tests/unit/k8s/test_client.py).
"""

from __future__ import annotations

from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from flywheel.errors import JobNotFoundError, K8sError, PlatformError
from flywheel.k8s.objects import MANAGED_BY, MANAGED_BY_LABEL, STOPPED_LABEL

_RAY = ("ray.io", "v1", "rayjobs")
_SERVICES = ("ray.io", "v1", "rayservices")
_CONFLICT = 409
_KUEUE = ("kueue.x-k8s.io", "v1beta2", "workloads")
_NOT_FOUND = 404


class KubernetesApi:
    """RayJobs and Workloads through the API server, with the control plane's ServiceAccount."""

    def __init__(self, api: client.CustomObjectsApi) -> None:
        self._api = api

    @classmethod
    def in_cluster(cls) -> KubernetesApi:
        """The API as the control plane's pod sees it (its mounted ServiceAccount token)."""
        try:
            config.load_incluster_config()
        except config.ConfigException as e:
            raise PlatformError(
                f"cannot reach the Kubernetes API from here ({e}): FLYWHEEL_BACKEND=kubernetes "
                "works in a pod with a ServiceAccount, as the Helm chart runs the control plane"
            ) from e
        return cls(client.CustomObjectsApi())

    def create_rayjob(self, namespace: str, manifest: dict[str, Any]) -> None:
        group, version, plural = _RAY
        try:
            self._api.create_namespaced_custom_object(group, version, namespace, plural, manifest)
        except ApiException as e:
            name = manifest["metadata"]["name"]
            raise K8sError(f"cannot create RayJob {namespace}/{name}: {e.status} {e.reason}") from e

    def get_rayjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(_RAY, "RayJob", namespace, name)

    def patch_rayjob_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        self._patch_rayjob(namespace, name, {"spec": {"suspend": suspend}}, "suspend")

    def delete_rayjob(self, namespace: str, name: str) -> bool:
        group, version, plural = _RAY
        try:
            self._api.delete_namespaced_custom_object(group, version, namespace, plural, name)
        except ApiException as e:
            if e.status == _NOT_FOUND:
                return False
            raise K8sError(f"cannot delete RayJob {namespace}/{name}: {e.reason}") from e
        return True

    def stop_rayjob(self, namespace: str, name: str) -> None:
        body = {"metadata": {"labels": {STOPPED_LABEL: "true"}}, "spec": {"suspend": True}}
        self._patch_rayjob(namespace, name, body, "stop")

    def list_rayjobs(self, namespace: str) -> list[dict[str, Any]]:
        group, version, plural = _RAY
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
        try:
            listed = self._api.list_namespaced_custom_object(
                group, version, namespace, plural, label_selector=selector
            )
        except ApiException as e:
            raise K8sError(f"cannot list RayJobs in {namespace}: {e.reason}") from e
        return list(cast(dict[str, Any], listed).get("items", []))

    def apply_rayservice(self, namespace: str, manifest: dict[str, Any]) -> None:
        group, version, plural = _SERVICES
        name = manifest["metadata"]["name"]
        try:
            self._api.create_namespaced_custom_object(group, version, namespace, plural, manifest)
            return
        except ApiException as e:
            if e.status != _CONFLICT:
                raise K8sError(
                    f"cannot create RayService {namespace}/{name}: {e.status} {e.reason}"
                ) from e
        except HTTPError as e:
            raise _unreachable("create", "RayService", namespace, name, e) from e
        try:  # it exists: a merge patch replaces what flywheel sets and keeps the status
            self._api.patch_namespaced_custom_object(
                group, version, namespace, plural, name, manifest
            )
        except ApiException as e:
            raise K8sError(
                f"cannot update RayService {namespace}/{name}: {e.status} {e.reason}"
            ) from e
        except HTTPError as e:
            raise _unreachable("update", "RayService", namespace, name, e) from e

    def get_rayservice(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(_SERVICES, "RayService", namespace, name)

    def workload_of(self, namespace: str, rayjob_name: str) -> dict[str, Any] | None:
        group, version, plural = _KUEUE
        try:
            listed = self._api.list_namespaced_custom_object(group, version, namespace, plural)
        except ApiException as e:
            raise K8sError(f"cannot list Kueue Workloads in {namespace}: {e.reason}") from e
        for workload in cast(dict[str, Any], listed).get("items", []):
            owners = workload.get("metadata", {}).get("ownerReferences", [])
            if any(o.get("kind") == "RayJob" and o.get("name") == rayjob_name for o in owners):
                return cast(dict[str, Any], workload)
        return None

    def _get(
        self, resource: tuple[str, str, str], kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        group, version, plural = resource
        try:
            found = self._api.get_namespaced_custom_object(group, version, namespace, plural, name)
        except ApiException as e:
            if e.status == _NOT_FOUND:
                return None
            raise K8sError(f"cannot read {kind} {namespace}/{name}: {e.status} {e.reason}") from e
        except HTTPError as e:
            raise _unreachable("read", kind, namespace, name, e) from e
        return cast(dict[str, Any], found)

    def _patch_rayjob(self, namespace: str, name: str, body: dict[str, Any], verb: str) -> None:
        group, version, plural = _RAY
        try:
            self._api.patch_namespaced_custom_object(group, version, namespace, plural, name, body)
        except ApiException as e:
            if e.status == _NOT_FOUND:
                raise JobNotFoundError(name) from e
            raise K8sError(f"cannot {verb} RayJob {namespace}/{name}: {e.reason}") from e


def _unreachable(verb: str, kind: str, namespace: str, name: str, error: HTTPError) -> K8sError:
    """The API server did not answer: named by the error's type only (its text may carry the
    request's URL and headers)."""
    return K8sError(
        f"cannot {verb} {kind} {namespace}/{name}: the Kubernetes API does not answer "
        f"({type(error).__name__})"
    )
