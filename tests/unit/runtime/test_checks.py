"""Baseline and overfit-one-batch checks, on small in-memory data."""

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from flywheel.errors import CheckFailedError
from flywheel.runtime.checks import baseline_metrics, overfit_one_batch
from flywheel.specs import ExperimentSpec


def _spec(kind: str = "classification", **overfit: Any) -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        {
            "name": "t",
            "team": "t",
            "task": {"module": "task", "kind": kind},
            "train": {"optimizer": {"lr": 0.001}},
            "checks": {"overfit_one_batch": {"steps": 150, "batch_size": 16, **overfit}},
        }
    )


def _data(n: int = 64) -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 8, generator=gen), torch.randint(0, 3, (n,), generator=gen))


class ShuffledLabels(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Every read returns a random label: no model can memorise it."""

    def __init__(self, base: TensorDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.base[i][0], torch.randint(0, 3, ())


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))


def test_majority_class_baseline() -> None:
    metrics = baseline_metrics(np.array([0, 0, 0, 1]), np.array([0, 1]), "classification")
    assert metrics["baseline_val_accuracy"] == 0.5
    assert metrics["baseline_val_loss"] == pytest.approx((-np.log(0.75) - np.log(0.25)) / 2)


def test_mean_baseline_for_regression() -> None:
    metrics = baseline_metrics(np.array([1.0, 3.0]), np.array([2.0, 4.0]), "regression")
    assert metrics == {"baseline_val_loss": pytest.approx((0.0 + 4.0) / 2)}


def test_a_healthy_model_overfits_one_batch() -> None:
    metrics = overfit_one_batch(_model(), _data(), list(range(64)), _spec())
    assert metrics["overfit_final_loss"] < 0.05 < metrics["overfit_initial_loss"]


def test_labels_shuffled_every_step_fail_the_check_with_advice() -> None:
    with pytest.raises(CheckFailedError) as caught:
        overfit_one_batch(_model(), ShuffledLabels(_data()), list(range(64)), _spec())
    message = str(caught.value)
    assert message.startswith("overfit-one-batch check failed: the loss went from")
    assert "labels that do not match their inputs" in message
    assert "checks.overfit_one_batch.enabled: false" in message


def test_too_few_steps_fail_the_check() -> None:
    with pytest.raises(CheckFailedError, match="in 1 steps on one batch of 16"):
        overfit_one_batch(_model(), _data(), list(range(64)), _spec(steps=1))
