"""RayServiceBackend: the Serve config applied as a RayService, its status read back as the
applications the serving service waits on, and the API's refusals as ServeErrors.

Where the status documents come from (each is KubeRay's own output, as published):
- LLM_STATUS: Ray's guide "Serve a Large Language Model using Ray Serve LLM on Kubernetes"
  (ray-project/ray, doc/source/cluster/kubernetes/examples/rayserve-llm-example.md), the output
  of `kubectl get rayservice ray-serve-llm -o yaml`;
- VLLM_STATUS: the vLLM guide (doc/source/cluster/kubernetes/examples/vllm-rayservice.md), the
  same command's output (RUNNING_FROM_DOCS of tests/unit/k8s/test_rayservice.py);
- FRUIT_UPDATING: Ray's RayService user guide, Step 7 (in-place update: MangoStand UPDATING) and
  Step 5 (the other applications RUNNING and HEALTHY)
  (doc/source/cluster/kubernetes/user-guides/rayservice.md), `kubectl describe` output written
  back in the CRD's field names (describe spaces camelCase names: "Mango Stand" is MangoStand).
``observedGeneration`` is added where a test needs it: KubeRay v1.7.0 writes it into every status
(``calculateStatus`` in ray-operator/controllers/ray/rayservice_controller.go sets it to
``metadata.generation``; the CRD in ../shared/k8s-schemas lists ``status.observedGeneration``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
import yaml
from kubernetes import client

from flywheel.errors import ServeError
from flywheel.k8s.backend import InMemoryKubeRayApi
from flywheel.k8s.checks import check_manifests
from flywheel.k8s.client import KubernetesApi
from flywheel.k8s.rayjob import K8sTarget
from flywheel.k8s.rayservice import cluster_serve_target, serve_service_url
from flywheel.k8s.serving_backend import RayServiceBackend
from flywheel.serving.config import document_to_serve_config
from flywheel.serving.document import ServingDocument, deploy, start_rollout
from flywheel.serving.state import ApplicationState, DeploymentState
from flywheel.specs.serving import ServeSpec

from .conftest import Validate
from .test_client import FakeApiServer
from .test_rayservice import RUNNING_FROM_DOCS

NAMESPACE, NAME = "serving", "models"
SECRET_TOKEN = "eyJhbGciOiJSUzI1NiJ9.not-a-real-serviceaccount-token"

LLM_STATUS = yaml.safe_load("""\
activeServiceStatus:
  applicationStatuses:
    llms:
      serveDeploymentStatuses:
        LLMDeployment:qwen2_5-7b-instruct:
          status: HEALTHY
        LLMRouter:
          status: HEALTHY
      status: RUNNING
""")
VLLM_STATUS = RUNNING_FROM_DOCS["status"]
FRUIT_UPDATING = yaml.safe_load("""\
activeServiceStatus:
  applicationStatuses:
    fruit_app:
      serveDeploymentStatuses:
        FruitMarket:
          status: HEALTHY
        MangoStand:
          status: UPDATING
      status: RUNNING
    math_app:
      serveDeploymentStatuses:
        Adder:
          status: HEALTHY
      status: RUNNING
conditions:
- lastTransitionTime: "2025-02-13T18:28:51Z"
  message: Number of serve endpoints is greater than 0
  observedGeneration: 1
  reason: NonZeroServeEndpoints
  status: "True"
  type: Ready
- lastTransitionTime: "2025-02-13T18:28:00Z"
  message: Active Ray cluster exists and no pending Ray cluster
  observedGeneration: 1
  reason: NoPendingCluster
  status: "False"
  type: UpgradeInProgress
""")


def served() -> ServingDocument:
    spec = ServeSpec.model_validate({"autoscaling": {"min_replicas": 1, "max_replicas": 3}})
    document = deploy(ServingDocument(), "digits", "3", spec)
    return start_rollout(document, "digits", "4", "canary", 10.0, now_s=1.0)


def backend_over(api: Any) -> RayServiceBackend:
    return RayServiceBackend(api, K8sTarget(), NAMESPACE, NAME)


def applied(document: ServingDocument | None = None) -> tuple[InMemoryKubeRayApi, dict[str, Any]]:
    """The in-memory API after the backend applied ``document``'s config, and the RayService."""
    api = InMemoryKubeRayApi()
    config = document_to_serve_config(document or served(), cluster_serve_target(K8sTarget(), 1024))
    backend_over(api).apply(config)
    stored = api.get_rayservice(NAMESPACE, NAME)
    assert stored is not None
    return api, stored


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (LLM_STATUS, {"llms": ApplicationState("llms", "RUNNING", "", (
            DeploymentState("LLMDeployment:qwen2_5-7b-instruct", "HEALTHY", 0, None),
            DeploymentState("LLMRouter", "HEALTHY", 0, None)))}),
        (VLLM_STATUS, {"llm": ApplicationState("llm", "RUNNING", "", (
            DeploymentState("VLLMDeployment", "HEALTHY", 0, None),))}),
        (FRUIT_UPDATING, {
            "fruit_app": ApplicationState("fruit_app", "RUNNING", "", (
                DeploymentState("FruitMarket", "HEALTHY", 0, None),
                DeploymentState("MangoStand", "UPDATING", 0, None))),
            "math_app": ApplicationState("math_app", "RUNNING", "", (
                DeploymentState("Adder", "HEALTHY", 0, None),))}),
        ({}, {}),
    ],
    ids=["llm-two-deployments", "vllm", "in-place-update", "no-status-yet"],
)  # fmt: skip
def test_kuberay_s_status_documents_map_to_applications(
    status: dict[str, Any], expected: dict[str, ApplicationState]
) -> None:
    api = InMemoryKubeRayApi()
    api.rayservices[(NAMESPACE, NAME)] = {"metadata": {"name": NAME, "generation": 1}, "spec": {}}
    api.set_rayservice_status(NAMESPACE, NAME, status)
    assert backend_over(api).applications() == expected


def test_no_rayservice_yet_means_no_applications() -> None:
    assert backend_over(InMemoryKubeRayApi()).applications() == {}


def test_the_route_generation_shows_once_kuberay_observed_the_spec() -> None:
    api, stored = applied()
    assert stored["metadata"]["generation"] == 1
    healthy = {"status": "HEALTHY"}
    running = {"activeServiceStatus": {"applicationStatuses": {
        "flywheel": {"status": "RUNNING", "serveDeploymentStatuses": {"root": healthy}},
        "model-digits": {"status": "RUNNING", "serveDeploymentStatuses": {"ingress": healthy}},
    }}}  # fmt: skip
    backend = backend_over(api)
    api.set_rayservice_status(NAMESPACE, NAME, running)  # no observedGeneration: not yet seen
    assert backend.applications()["model-digits"].deployments[0].generation is None
    api.set_rayservice_status(NAMESPACE, NAME, running | {"observedGeneration": 1})
    apps = backend.applications()
    assert apps["model-digits"].deployments == (DeploymentState("ingress", "HEALTHY", 0, 2),)
    assert apps["flywheel"].deployments == (DeploymentState("root", "HEALTHY", 0, None),)
    pending = {"pendingServiceStatus": {"rayClusterName": "models-raycluster-7k2vd"}}
    api.set_rayservice_status(NAMESPACE, NAME, running | {"observedGeneration": 1} | pending)
    assert backend.applications()["model-digits"].deployments[0].generation is None


def test_a_changed_spec_hides_the_generation_until_kuberay_observes_it() -> None:
    api, _ = applied()
    api.set_rayservice_status(NAMESPACE, NAME, {"observedGeneration": 1, "activeServiceStatus": {
        "applicationStatuses": {"model-digits": {"status": "RUNNING", "serveDeploymentStatuses": {
            "ingress": {"status": "HEALTHY"}}}}}})  # fmt: skip
    backend = backend_over(api)
    assert backend.applications()["model-digits"].deployments[0].generation == 2
    promoted = deploy(served(), "digits", "4", ServeSpec())
    backend.apply(document_to_serve_config(promoted, cluster_serve_target(K8sTarget(), 1024)))
    stored = api.get_rayservice(NAMESPACE, NAME)
    assert stored is not None and stored["metadata"]["generation"] == 2
    assert backend.applications()["model-digits"].deployments[0].generation is None
    backend.apply(document_to_serve_config(promoted, cluster_serve_target(K8sTarget(), 1024)))
    stored = api.get_rayservice(NAMESPACE, NAME)
    assert stored is not None and stored["metadata"]["generation"] == 2  # same spec, same one


def test_the_applied_rayservice_validates_strictly_and_breaks_no_rule(validate: Validate) -> None:
    _, stored = applied()
    manifest = {k: v for k, v in stored.items() if k != "status"}
    manifest["metadata"] = {k: v for k, v in manifest["metadata"].items() if k != "generation"}
    validate(manifest)
    assert check_manifests([manifest]) == []
    assert (manifest["metadata"]["name"], manifest["metadata"]["namespace"]) == (NAME, NAMESPACE)
    config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    assert config["http_options"]["host"] == "0.0.0.0" and config["http_options"]["port"] == 8000
    assert [a["name"] for a in config["applications"]] == ["flywheel", "model-digits"]


def test_the_gateway_is_the_serve_service_kuberay_creates() -> None:
    assert serve_service_url(NAME, NAMESPACE) == "http://models-serve-svc.serving.svc:8000"


class RefusingApiServer(FakeApiServer):
    """An API server whose RBAC lets nobody touch RayServices in the namespace ``locked``."""

    def do_GET(self) -> None:
        if "/namespaces/locked/" in self.path:
            return self._reply(403, {"reason": "Forbidden"})
        return super().do_GET()

    def do_POST(self) -> None:
        if "/namespaces/locked/" in self.path:
            return self._reply(403, {"reason": "Forbidden"})
        return super().do_POST()


@pytest.fixture
def token_api() -> Iterator[tuple[KubernetesApi, ThreadingHTTPServer]]:
    """The real kubernetes-client adapter, sending a bearer token, against RefusingApiServer."""
    FakeApiServer.objects, FakeApiServer.patches = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusingApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    configuration = client.Configuration(host=f"http://127.0.0.1:{server.server_port}")
    configuration.api_key = {"authorization": SECRET_TOKEN}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    configuration.retries = 0
    with client.ApiClient(configuration) as api_client:
        yield KubernetesApi(client.CustomObjectsApi(api_client)), server
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_refused_apply_is_a_serve_error_naming_the_rayservice_without_the_token(
    token_api: tuple[KubernetesApi, ThreadingHTTPServer],
) -> None:
    api, _ = token_api
    backend = RayServiceBackend(api, K8sTarget(), "locked", NAME)
    config = document_to_serve_config(served(), cluster_serve_target(K8sTarget(), 1024))
    with pytest.raises(ServeError, match=r"RayService locked/models.*403 Forbidden") as applying:
        backend.apply(config)
    with pytest.raises(ServeError, match="cannot read RayService locked/models") as reading:
        backend.applications()
    for error in (applying.value, reading.value):
        assert SECRET_TOKEN not in str(error) and "Bearer" not in str(error)
    assert "FLYWHEEL_SERVING_NAMESPACE" in str(applying.value)  # what to check next


def test_the_real_adapter_creates_then_updates_the_rayservice(
    token_api: tuple[KubernetesApi, ThreadingHTTPServer],
) -> None:
    api, _ = token_api
    backend = RayServiceBackend(api, K8sTarget(), NAMESPACE, NAME)
    backend.apply(document_to_serve_config(served(), cluster_serve_target(K8sTarget(), 1024)))
    backend.apply(document_to_serve_config(ServingDocument(), cluster_serve_target(K8sTarget(), 1)))
    stored = FakeApiServer.objects[(NAMESPACE, "rayservices", NAME)]
    assert [a["name"] for a in yaml.safe_load(stored["spec"]["serveConfigV2"])["applications"]] == [
        "flywheel"
    ]
    assert FakeApiServer.patches == ["application/merge-patch+json"]
    assert backend.applications() == {}  # no status written yet


def test_an_unreachable_api_server_is_a_serve_error_naming_the_rayservice(
    token_api: tuple[KubernetesApi, ThreadingHTTPServer],
) -> None:
    api, server = token_api
    server.shutdown()
    server.server_close()
    backend = RayServiceBackend(api, K8sTarget(), NAMESPACE, NAME)
    with pytest.raises(ServeError, match=r"RayService serving/models.*does not answer") as raised:
        backend.applications()
    assert SECRET_TOKEN not in str(raised.value)
