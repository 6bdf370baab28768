"""The epoch loop, shared by Ray Train workers (every strategy) and single-process search trials.

Whoever runs it decides how the model is wrapped (``prepare_model`` for DDP, FSDP2 and tensor
parallel for the sharded strategies), where training resumes from, and what happens after each
epoch (report to Ray Train, to Tune, to MLflow).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from flywheel.plans import FeedbackSet
from flywheel.runtime import data as data_mod
from flywheel.runtime.loop import (
    evaluate_sums,
    make_loss,
    make_optimizer,
    sums_to_metrics,
    train_step,
)
from flywheel.runtime.task import LoadedTask
from flywheel.specs.experiment import ExperimentSpec

#: Called after every epoch with (epoch, metrics, model, optimizer).
EpochHook = Callable[[int, dict[str, float], nn.Module, torch.optim.Optimizer], None]
#: Loads saved state into the wrapped model and its optimizer; returns the first epoch to run.
Restore = Callable[[nn.Module, torch.optim.Optimizer], int]


@dataclass(frozen=True)
class Placement:
    """Where this process sits among the training processes.

    ``data_rank``/``data_size`` place it among the data-parallel replicas (the ranks of one
    tensor-parallel group read the same batches); by default every process is one.
    ``data_group`` is the process group that sums validation counts (None: the world).
    """

    rank: int
    world_size: int
    device: torch.device
    data_rank: int | None = None
    data_size: int | None = None
    data_group: Any = None

    @property
    def data_coordinates(self) -> tuple[int, int]:
        if self.data_rank is None or self.data_size is None:
            return self.rank, self.world_size
        return self.data_rank, self.data_size


def fresh_start(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """A :data:`Restore` that restores nothing: start at epoch 1."""
    return 1


def train_epochs(
    spec: ExperimentSpec,
    task: LoadedTask,
    placement: Placement,
    wrap: Callable[[nn.Module], nn.Module],
    restore: Restore,
    on_epoch: EpochHook,
    feedback: FeedbackSet | None = None,
) -> None:
    """Build model and data from the task (with a retraining's ``feedback`` rows), then train
    ``spec.train.epochs`` epochs."""
    hparams = {**spec.data.params, **spec.hparams}
    split = data_mod.load_split(task.module.load_data, spec.data, hparams, feedback)
    torch.manual_seed(spec.data.seed)
    model = wrap(task.module.build_model(hparams))
    optimizer = make_optimizer(model.parameters(), spec.train.optimizer)
    start_epoch = restore(model, optimizer)
    rank, world = placement.data_coordinates
    batch = spec.train.batch_size // world
    loader, sampler = data_mod.train_loader(split, batch, spec.data, rank, world)
    validation = data_mod.val_loader(split, max(batch, 256), rank, world)
    loss_fn = make_loss(spec)
    for epoch in range(start_epoch, spec.train.epochs + 1):
        sampler.set_epoch(epoch)
        started_s = time.perf_counter()
        losses = [train_step(model, b, loss_fn, optimizer, spec, placement.device) for b in loader]
        train_time_s = time.perf_counter() - started_s
        metrics = {
            "train_loss": mean_across_workers(sum(losses) / len(losses)),
            "train_time_s": train_time_s,
            "train_samples_per_s": len(losses) * spec.train.batch_size / train_time_s,
        }
        sums = evaluate_sums(model, validation, loss_fn, spec, placement.device)
        metrics.update(
            sums_to_metrics(sum_across_workers(sums, placement.data_group), spec.task.kind)
        )
        on_epoch(epoch, metrics, model, optimizer)


def sum_across_workers(values: torch.Tensor, group: Any = None) -> torch.Tensor:
    """All-reduce (sum) over ``group`` (None: all workers) when a process group is up."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM, group=group)
    return values


def mean_across_workers(value: float) -> float:
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    return float(sum_across_workers(torch.tensor([value], dtype=torch.float64))[0]) / world
