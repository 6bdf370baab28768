"""Serving operations over an in-memory Serve backend (a real ServingBackend implementation),
the file document store and a real MLflow registry on SQLite: document, apply, aliases, restore."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from flywheel.backends.documents import FileDocumentStore
from flywheel.backends.serving import ApplicationState, DeploymentState
from flywheel.errors import ServeError, ServeInputError
from flywheel.rollout import ModelRoute, ServeTarget
from flywheel.serving.config import ServeConfig
from flywheel.serving_service import ServingService


class MemoryServe:
    """Runs whatever config it is given at once; ``broken`` versions fail to deploy."""

    def __init__(self) -> None:
        self.applied: list[ServeConfig] = []
        self.broken: set[str] = set()

    def apply(self, config: ServeConfig) -> None:
        self.applied.append(config)

    def applications(self) -> dict[str, ApplicationState]:
        if not self.applied:
            return {}
        return {app.name: self._state(app) for app in self.applied[-1].applications}

    def _state(self, app) -> ApplicationState:  # type: ignore[no-untyped-def]
        deployments = []
        failed = False
        for deployment in app.deployments:
            config = deployment.user_config
            route = ModelRoute.model_validate(config) if config else None
            failed = failed or bool(route and set(route.versions) & self.broken)
            generation = route.generation if route else None
            deployments.append(DeploymentState(deployment.name, "HEALTHY", 1, generation))
        status = "DEPLOY_FAILED" if failed else "RUNNING"
        return ApplicationState(app.name, status, "version failed to load", tuple(deployments))


@pytest.fixture
def registry(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.create_registered_model("digits")
    for _ in range(3):
        client.create_model_version("digits", source=str(tmp_path / "model"))
    return uri


@pytest.fixture
def serve() -> MemoryServe:
    return MemoryServe()


@pytest.fixture
def service(tmp_path: Path, registry: str, serve: MemoryServe) -> ServingService:
    target = ServeTarget(
        tracking_uri=registry, storage_root=str(tmp_path / "storage"), host="127.0.0.1",
        port=1, max_request_bytes=1024, dashboard_url="http://127.0.0.1:2",
    )  # fmt: skip
    store = FileDocumentStore(tmp_path / "storage" / "serving")
    return ServingService(store, serve, target, ready_timeout_s=5.0)


def aliases(uri: str) -> dict[str, str]:
    found = MlflowClient(uri).get_registered_model("digits").aliases
    return {alias: str(version) for alias, version in found.items()}  # SQLite answers ints


def test_deploy_rollout_promote_each_apply_the_document_and_derive_the_aliases(
    service: ServingService, serve: MemoryServe, registry: str
) -> None:
    deployed = service.deploy("digits", version="1")
    assert (deployed.champion, deployed.generation, deployed.versions) == ("1", 1, ("1",))
    assert aliases(registry) == {"champion": "1"}
    canary = service.rollout("digits", "2", "canary", 25.0)
    assert (canary.challenger, canary.mode, canary.challenger_percent) == ("2", "canary", 25.0)
    assert aliases(registry) == {"champion": "1", "challenger": "2"}
    route = ModelRoute.model_validate(serve.applied[-1].applications[1].deployments[0].user_config)
    assert route.versions == ("1", "2") and route.challenger_percent == 25.0
    promoted = service.promote("digits")
    assert (promoted.champion, promoted.challenger) == ("2", None)
    assert aliases(registry) == {"champion": "2"}
    assert service.document().generation == 3


def test_a_version_that_fails_to_load_changes_nothing(
    service: ServingService, serve: MemoryServe, registry: str
) -> None:
    service.deploy("digits", version="1")
    serve.broken.add("3")
    with pytest.raises(ServeError, match="could not run"):
        service.rollout("digits", "3", "canary", 10.0)
    document = service.document()
    assert document.models["digits"].challenger is None and document.generation == 3
    assert [a.name for a in serve.applied[-1].applications] == ["flywheel", "model-digits"]
    assert aliases(registry) == {"champion": "1"}


def test_unknown_versions_and_models_are_input_errors_that_change_nothing(
    service: ServingService, serve: MemoryServe
) -> None:
    with pytest.raises(ServeInputError, match="no version 9"):
        service.deploy("digits", version="9")
    with pytest.raises(ServeInputError, match="not served"):
        service.promote("digits")
    assert serve.applied == [] and service.document().generation == 0


def test_undeploy_removes_the_models_application(
    service: ServingService, serve: MemoryServe
) -> None:
    service.deploy("digits", version="1")
    gone = service.undeploy("digits")
    assert gone.champion is None and gone.versions == ()
    assert [a.name for a in serve.applied[-1].applications] == ["flywheel"]
