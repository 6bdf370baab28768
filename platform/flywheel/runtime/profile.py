"""The training profile of a registered model version, logged as an MLflow artifact.

The statistics are :func:`flywheel.profiles.build_profile`'s; this module runs the model over the
training inputs to get its predictions, and records the profile next to the version: an artifact
of the version's run (``profile/training_profile.json``) and the version tag
``flywheel.profile`` that names it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from flywheel.profiles import PROFILE_FILE, TrainingProfile, build_profile
from flywheel.specs.experiment import TaskSpec
from flywheel.tracking import TAG_PROFILE, ExperimentRun, RegisteredVersion, set_model_version_tag

_BATCH_ROWS = 1024


def log_training_profile(
    run: ExperimentRun,
    tracking_uri: str,
    version: RegisteredVersion | None,
    model: torch.nn.Module,
    train_features: np.ndarray,
    task: TaskSpec,
    seed: int,
) -> TrainingProfile | None:
    """Profile the training inputs and the model's predictions; None for language models."""
    if task.kind == "language_model":
        return None  # token ids have no useful per-feature distribution; not profiled yet
    outputs = predict(model, train_features)
    if task.kind == "classification":
        labels = outputs.reshape(len(outputs), -1).argmax(axis=1)
        profile = build_profile(train_features, labels, "classes", outputs.shape[-1], seed)
    else:
        profile = build_profile(train_features, outputs.reshape(len(outputs), -1)[:, 0],
                                "values", seed=seed)  # fmt: skip
    run.log_dict(profile.model_dump(mode="json"), PROFILE_FILE)
    if version is not None:
        set_model_version_tag(tracking_uri, version, TAG_PROFILE, PROFILE_FILE)
    return profile


def predict(model: torch.nn.Module, features: np.ndarray) -> np.ndarray:
    """The model's outputs for ``features``, in batches, without gradients."""
    model.eval()
    parts: list[Any] = []
    with torch.no_grad():
        for start in range(0, len(features), _BATCH_ROWS):
            batch = torch.from_numpy(features[start : start + _BATCH_ROWS].astype(np.float32))
            parts.append(model(batch).numpy())
    return np.concatenate(parts)
