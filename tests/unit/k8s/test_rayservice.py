"""The serving document as a RayService: strict against KubeRay's CRD, the rule checks, its
``serveConfigV2``, sizing from the document, applying it and reading its status back.

Where the status documents come from:
- RUNNING_FROM_DOCS is the status Ray's guide "Serve a Large Language Model with vLLM on
  Kubernetes" shows for a healthy RayService
  (ray-project/ray, doc/source/cluster/kubernetes/examples/vllm-rayservice.md, the output of
  `kubectl get rayservice llama-3-8b -o yaml`), with the Ready condition KubeRay v1.7.0 sets
  (ray-operator/apis/ray/v1/rayservice_types.go: condition types Ready and UpgradeInProgress).
- The others use the values Serve and KubeRay write: Serve's application statuses (DEPLOYING,
  DEPLOY_FAILED, RUNNING, UNHEALTHY) and deployment statuses (HEALTHY, UNHEALTHY), KubeRay's
  pendingServiceStatus during a zero-downtime upgrade.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from flywheel.errors import K8sError
from flywheel.k8s.backend import InMemoryKubeRayApi, KubernetesBackend
from flywheel.k8s.checks import check_manifests
from flywheel.k8s.rayjob import K8sTarget
from flywheel.k8s.rayservice import (
    SERVICE_NAME,
    SERVICE_NAMESPACE,
    cluster_serve_target,
    document_to_rayservice,
)
from flywheel.k8s.service_status import ServingState, reconcile_service
from flywheel.serving.config import document_to_serve_config
from flywheel.serving.document import ServingDocument, deploy, start_rollout
from flywheel.specs.serving import ServeSpec

from .conftest import Validate

MAX_REQUEST_BYTES = 4 * 1024 * 1024
CPU_SPEC = ServeSpec.model_validate(
    {"autoscaling": {"min_replicas": 2, "max_replicas": 6},
     "resources": {"num_cpus": 1.5, "memory_mib": 12288}}
)  # fmt: skip
GPU_SPEC = ServeSpec.model_validate({"resources": {"num_cpus": 2, "num_gpus": 0.5}})


def document() -> ServingDocument:
    served = deploy(ServingDocument(), "digits", "3", CPU_SPEC)
    served = start_rollout(served, "digits", "4", "canary", 10.0, now_s=1.0)
    return deploy(served, "llm", "1", GPU_SPEC)


def manifest(doc: ServingDocument | None = None, team: str | None = None) -> dict[str, Any]:
    service = document_to_rayservice(doc or document(), K8sTarget(), MAX_REQUEST_BYTES, team)
    return service.to_manifest()


@pytest.mark.parametrize("doc", [document(), ServingDocument()], ids=["two-models", "empty"])
def test_the_rayservice_validates_strictly_and_breaks_no_rule(
    validate: Validate, doc: ServingDocument
) -> None:
    rendered = manifest(doc)
    validate(rendered)
    assert check_manifests([rendered]) == []
    assert rendered["metadata"] == {
        "name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE,
        "labels": {"app.kubernetes.io/managed-by": "flywheel"},
    }  # fmt: skip


def test_serve_config_v2_is_the_document_rendered_for_the_cluster() -> None:
    config = yaml.safe_load(manifest()["spec"]["serveConfigV2"])
    target = K8sTarget()
    assert config["http_options"]["host"] == "0.0.0.0"
    apps = {a["name"]: a for a in config["applications"]}
    assert set(apps) == {"flywheel", "model-digits", "model-llm"}
    digits = apps["model-digits"]
    assert digits["args"]["storage_root"] == target.storage_root.rstrip("/")
    assert digits["args"]["tracking_uri"] == target.tracking_uri
    route = digits["deployments"][0]["user_config"]
    assert (route["champion"], route["challenger"], route["challenger_percent"]) == ("3", "4", 10.0)
    assert "/home" not in manifest()["spec"]["serveConfigV2"]  # no local paths


def test_the_serve_config_equals_the_one_the_local_backend_applies() -> None:
    doc = document()
    rendered = yaml.safe_load(manifest(doc)["spec"]["serveConfigV2"])
    expected = document_to_serve_config(doc, cluster_serve_target(K8sTarget(), MAX_REQUEST_BYTES))
    assert rendered == expected.payload()


def test_worker_groups_are_sized_from_the_document_s_resources() -> None:
    cluster = manifest()["spec"]["rayClusterConfig"]
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    cpu, gpu = groups["cpu-serve"], groups["gpu-serve"]
    assert (cpu["minReplicas"], cpu["replicas"], cpu["maxReplicas"]) == (2, 2, 6)
    assert cpu["template"]["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "2", "memory": "12Gi"
    }  # fmt: skip
    assert (gpu["minReplicas"], gpu["maxReplicas"]) == (1, 1)
    requests = gpu["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert requests["nvidia.com/gpu"] == "1"
    assert gpu["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert cluster["enableInTreeAutoscaling"] is True
    head = cluster["headGroupSpec"]
    assert {"name": "serve", "containerPort": 8000} in head["template"]["spec"]["containers"][0][
        "ports"
    ]


def test_a_team_s_rayservice_carries_its_label() -> None:
    rendered = manifest(team="vision")
    assert rendered["metadata"]["name"] == "vision-serving"
    assert rendered["metadata"]["labels"]["flywheel.dev/team"] == "vision"


def test_the_checks_catch_a_broken_rayservice() -> None:
    rendered = manifest()
    groups = rendered["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    groups[0] |= {"groupName": "head", "minReplicas": 5}
    groups[1]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = 2
    rendered["metadata"]["name"] = "x" * 64
    rules = sorted(p.rule for p in check_manifests([rendered]))
    assert rules == ["name-length", "quantity-string", "replicas-range", "worker-group-name"]


RUNNING_FROM_DOCS = yaml.safe_load("""\
status:
  activeServiceStatus:
    applicationStatuses:
      llm:
        healthLastUpdateTime: "2024-08-08T22:56:50Z"
        serveDeploymentStatuses:
          VLLMDeployment:
            healthLastUpdateTime: "2024-08-08T22:56:50Z"
            status: HEALTHY
        status: RUNNING
  conditions:
  - lastTransitionTime: "2024-08-08T22:56:50Z"
    reason: NonZeroServeEndpoints
    status: "True"
    type: Ready
""")
DEPLOYING = {"status": {"activeServiceStatus": {"applicationStatuses": {
    "flywheel": {"status": "RUNNING"}, "model-digits": {"status": "DEPLOYING"}}}}}  # fmt: skip
FAILED = {"status": {"activeServiceStatus": {"applicationStatuses": {"model-digits": {
    "status": "DEPLOY_FAILED", "message": "",
    "serveDeploymentStatuses": {"ingress": {"status": "UNHEALTHY"}}}}}}}  # fmt: skip
UPGRADING = {"status": {
    "activeServiceStatus": RUNNING_FROM_DOCS["status"]["activeServiceStatus"],
    "pendingServiceStatus": {"rayClusterName": "flywheel-serving-raycluster-7k2vd",
                             "applicationStatuses": {"llm": {"status": "DEPLOYING"}}},
    "conditions": [{"type": "UpgradeInProgress", "status": "True"}],
}}  # fmt: skip


@pytest.mark.parametrize(
    ("document", "state"),
    [
        (RUNNING_FROM_DOCS, ServingState.RUNNING),
        ({"status": {}}, ServingState.DEPLOYING),
        ({}, ServingState.DEPLOYING),
        (DEPLOYING, ServingState.DEPLOYING),
        (FAILED, ServingState.UNHEALTHY),
        (UPGRADING, ServingState.UPGRADING),
    ],
)
def test_rayservice_statuses_reconcile(document: dict[str, Any], state: ServingState) -> None:
    assert reconcile_service(document).state == state


def test_a_failed_application_says_which_deployment() -> None:
    assert reconcile_service(FAILED).reason == "model-digits: DEPLOY_FAILED: ingress UNHEALTHY"


def test_the_backend_applies_the_rayservice_and_follows_kuberay() -> None:
    api = InMemoryKubeRayApi()
    backend = KubernetesBackend(api)
    service = document_to_rayservice(document(), K8sTarget(), MAX_REQUEST_BYTES)
    with pytest.raises(K8sError, match="no RayService"):
        backend.serving_state(SERVICE_NAMESPACE, SERVICE_NAME)
    backend.apply_serving(service)
    assert backend.serving_state(SERVICE_NAMESPACE, SERVICE_NAME).state == ServingState.DEPLOYING
    api.set_rayservice_status(SERVICE_NAMESPACE, SERVICE_NAME, RUNNING_FROM_DOCS["status"])
    assert backend.serving_state(SERVICE_NAMESPACE, SERVICE_NAME).state == ServingState.RUNNING
    changed = document_to_rayservice(ServingDocument(), K8sTarget(), MAX_REQUEST_BYTES)
    backend.apply_serving(changed)  # an update keeps what KubeRay wrote
    stored = api.get_rayservice(SERVICE_NAMESPACE, SERVICE_NAME)
    assert stored is not None
    assert stored["spec"] == changed.to_manifest()["spec"]
    assert stored["status"] == RUNNING_FROM_DOCS["status"]
