"""Pieces of a training loop shared by the checks and by Ray Train workers."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from flywheel.specs.experiment import ExperimentSpec, OptimizerSpec, TrainSpec


def make_optimizer(
    params: Iterable[nn.Parameter], spec: OptimizerSpec, lr: float | None = None
) -> torch.optim.Optimizer:
    """The optimizer the spec asks for."""
    rate = lr if lr is not None else spec.lr
    if spec.name == "adam":
        return torch.optim.Adam(params, lr=rate, weight_decay=spec.weight_decay)
    if spec.name == "adamw":
        return torch.optim.AdamW(params, lr=rate, weight_decay=spec.weight_decay)
    return torch.optim.SGD(params, lr=rate, momentum=spec.momentum, weight_decay=spec.weight_decay)


def make_loss(spec: ExperimentSpec) -> nn.Module:
    """Cross-entropy for classification, mean squared error for regression."""
    return nn.CrossEntropyLoss() if spec.task.kind == "classification" else nn.MSELoss()


def prepare_target(output: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Targets in the dtype and shape the loss expects."""
    if kind == "classification":
        return target.long()
    return target.to(output.dtype).reshape(output.shape)


def autocast(train: TrainSpec, device: torch.device) -> AbstractContextManager[Any]:
    """bf16 autocast for the forward pass when the spec asks for it."""
    if train.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def train_step(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    spec: ExperimentSpec,
    device: torch.device,
) -> float:
    """One optimizer step on one batch; returns the batch loss."""
    features, target = (t.to(device) for t in batch)
    optimizer.zero_grad(set_to_none=True)
    with autocast(spec.train, device):
        output = model(features.float())
    loss = loss_fn(output.float(), prepare_target(output, target, spec.task.kind))
    loss.backward()
    if spec.train.grad_clip_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), spec.train.grad_clip_norm)
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate_sums(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: nn.Module,
    spec: ExperimentSpec,
    device: torch.device,
) -> torch.Tensor:
    """Sums over the batches: [loss * n, correct, n]; summed across workers by the caller."""
    totals = torch.zeros(3, dtype=torch.float64)
    model.eval()
    for features, target in batches:
        features, target = features.to(device), target.to(device)
        with autocast(spec.train, device):
            output = model(features.float()).float()
        target = prepare_target(output, target, spec.task.kind)
        n = target.shape[0]
        totals[0] += float(loss_fn(output, target)) * n
        if spec.task.kind == "classification":
            totals[1] += float((output.argmax(dim=1) == target).sum())
        totals[2] += n
    model.train()
    return totals


def sums_to_metrics(totals: torch.Tensor, kind: str, prefix: str = "val") -> dict[str, float]:
    """Turn [loss * n, correct, n] into mean loss (and accuracy for classification)."""
    n = max(float(totals[2]), 1.0)
    metrics = {f"{prefix}_loss": float(totals[0]) / n}
    if kind == "classification":
        metrics[f"{prefix}_accuracy"] = float(totals[1]) / n
    return metrics
