"""Strict validation of rendered objects against the real schemas, shared by the k8s tests.

Built-in kinds: kubernetes-validate's strict JSON schemas of Kubernetes 1.33 (the oldest version
flywheel supports) and of the newest it ships. ray.io and kueue.x-k8s.io objects: the CRDs'
openAPIV3Schema from ``../shared/k8s-schemas`` (KubeRay v1.7.0, Kueue v0.19.2; see SOURCES.md
there), made strict: ``additionalProperties: false`` on every object schema with properties that
does not preserve unknown fields. The API server would silently drop an unknown field; we reject it.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
#: Where the schemas are unless K8S_SCHEMAS_DIR names another folder (see :func:`schemas_dir`).
SCHEMAS = REPO.parent / "shared" / "k8s-schemas"
KUBERNETES_VERSIONS = ("1.33.0", kubernetes_validate.latest_version())

CRD_FILES = {
    ("ray.io", "RayJob"): "kuberay/ray.io_rayjobs.yaml",
    ("ray.io", "RayCluster"): "kuberay/ray.io_rayclusters.yaml",
    ("ray.io", "RayService"): "kuberay/ray.io_rayservices.yaml",
    ("kueue.x-k8s.io", "ClusterQueue"): "kueue/kueue.x-k8s.io_clusterqueues.yaml",
    ("kueue.x-k8s.io", "LocalQueue"): "kueue/kueue.x-k8s.io_localqueues.yaml",
    ("kueue.x-k8s.io", "ResourceFlavor"): "kueue/kueue.x-k8s.io_resourceflavors.yaml",
    (
        "kueue.x-k8s.io",
        "WorkloadPriorityClass",
    ): "kueue/kueue.x-k8s.io_workloadpriorityclasses.yaml",
    ("kueue.x-k8s.io", "Cohort"): "kueue/kueue.x-k8s.io_cohorts.yaml",
}

Validate = Callable[[Mapping[str, Any]], None]


@functools.cache
def schemas_dir() -> Path:
    """The CRD schemas: ``$K8S_SCHEMAS_DIR``, else the first ``shared/k8s-schemas`` found beside
    the repository or a folder above it (a git worktree may live deeper than the main checkout)."""
    override = os.environ.get("K8S_SCHEMAS_DIR")
    if override:
        return Path(override)
    for folder in REPO.parents:
        if (folder / "shared" / "k8s-schemas").is_dir():
            return folder / "shared" / "k8s-schemas"
    return SCHEMAS


@functools.cache
def strict_crd_validator(group: str, version: str, kind: str) -> jsonschema.Draft7Validator:
    """A validator of one CRD version's schema, made strict."""
    path = schemas_dir() / CRD_FILES[(group, kind)]
    crd = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return jsonschema.Draft7Validator(make_strict(served["schema"]["openAPIV3Schema"]))


def make_strict(schema: Any) -> Any:
    """A copy of ``schema`` that rejects unknown fields wherever the schema lists its fields."""
    schema = copy.deepcopy(schema)
    _tighten(schema)
    return schema


def _tighten(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _tighten(item)
        return
    if not isinstance(node, dict):
        return
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    for value in node.values():
        _tighten(value)


def validate_manifest(manifest: Mapping[str, Any]) -> None:
    """Raise if ``manifest`` does not validate strictly against its kind's real schema."""
    group, _, version = str(manifest["apiVersion"]).rpartition("/")
    if (group, manifest["kind"]) in CRD_FILES:
        strict_crd_validator(group, version, manifest["kind"]).validate(manifest)
        return
    for kubernetes_version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(dict(manifest), kubernetes_version, strict=True)


@pytest.fixture(scope="session")
def validate() -> Validate:
    """Strict schema validation of one object (see the module docstring)."""
    if not schemas_dir().is_dir():
        pytest.fail(
            f"the CRD schemas are missing: expected them at {SCHEMAS} (or set K8S_SCHEMAS_DIR)"
        )
    return validate_manifest
