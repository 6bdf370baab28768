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
    """Cross-entropy for classification and language models, mean squared error for regression."""
    return nn.MSELoss() if spec.task.kind == "regression" else nn.CrossEntropyLoss()


def model_input(features: torch.Tensor, kind: str) -> torch.Tensor:
    """Features as the model takes them: token ids for language models, floats otherwise."""
    return features.long() if kind == "language_model" else features.float()


def loss_pair(
    output: torch.Tensor, target: torch.Tensor, kind: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, target) in the dtypes and shapes the loss expects; one row per prediction.

    Language models predict every position: (N, T, V) logits and (N, T) targets become
    (N*T, V) and (N*T,), so that losses and accuracies are per token.
    """
    output = output.float()
    if kind == "language_model":
        return output.reshape(-1, output.shape[-1]), target.reshape(-1).long()
    if kind == "classification":
        return output, target.long()
    return output, target.to(output.dtype).reshape(output.shape)


def autocast(train: TrainSpec, device: torch.device) -> AbstractContextManager[Any]:
    """bf16 autocast for the forward pass when the spec asks for it.

    Not under fsdp and fsdp+tp: there FSDP's MixedPrecisionPolicy casts the parameters instead.
    """
    if train.precision == "bf16" and train.strategy in ("ddp", "tp"):
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
    """One optimizer step on one batch; returns the batch loss.

    With ``grad_accumulation_steps`` k the batch is cut into k equal micro-batches whose losses,
    each divided by k, are back-propagated in turn: the summed gradient is the full batch's.
    """
    features, target = (t.to(device) for t in batch)
    steps = min(spec.train.grad_accumulation_steps, features.shape[0])
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for micro_features, micro_target in zip(
        features.chunk(steps), target.chunk(steps), strict=True
    ):
        with autocast(spec.train, device):
            output = model(model_input(micro_features, spec.task.kind))
        loss = loss_fn(*loss_pair(output, micro_target, spec.task.kind)) / steps
        loss.backward()
        total += float(loss.detach())
    if spec.train.grad_clip_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), spec.train.grad_clip_norm)
    optimizer.step()
    return total


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
            output = model(model_input(features, spec.task.kind))
        output, target = loss_pair(output, target, spec.task.kind)
        n = target.shape[0]
        totals[0] += float(loss_fn(output, target)) * n
        if spec.task.kind != "regression":
            totals[1] += float((output.argmax(dim=1) == target).sum())
        totals[2] += n
    model.train()
    return totals


def sums_to_metrics(totals: torch.Tensor, kind: str, prefix: str = "val") -> dict[str, float]:
    """Turn [loss * n, correct, n] into mean loss (and accuracy for classification)."""
    n = max(float(totals[2]), 1.0)
    metrics = {f"{prefix}_loss": float(totals[0]) / n}
    if kind != "regression":
        metrics[f"{prefix}_accuracy"] = float(totals[1]) / n
    return metrics
