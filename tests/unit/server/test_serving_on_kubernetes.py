"""Serving on the kubernetes backend: the serving service applies its document to a RayService.

No API server and no KubeRay run here. The API is InMemoryKubeRayApi (a real implementation of
the thin protocol, which counts ``metadata.generation`` as the API server does), and KubeRay is
played by :class:`KubeRayPlayer`: the second time the RayService is read after a change of its
spec, it writes the status KubeRay v1.7.0 writes once Serve runs the new ``serveConfigV2``
(every application RUNNING, its deployments HEALTHY, ``observedGeneration`` caught up, Ready).
The first read still shows the old status, so the readiness wait is exercised. The model
registry is a real MLflow on SQLite; the document store a real one (a local folder, or a bucket
of moto's S3 server where the control plane's settings ask for ``s3://``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from flywheel.backends.documents import document_store
from flywheel.errors import PlatformError
from flywheel.k8s.backend import InMemoryKubeRayApi
from flywheel.k8s.rayjob import K8sTarget
from flywheel.k8s.rayservice import cluster_serve_target
from flywheel.k8s.serving_backend import RayServiceBackend
from flywheel.rollout import ModelRoute
from flywheel.server.__main__ import serving_plane
from flywheel.serving.config import document_to_serve_config
from flywheel.serving_service import ServingService
from flywheel.settings import Settings


class KubeRayPlayer(InMemoryKubeRayApi):
    """The in-memory API, with KubeRay reconciling each new spec on the second read after it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads_since_change = 0

    def apply_rayservice(self, namespace: str, manifest: dict[str, Any]) -> None:
        super().apply_rayservice(namespace, manifest)
        self.reads_since_change = 0

    def get_rayservice(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads_since_change += 1
        found = self.rayservices.get((namespace, name))
        if found is not None and self.reads_since_change >= 2:
            self.set_rayservice_status(namespace, name, _reconciled(found))
        return super().get_rayservice(namespace, name)


def _reconciled(rayservice: dict[str, Any]) -> dict[str, Any]:
    config = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    applications = {
        app["name"]: {
            "status": "RUNNING",
            "serveDeploymentStatuses": {
                d["name"]: {"status": "HEALTHY"} for d in app["deployments"]
            },
        }
        for app in config["applications"]
    }
    return {
        "observedGeneration": rayservice["metadata"]["generation"],
        "activeServiceStatus": {
            "applicationStatuses": applications,
            "rayClusterName": f"{rayservice['metadata']['name']}-raycluster-7k2vd",
        },
        "conditions": [{"type": "Ready", "status": "True", "reason": "NonZeroServeEndpoints"}],
        "numServeEndpoints": 1,
    }


@pytest.fixture
def registry(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.create_registered_model("digits")
    for _ in range(2):
        client.create_model_version("digits", source=str(tmp_path / "model"))
    return uri


def test_deploy_rollout_promote_end_with_the_promoted_serve_config_in_the_rayservice(
    tmp_path: Path, registry: str
) -> None:
    api = KubeRayPlayer()
    target = K8sTarget(tracking_uri=registry)
    serving_target = cluster_serve_target(target, 1024)
    backend = RayServiceBackend(api, target, "flywheel", "flywheel-serving")
    service = ServingService(
        document_store(str(tmp_path / "storage")), backend, serving_target, 5.0
    )
    service.deploy("digits", version="1")
    service.rollout("digits", "2", "canary", 25.0)
    promoted = service.promote("digits")
    assert (promoted.champion, promoted.challenger, promoted.generation) == ("2", None, 3)
    stored = api.get_rayservice("flywheel", "flywheel-serving")
    assert stored is not None and stored["metadata"]["generation"] == 3
    expected = document_to_serve_config(service.document(), serving_target).payload()
    assert yaml.safe_load(stored["spec"]["serveConfigV2"]) == expected
    ingress = expected["applications"][1]["deployments"][0]
    route = ModelRoute.model_validate(ingress["user_config"])
    assert (route.versions, route.generation) == (("2",), 3)


def test_the_control_plane_serves_through_the_rayservice_its_settings_name(
    s3_bucket: str, registry: str
) -> None:
    settings = Settings(
        backend="kubernetes", storage_root=f"s3://{s3_bucket}/flywheel",
        mlflow_tracking_uri=registry, serving_namespace="ml-serving", serving_name="models",
    )  # fmt: skip
    api = KubeRayPlayer()
    plane = serving_plane(settings, kube_api=api)
    assert plane.cluster.serve_url == "http://models-serve-svc.ml-serving.svc:8000"
    plane.operations.deploy("digits", version="1")
    assert list(api.rayservices) == [("ml-serving", "models")]
    assert document_store(settings.storage_root).read().models["digits"].champion == "1"
    elsewhere = settings.model_copy(update={"serving_gateway_url": "http://models.example:80"})
    assert serving_plane(elsewhere, kube_api=api).cluster.serve_url == "http://models.example:80"


def test_a_local_storage_root_stops_the_kubernetes_serving_plane_with_one_line(
    tmp_path: Path,
) -> None:
    settings = Settings(backend="kubernetes", storage_root=str(tmp_path))
    with pytest.raises(PlatformError, match="FLYWHEEL_STORAGE_ROOT"):
        serving_plane(settings, kube_api=KubeRayPlayer())
