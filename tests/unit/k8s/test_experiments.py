"""The control plane's backend choice, and the Kubernetes experiment backend built from settings.

The Kubernetes side runs over :class:`~flywheel.k8s.backend.InMemoryKubeRayApi` (the real
implementation of the API protocol that keeps objects in a dict); bundles go to a local folder.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from flywheel.backends.ray_jobs import RayJobsBackend
from flywheel.errors import JobNotFoundError, PlatformError
from flywheel.k8s.backend import InMemoryKubeRayApi
from flywheel.k8s.objects import PRIORITY_LABEL, QUEUE_LABEL
from flywheel.plans import META_BUNDLE, spec_to_job_plan
from flywheel.server.backend_choice import experiment_backend
from flywheel.server.kubernetes_backend import KubernetesExperimentBackend, target_from_settings
from flywheel.settings import Settings
from flywheel.specs.loading import load_spec
from flywheel.specs.teams import load_teams

from .conftest import REPO, Validate
from .test_status import ADMITTED, INITIALIZING, RUNNING, SUCCEEDED

TEAMS = load_teams(REPO / "cluster/teams.yaml")
NS = "flywheel-team-vision"


def k8s_settings(tmp_path: Path, **changes: object) -> Settings:
    return Settings(
        home=tmp_path / "home", backend="kubernetes", storage_root="s3://flywheel/storage",
        mlflow_tracking_uri="http://flywheel-mlflow.flywheel.svc:5000", **changes,
    )  # fmt: skip


def plan_with_bundle(tmp_path: Path, job_id: str = "vision-digits-1a2b3c4d") -> tuple:
    spec = load_spec(REPO / "experiments/digits/train.yaml")
    plan = spec_to_job_plan(spec, "train.yaml", b"", Settings(home=tmp_path / "home"), job_id)
    plan = plan.model_copy(update={"metadata": {**plan.metadata, META_BUNDLE: str(tmp_path / "b")}})
    folder = tmp_path / "exp"
    (folder / "pkg").mkdir(parents=True)
    (folder / "task.py").write_text("x = 1\n")
    (folder / "pkg" / "m.py").write_text("y = 2\n")
    return plan, folder


def test_the_local_backend_is_the_default(tmp_path: Path) -> None:
    backend = experiment_backend(Settings(home=tmp_path), TEAMS)
    assert isinstance(backend, RayJobsBackend)


def test_kubernetes_selects_the_rayjob_backend(tmp_path: Path) -> None:
    backend = experiment_backend(k8s_settings(tmp_path), TEAMS, InMemoryKubeRayApi())
    assert isinstance(backend, KubernetesExperimentBackend)


def test_a_local_storage_root_is_refused_on_kubernetes(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, backend="kubernetes")
    with pytest.raises(PlatformError, match="FLYWHEEL_STORAGE_ROOT"):
        experiment_backend(settings, TEAMS, InMemoryKubeRayApi())


def test_grace_period_and_ttl_of_the_settings_reach_the_rayjob(
    tmp_path: Path, validate: Validate
) -> None:
    api = InMemoryKubeRayApi()
    settings = k8s_settings(tmp_path, job_grace_period_s=600, job_ttl_s=60, job_image="r/i:2")
    backend = experiment_backend(settings, TEAMS, api)
    plan, folder = plan_with_bundle(tmp_path)

    assert backend.submit(plan, folder) == plan.job_id

    manifest = api.rayjobs[(NS, plan.job_id)]
    validate(manifest)
    spec = manifest["spec"]
    assert spec["ttlSecondsAfterFinished"] == 60
    cluster = spec["rayClusterSpec"]
    pods = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    assert {p["template"]["spec"]["terminationGracePeriodSeconds"] for p in pods} == {600}
    assert {p["template"]["spec"]["containers"][0]["image"] for p in pods} == {"r/i:2"}
    labels = manifest["metadata"]["labels"]
    assert (labels[QUEUE_LABEL], labels[PRIORITY_LABEL]) == (
        "vision",
        TEAMS.team("vision").priority,
    )
    with zipfile.ZipFile(io.BytesIO((tmp_path / "b.zip").read_bytes())) as archive:
        assert sorted(archive.namelist()) == ["bundle/pkg/m.py", "bundle/task.py"]


def test_the_queue_sees_kueue_and_kuberay_states(tmp_path: Path) -> None:
    api = InMemoryKubeRayApi()
    backend = KubernetesExperimentBackend(api, TEAMS, target_from_settings(k8s_settings(tmp_path)))
    plan, folder = plan_with_bundle(tmp_path)
    backend.submit(plan, folder)
    name = plan.job_id
    seen = [backend.get(name).state]
    api.patch_rayjob_suspend(NS, name, False)
    api.set_workload(NS, name, ADMITTED)
    api.set_status(NS, name, INITIALIZING)
    seen.append(backend.get(name).state)
    api.set_status(NS, name, RUNNING)
    seen.append(backend.get(name).state)
    assert [j.job_id for j in backend.list()] == [name]
    assert backend.stop(name) is True
    seen.append(backend.get(name).state)
    assert backend.stop(name) is False
    assert seen == ["PENDING", "PENDING", "RUNNING", "STOPPED"]
    assert api.rayjobs[(NS, name)]["spec"]["suspend"] is True
    assert backend.get(name).team == "vision"
    assert f"kubectl logs -n {NS} job/{name}" in backend.logs(name)
    with pytest.raises(JobNotFoundError):
        backend.get("vision-nothing-00000000")


def test_a_finished_job_reports_success(tmp_path: Path) -> None:
    api = InMemoryKubeRayApi()
    backend = KubernetesExperimentBackend(api, TEAMS, target_from_settings(k8s_settings(tmp_path)))
    plan, folder = plan_with_bundle(tmp_path)
    backend.submit(plan, folder)
    api.patch_rayjob_suspend(NS, plan.job_id, False)
    api.set_status(NS, plan.job_id, SUCCEEDED)
    assert backend.get(plan.job_id).finished


def test_capacity_is_what_the_teams_file_grants(tmp_path: Path) -> None:
    backend = KubernetesExperimentBackend(
        InMemoryKubeRayApi(), TEAMS, target_from_settings(k8s_settings(tmp_path))
    )
    assert backend.capacity().cpu == sum(t.quota.cpu for t in TEAMS.teams)


def test_outside_a_pod_the_kubernetes_backend_says_where_it_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(PlatformError, match="in a pod with a ServiceAccount"):
        experiment_backend(k8s_settings(tmp_path), TEAMS)
