"""Rules a schema cannot express, checked on rendered manifests (ours and the Helm chart's).

The CRD schemas and Kubernetes' JSON schemas catch unknown fields and wrong types; these rules
catch what they cannot: names that break once KubeRay derives pod names from them, RayJobs that
Kueue would never release, quantities written as YAML numbers, resources no ClusterQueue counts,
impossible replica ranges, a worker group named like the head, and invalid labels.

Manifests are plain mappings here on purpose: the chart's output is YAML, not our models.
Pure; every problem found is reported, not only the first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flywheel.k8s.objects import QUEUE_LABEL
from flywheel.k8s.rayjob import MAX_RAYJOB_NAME_CHARS

Manifest = Mapping[str, Any]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_QUANTITY = re.compile(
    r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
_MAX_LABEL_CHARS = 63
_MAX_NAME_CHARS = 253
#: Kinds whose names must be DNS-1123 labels (they become host names or DNS labels).
_LABEL_NAMED_KINDS = frozenset({"Namespace", "Service", "RayCluster", "RayService"})
_QUOTA_FIELDS = ("nominalQuota", "borrowingLimit", "lendingLimit")


@dataclass(frozen=True)
class K8sProblem:
    """One broken rule in one object."""

    object: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.object}: {self.message} [{self.rule}]"


def check_manifests(
    manifests: Sequence[Manifest], context: Sequence[Manifest] = ()
) -> list[K8sProblem]:
    """Problems in ``manifests``; ``context`` holds objects they refer to (the teams' queues)."""
    everything = [*manifests, *context]
    problems: list[K8sProblem] = []
    for manifest in manifests:
        problems += _name_problems(manifest)
        problems += _label_problems(manifest)
        problems += _quantity_problems(manifest)
        if manifest.get("kind") in ("RayJob", "RayCluster", "RayService"):
            problems += _ray_problems(manifest, everything)
    return problems


def object_name(manifest: Manifest) -> str:
    """``Kind/namespace/name`` (``Kind/name`` when cluster-scoped) for messages."""
    meta = manifest.get("metadata") or {}
    parts = [str(manifest.get("kind")), meta.get("namespace"), str(meta.get("name"))]
    return "/".join(p for p in parts if p)


def _name_problems(manifest: Manifest) -> list[K8sProblem]:
    kind = manifest.get("kind")
    name = str((manifest.get("metadata") or {}).get("name", ""))
    where = object_name(manifest)
    if kind == "RayJob":
        if len(name) > MAX_RAYJOB_NAME_CHARS or not _DNS1035_LABEL.match(name):
            message = (
                f"RayJob name '{name}' must be a DNS-1035 label (a letter first) of at most "
                f"{MAX_RAYJOB_NAME_CHARS} characters: KubeRay derives the cluster and pod names"
            )
            return [K8sProblem(where, "name-length", message)]
        return []
    limit, pattern = (
        (_MAX_LABEL_CHARS, _DNS1123_LABEL)
        if kind in _LABEL_NAMED_KINDS
        else (_MAX_NAME_CHARS, _DNS1123_SUBDOMAIN)
    )
    if len(name) > limit or not pattern.match(name):
        message = f"name '{name}' must be lower case DNS name of at most {limit} characters"
        return [K8sProblem(where, "name-length", message)]
    return []


def _label_problems(manifest: Manifest) -> list[K8sProblem]:
    problems = []
    for labels in _label_maps(manifest):
        for key, value in labels.items():
            name = str(key).rsplit("/", 1)[-1]
            if len(name) > _MAX_LABEL_CHARS or not _LABEL_NAME.match(name):
                message = f"label key '{key}' is not a valid label name"
                problems.append(K8sProblem(object_name(manifest), "label-value", message))
            text = value if isinstance(value, str) else None
            if text is None or len(text) > _MAX_LABEL_CHARS or not _LABEL_VALUE.match(text):
                message = (
                    f"label {key}={value!r} must be a string of at most 63 letters, digits, "
                    "'-', '_' or '.', starting and ending with a letter or digit"
                )
                problems.append(K8sProblem(object_name(manifest), "label-value", message))
    return problems


def _label_maps(manifest: Manifest) -> Iterator[Mapping[str, Any]]:
    yield (manifest.get("metadata") or {}).get("labels") or {}
    for template in _pod_templates(manifest):
        yield (template.get("metadata") or {}).get("labels") or {}


def _quantity_problems(manifest: Manifest) -> list[K8sProblem]:
    problems = []
    for path, value in _quantities(manifest, ()):
        if not isinstance(value, str) or not _QUANTITY.match(value):
            message = (
                f'{".".join(path)}: quantity {value!r} must be a string such as "500m" or '
                '"8Gi" (a YAML number is rejected or misread)'
            )
            problems.append(K8sProblem(object_name(manifest), "quantity-string", message))
    return problems


def _quantities(node: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every quantity in an object: resource requests and limits, quota amounts."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _quantities(item, (*path, str(index)))
        return
    if not isinstance(node, Mapping):
        return
    for key, value in node.items():
        here = (*path, str(key))
        if key in ("requests", "limits", "hard") and isinstance(value, Mapping):
            yield from ((((*here, str(k)), v) for k, v in value.items()))
        elif key in _QUOTA_FIELDS:
            yield here, value
        else:
            yield from _quantities(value, here)


def _ray_problems(manifest: Manifest, everything: Sequence[Manifest]) -> list[K8sProblem]:
    where = object_name(manifest)
    spec = manifest.get("spec") or {}
    key = {"RayJob": "rayClusterSpec", "RayService": "rayClusterConfig"}.get(manifest["kind"])
    cluster = (spec.get(key) if key else spec) or {}
    problems = _group_problems(where, cluster.get("workerGroupSpecs") or [])
    labels = (manifest.get("metadata") or {}).get("labels") or {}
    if manifest["kind"] == "RayJob" and QUEUE_LABEL in labels:
        problems += _kueue_problems(manifest, spec, cluster, everything)
    return problems


def _group_problems(where: str, groups: Sequence[Manifest]) -> list[K8sProblem]:
    problems = []
    for group in groups:
        name = group.get("groupName")
        if name == "head":
            message = "a worker group is named 'head': KubeRay's head pods would share its labels"
            problems.append(K8sProblem(where, "worker-group-name", message))
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        replicas = group.get("replicas", low)
        if not low <= replicas <= high:
            message = (
                f"worker group '{name}': need minReplicas <= replicas <= maxReplicas, "
                f"got {low} <= {replicas} <= {high}"
            )
            problems.append(K8sProblem(where, "replicas-range", message))
    return problems


def _kueue_problems(
    manifest: Manifest, spec: Manifest, cluster: Manifest, everything: Sequence[Manifest]
) -> list[K8sProblem]:
    where = object_name(manifest)
    problems = []
    if spec.get("shutdownAfterJobFinishes") is not True:
        message = "a RayJob queued by Kueue needs shutdownAfterJobFinishes: true"
        problems.append(K8sProblem(where, "kueue-shutdown", message))
    if cluster.get("enableInTreeAutoscaling"):
        message = "Kueue admits a RayJob at a fixed size: set enableInTreeAutoscaling: false"
        problems.append(K8sProblem(where, "kueue-shutdown", message))
    covered = _covered_resources(manifest, everything)
    if covered is None:
        queue = manifest["metadata"]["labels"][QUEUE_LABEL]
        message = f"no LocalQueue '{queue}' with a ClusterQueue in its namespace"
        return [*problems, K8sProblem(where, "resource-coverage", message)]
    requested = {name for template in _pod_templates(manifest) for name in _requested(template)}
    for name in sorted(requested - covered):
        message = f"pods request '{name}', which the team's ClusterQueue does not cover"
        problems.append(K8sProblem(where, "resource-coverage", message))
    return problems


def _covered_resources(manifest: Manifest, everything: Sequence[Manifest]) -> set[str] | None:
    meta = manifest["metadata"]
    local = _find(everything, "LocalQueue", meta["labels"][QUEUE_LABEL], meta.get("namespace"))
    if local is None:
        return None
    cluster_queue = _find(everything, "ClusterQueue", (local.get("spec") or {}).get("clusterQueue"))
    if cluster_queue is None:
        return None
    groups = (cluster_queue.get("spec") or {}).get("resourceGroups") or []
    return {name for group in groups for name in group.get("coveredResources") or []}


def _find(
    manifests: Sequence[Manifest], kind: str, name: object, namespace: object = None
) -> Manifest | None:
    for manifest in manifests:
        meta = manifest.get("metadata") or {}
        same_namespace = namespace is None or meta.get("namespace") == namespace
        if manifest.get("kind") == kind and meta.get("name") == name and same_namespace:
            return manifest
    return None


def _pod_templates(manifest: Manifest) -> Iterator[Manifest]:
    spec = manifest.get("spec") or {}
    cluster = spec.get("rayClusterSpec") or spec.get("rayClusterConfig") or spec
    head = cluster.get("headGroupSpec")
    if isinstance(head, Mapping) and "template" in head:
        yield head["template"]
    for group in cluster.get("workerGroupSpecs") or []:
        if "template" in group:
            yield group["template"]
    for key in ("template", "submitterPodTemplate"):
        if isinstance(spec.get(key), Mapping):
            yield spec[key]


def _requested(template: Manifest) -> set[str]:
    names: set[str] = set()
    for container in (template.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        names |= set(resources.get("requests") or {}) | set(resources.get("limits") or {})
    return names
