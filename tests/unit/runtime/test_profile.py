"""The training profile, logged as an artifact of the run (MLflow on a local SQLite store)."""

from __future__ import annotations

from pathlib import Path

import mlflow.artifacts
import numpy as np
import torch
from mlflow import MlflowClient
from sklearn.datasets import load_digits

from flywheel.profiles import PROFILE_FILE, TrainingProfile
from flywheel.runtime.profile import log_training_profile
from flywheel.specs.experiment import TaskSpec
from flywheel.tracking import ExperimentRun


def _store(tmp_path: Path) -> str:
    """A SQLite tracking store whose experiment keeps its artifacts under ``tmp_path``."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(uri).create_experiment("tests/profile", str(tmp_path / "artifacts"))
    return uri


def test_the_profile_of_a_digits_model_is_logged_with_its_predictions(tmp_path: Path) -> None:
    features = (load_digits().data / 16.0).astype(np.float32)[:400]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 10))
    uri = _store(tmp_path)
    run = ExperimentRun(uri, "tests/profile", "profile", {})
    try:
        profile = log_training_profile(
            run, uri, None, model, features, TaskSpec(module="task"), seed=0
        )
    finally:
        run.end("FINISHED")

    assert profile is not None
    stored = mlflow.artifacts.load_dict(f"runs:/{run.run_id}/{PROFILE_FILE}")
    assert TrainingProfile.model_validate(stored) == profile
    assert profile.rows == 400 and profile.feature_source == "input"
    predicted = model(torch.from_numpy(features)).argmax(1).numpy()
    expected = np.bincount(predicted, minlength=10) / 400
    np.testing.assert_allclose(profile.predictions.class_fractions, expected)
    assert len(profile.reference) == 400 and len(profile.reference[0]) == 64


def test_language_models_are_not_profiled(tmp_path: Path) -> None:
    uri = _store(tmp_path)
    run = ExperimentRun(uri, "tests/profile", "lm", {})
    try:
        task = TaskSpec(module="task", kind="language_model")
        tokens = np.zeros((4, 8), dtype=np.int64)
        assert log_training_profile(run, uri, None, torch.nn.Identity(), tokens, task, 0) is None
    finally:
        run.end("FINISHED")
