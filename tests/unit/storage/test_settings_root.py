"""FLYWHEEL_STORAGE_ROOT: the platform's default root; a spec's storage.root overrides it; with
an S3 root MLflow's artifacts go to the bucket."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.errors import FlywheelError
from flywheel.local import mlflow_artifacts_destination
from flywheel.plans import spec_to_job_plan
from flywheel.settings import Settings
from flywheel.specs import ExperimentSpec

SPEC = {"name": "digits", "team": "vision", "task": {"module": "task"}}


def test_the_default_root_is_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLYWHEEL_STORAGE_ROOT", raising=False)
    assert Settings(home=tmp_path).storage_root == str(tmp_path / "storage")


def test_the_root_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_STORAGE_ROOT", "s3://team-bucket/fw")
    settings = Settings(home=tmp_path)
    plan = spec_to_job_plan(
        ExperimentSpec.model_validate(SPEC), "train.yaml", b"", settings, "job-1"
    )
    assert plan.storage_root == "s3://team-bucket/fw"
    assert plan.metadata["flywheel.bundle"] == "s3://team-bucket/fw/bundles/job-1"


def test_the_spec_root_overrides_the_setting(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, storage_root="s3://platform/fw")
    spec = ExperimentSpec.model_validate({**SPEC, "storage": {"root": str(tmp_path / "own")}})
    plan = spec_to_job_plan(spec, "train.yaml", b"", settings, "job-1")
    assert plan.storage_root == str(tmp_path / "own")


def test_a_setting_of_an_unknown_kind_fails_before_anything_is_written(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, storage_root="gs://bucket/fw")
    with pytest.raises(FlywheelError, match="use a local directory or s3://bucket/prefix"):
        spec_to_job_plan(ExperimentSpec.model_validate(SPEC), "train.yaml", b"", settings, "j")
    assert not list(tmp_path.iterdir())


def test_mlflow_artifacts_go_to_the_bucket_with_an_s3_root(tmp_path: Path) -> None:
    on_s3 = Settings(home=tmp_path, storage_root="s3://bkt/fw")
    local = Settings(home=tmp_path, storage_root=str(tmp_path / "elsewhere"))
    assert mlflow_artifacts_destination(on_s3) == "s3://bkt/fw/mlflow-artifacts"
    assert mlflow_artifacts_destination(local) == str(tmp_path / "mlflow" / "artifacts")
