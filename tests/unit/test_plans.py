"""Plan building: spec + settings -> JobPlan."""

from pathlib import Path

from flywheel.plans import (
    META_BUNDLE,
    META_EXPERIMENT,
    META_SPEC_SHA256,
    META_TEAM,
    PLAN_PATH,
    JobPlan,
    new_job_id,
    resumed_plan,
    spec_sha256,
    spec_to_job_plan,
)
from flywheel.settings import Settings
from flywheel.specs import ExperimentSpec

SPEC = ExperimentSpec.model_validate(
    {"name": "digits", "team": "vision", "task": {"module": "task"}}
)


def test_plan_carries_metadata_entrypoint_and_tracking(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, mlflow_port=5123)
    plan = spec_to_job_plan(SPEC, "train.yaml", b"name: digits\n", settings, "job-1")
    assert plan.entrypoint == f"python -m flywheel.runtime {PLAN_PATH}"
    assert plan.metadata == {
        META_TEAM: "vision",
        META_EXPERIMENT: "digits",
        META_SPEC_SHA256: spec_sha256(b"name: digits\n"),
        META_BUNDLE: f"{tmp_path / 'storage'}/bundles/job-1",
    }
    assert plan.tracking_uri == "http://127.0.0.1:5123"
    assert plan.env_vars["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5123"
    assert plan.env_vars["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.25"  # not Ray's 2 s a report
    assert plan.storage_root == str(tmp_path / "storage")


def test_plan_uses_the_spec_storage_root_when_given(tmp_path: Path) -> None:
    spec = ExperimentSpec.model_validate(
        {**SPEC.model_dump(), "storage": {"root": "s3://bucket/prefix"}}
    )
    plan = spec_to_job_plan(spec, "train.yaml", b"", Settings(home=tmp_path), "job-1")
    assert plan.storage_root == "s3://bucket/prefix"


def test_plan_round_trips_through_json(tmp_path: Path) -> None:
    plan = spec_to_job_plan(SPEC, "train.yaml", b"x", Settings(home=tmp_path), "job-1")
    assert JobPlan.model_validate_json(plan.model_dump_json()) == plan


def test_sha256_changes_with_the_bytes() -> None:
    assert spec_sha256(b"a") != spec_sha256(b"b")
    assert len(spec_sha256(b"a")) == 64


def test_job_ids_are_unique_and_readable() -> None:
    ids = {new_job_id(SPEC) for _ in range(50)}
    assert len(ids) == 50
    assert all(i.startswith("vision-digits-") for i in ids)


def test_a_resumed_plan_keeps_the_spec_under_a_new_id(tmp_path: Path) -> None:
    plan = spec_to_job_plan(SPEC, "train.yaml", b"x", Settings(home=tmp_path), "job-1")
    again = resumed_plan(plan, "job-2")
    assert (again.job_id, again.resume, again.spec) == ("job-2", True, plan.spec)
    assert again.metadata[META_BUNDLE].endswith("/bundles/job-2")
    assert not plan.resume


def test_a_kubernetes_plan_leaves_serving_to_the_control_plane_and_the_driver_defers(
    tmp_path: Path,
) -> None:
    from mlflow import MlflowClient

    from flywheel.runtime.driver import _serve
    from flywheel.tracking import TAG_SERVE_SPEC, RegisteredVersion

    local = spec_to_job_plan(SPEC, "train.yaml", b"x", Settings(home=tmp_path), "job-1")
    assert local.serve_target is not None and local.serve_target.dashboard_url
    registry = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = Settings(
        home=tmp_path, backend="kubernetes", storage_root="s3://bucket/fw",
        mlflow_tracking_uri=registry,
    )  # fmt: skip
    served = ExperimentSpec.model_validate({**SPEC.model_dump(exclude_unset=True), "serve": {}})
    plan = spec_to_job_plan(served, "train.yaml", b"x", settings, "job-1")
    assert plan.serve_target is None
    client = MlflowClient(registry)
    client.create_registered_model("digits")
    client.create_model_version("digits", str(tmp_path))
    _serve(plan, RegisteredVersion("digits", "1", "models:/digits/1"))  # no Serve to reach
    tag = client.get_model_version("digits", "1").tags[TAG_SERVE_SPEC]
    assert tag == served.serve.model_dump_json()  # type: ignore[union-attr]
