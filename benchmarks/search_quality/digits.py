"""The digits MLP as a search problem: validation loss after a few epochs of training.

The model and data are those of ``experiments/digits/task.py`` (loaded through flywheel's task
loader), split by flywheel's seeded ``split_dataset`` (20 % validation, seed 0), and trained with
flywheel's optimizer (Adam with L2 weight decay) on batches of 128 in one process (one of
search.yaml's batch sizes; the largest keeps the benchmark's run time down). Every trial
seeds torch the same way, so the value is a deterministic function of the parameters. A
coarse-to-fine stage's fidelity is its number of epochs: the coarse stage trains a third of
:data:`FULL_EPOCHS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from flywheel.runtime.data import split_dataset
from flywheel.runtime.loop import make_optimizer
from flywheel.runtime.task import TaskModule, load_task
from flywheel.specs.base import Scalar
from flywheel.specs.experiment import DataSpec, OptimizerSpec
from flywheel.specs.search import IntParam, LogUniformParam, Param, UniformParam

NAME = "digits-mlp"
#: Epochs of a full-fidelity trial.
FULL_EPOCHS = 6
BATCH_SIZE = 128
TASK_DIR = Path(__file__).resolve().parents[2] / "experiments" / "digits"


def space() -> dict[str, Param]:
    """The ranges of experiments/digits/search.yaml, without the batch size."""
    return {
        "train.optimizer.lr": LogUniformParam(type="loguniform", low=1e-4, high=3e-2),
        "train.optimizer.weight_decay": LogUniformParam(type="loguniform", low=1e-6, high=1e-2),
        "hparams.hidden": IntParam(type="int", low=32, high=512, log=True),
        "hparams.dropout": UniformParam(type="uniform", low=0.0, high=0.5),
    }


class DigitsObjective:
    """Train the digits MLP with a trial's parameters; return its validation loss.

    The data is loaded on the first call, so that building the problem costs nothing.
    """

    def __init__(self) -> None:
        self._data: tuple[TaskModule, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None
        self._data = None

    def __call__(self, params: Mapping[str, Scalar], epochs: int) -> float:
        task, x_train, y_train, x_val, y_val = self._load()
        torch.manual_seed(0)
        hparams = {"hidden": params["hparams.hidden"], "dropout": params["hparams.dropout"]}
        model = task.build_model(hparams)
        optimizer = make_optimizer(
            model.parameters(),
            OptimizerSpec(
                lr=float(params["train.optimizer.lr"]),
                weight_decay=float(params["train.optimizer.weight_decay"]),
            ),
        )
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(epochs):
            _train_epoch(model, optimizer, loss_fn, x_train, y_train)
        model.eval()
        with torch.no_grad():
            return float(loss_fn(model(x_val), y_val))

    def _load(self) -> tuple[TaskModule, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._data is None:
            torch.set_num_threads(1)  # one trial per core
            task = load_task(TASK_DIR, "task").module
            dataset = task.load_data({})
            split = split_dataset(dataset, DataSpec())
            features, labels = dataset.tensors  # type: ignore[attr-defined]
            train, val = torch.tensor(split.train_indices), torch.tensor(split.val_indices)
            self._data = (task, features[train], labels[train], features[val], labels[val])
        return self._data


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
) -> None:
    """One epoch of shuffled mini-batches."""
    model.train()
    order = torch.randperm(len(features))
    for start in range(0, len(features), BATCH_SIZE):
        batch = order[start : start + BATCH_SIZE]
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(features[batch]), labels[batch]).backward()
        optimizer.step()
