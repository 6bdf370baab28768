"""The Kubernetes experiment backend: submit a RayJob, read its state, suspend or delete it.

The backend talks to the API server only through :class:`KubeRayApi`, a small protocol with two
implementations: :class:`~flywheel.k8s.client.KubernetesApi`, one thin adapter over the
kubernetes client, and :class:`InMemoryKubeRayApi`, which keeps objects in a dict for tests and
for offline previews (as httpx's mock transport does for HTTP). Decisions stay pure
(:func:`~flywheel.k8s.status.reconcile`); this module only moves documents.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Protocol

from flywheel.errors import JobNotFoundError, K8sError
from flywheel.k8s.objects import STOPPED_LABEL, K8sObject, RayJob, RayService
from flywheel.k8s.service_status import ServingReconciled, reconcile_service
from flywheel.k8s.status import JobState, Reconciled, observation_from_documents, reconcile

#: A document as the API server returns it (the edge; parsed leniently in flywheel.k8s.status).
Document = dict[str, Any]


class KubeRayApi(Protocol):
    """The API calls the backend makes; nothing else reaches the cluster."""

    def create_rayjob(self, namespace: str, manifest: Document) -> None:
        """Create a RayJob; raise K8sError if the API server refuses it."""

    def get_rayjob(self, namespace: str, name: str) -> Document | None:
        """The RayJob, or None if there is none."""

    def patch_rayjob_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        """Set ``spec.suspend``; raise JobNotFoundError if there is no such RayJob."""

    def delete_rayjob(self, namespace: str, name: str) -> bool:
        """Delete a RayJob; whether it existed."""

    def stop_rayjob(self, namespace: str, name: str) -> None:
        """Label the RayJob stopped and suspend it; raise JobNotFoundError if there is none."""

    def list_rayjobs(self, namespace: str) -> list[Document]:
        """The RayJobs flywheel manages in ``namespace``."""

    def apply_rayservice(self, namespace: str, manifest: Document) -> None:
        """Create the RayService, or replace its spec if it exists; raise K8sError if refused."""

    def get_rayservice(self, namespace: str, name: str) -> Document | None:
        """The RayService, or None if there is none."""

    def workload_of(self, namespace: str, rayjob_name: str) -> Document | None:
        """The Kueue Workload owned by the RayJob, or None before Kueue made one."""


class KubernetesBackend:
    """Experiments as RayJobs: the ExperimentBackend of the control plane on Kubernetes."""

    def __init__(self, api: KubeRayApi) -> None:
        self._api = api

    def submit(self, rayjob: RayJob) -> str:
        """Create the (suspended) RayJob; Kueue admits it. Returns its name."""
        namespace = _namespace(rayjob)
        self._api.create_rayjob(namespace, rayjob.to_manifest())
        return rayjob.metadata.name

    def state(self, namespace: str, name: str, previous: JobState | None = None) -> Reconciled:
        """The job's state now, reconciled from the RayJob and its Workload."""
        document = self._api.get_rayjob(namespace, name)
        if document is None:
            raise JobNotFoundError(name)
        workload = self._api.workload_of(namespace, name)
        return reconcile(observation_from_documents(document, workload), previous)

    def suspend(self, namespace: str, name: str) -> None:
        """Suspend the job: KubeRay deletes its cluster; its pods get their grace period."""
        self._api.patch_rayjob_suspend(namespace, name, True)

    def resume(self, namespace: str, name: str) -> None:
        """Hand a suspended job back to Kueue to admit again."""
        self._api.patch_rayjob_suspend(namespace, name, False)

    def delete(self, namespace: str, name: str) -> bool:
        """Delete the job and its cluster; whether it existed."""
        return self._api.delete_rayjob(namespace, name)

    def apply_serving(self, rayservice: RayService) -> None:
        """Create or update the RayService: KubeRay applies a new serveConfigV2 in place."""
        self._api.apply_rayservice(_namespace(rayservice), rayservice.to_manifest())

    def serving_state(self, namespace: str, name: str) -> ServingReconciled:
        """The RayService's serving state now; raise K8sError if there is none."""
        document = self._api.get_rayservice(namespace, name)
        if document is None:
            raise K8sError(f"there is no RayService {namespace}/{name}: apply the serving first")
        return reconcile_service(document)


@dataclass
class InMemoryKubeRayApi:
    """RayJobs and Workloads in a dict: a :class:`KubeRayApi` for tests.

    Tests play KubeRay and Kueue by writing status documents with :meth:`set_status`,
    :meth:`set_workload` and :meth:`set_rayservice_status`.
    """

    rayjobs: dict[tuple[str, str], Document] = field(default_factory=dict)
    workloads: dict[tuple[str, str], Document] = field(default_factory=dict)
    rayservices: dict[tuple[str, str], Document] = field(default_factory=dict)

    def create_rayjob(self, namespace: str, manifest: Document) -> None:
        key = (namespace, manifest["metadata"]["name"])
        if key in self.rayjobs:
            raise FileExistsError(f"rayjob {key[0]}/{key[1]} exists")
        self.rayjobs[key] = copy.deepcopy(manifest)

    def get_rayjob(self, namespace: str, name: str) -> Document | None:
        found = self.rayjobs.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def patch_rayjob_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        if (namespace, name) not in self.rayjobs:
            raise JobNotFoundError(name)
        self.rayjobs[(namespace, name)]["spec"]["suspend"] = suspend

    def delete_rayjob(self, namespace: str, name: str) -> bool:
        self.workloads.pop((namespace, name), None)
        return self.rayjobs.pop((namespace, name), None) is not None

    def stop_rayjob(self, namespace: str, name: str) -> None:
        self.patch_rayjob_suspend(namespace, name, True)
        labels = self.rayjobs[(namespace, name)]["metadata"].setdefault("labels", {})
        labels[STOPPED_LABEL] = "true"

    def list_rayjobs(self, namespace: str) -> list[Document]:
        return [copy.deepcopy(d) for (ns, _), d in sorted(self.rayjobs.items()) if ns == namespace]

    def apply_rayservice(self, namespace: str, manifest: Document) -> None:
        """As the API server does: keep the status, and count ``metadata.generation`` from 1 up
        by one with every change of the spec."""
        key = (namespace, manifest["metadata"]["name"])
        previous = self.rayservices.get(key, {})
        generation = previous.get("metadata", {}).get("generation", 0)
        if previous.get("spec") != manifest.get("spec"):
            generation += 1
        self.rayservices[key] = copy.deepcopy(manifest)
        self.rayservices[key]["metadata"]["generation"] = generation
        if "status" in previous:
            self.rayservices[key]["status"] = previous["status"]

    def get_rayservice(self, namespace: str, name: str) -> Document | None:
        found = self.rayservices.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def set_rayservice_status(self, namespace: str, name: str, status: Document) -> None:
        """Play KubeRay: replace the RayService's status."""
        self.rayservices[(namespace, name)]["status"] = copy.deepcopy(status)

    def workload_of(self, namespace: str, rayjob_name: str) -> Document | None:
        found = self.workloads.get((namespace, rayjob_name))
        return copy.deepcopy(found) if found is not None else None

    def set_status(self, namespace: str, name: str, status: Document) -> None:
        """Play KubeRay: replace the RayJob's status."""
        self.rayjobs[(namespace, name)]["status"] = copy.deepcopy(status)

    def set_workload(self, namespace: str, rayjob_name: str, workload: Document) -> None:
        """Play Kueue: the RayJob's Workload document."""
        self.workloads[(namespace, rayjob_name)] = copy.deepcopy(workload)


def _namespace(rendered: K8sObject) -> str:
    if rendered.metadata.namespace is None:
        raise ValueError(f"a {rendered.kind} is rendered into a namespace")
    return rendered.metadata.namespace
