"""Sanity checks practitioners run before spending compute: a trivial baseline, and overfitting
a single batch.

Both run in the job driver on one process, before Ray Train starts workers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from flywheel.errors import CheckFailedError
from flywheel.runtime.loop import make_loss, make_optimizer, train_step
from flywheel.specs.experiment import ExperimentSpec

OVERFIT_ADVICE = (
    "A healthy model and loss memorise one small batch easily. Usual causes: labels that do not "
    "match their inputs (misaligned or shuffled labels, a broken augmentation or collate), a loss "
    "that does not fit the output (softmax before CrossEntropyLoss, wrong target dtype or shape), "
    "a learning rate far too low or too high, or gradients that do not flow (detached tensors, "
    "frozen layers, a model that ignores its input)."
)


def baseline_metrics(
    train_targets: np.ndarray, val_targets: np.ndarray, kind: str
) -> dict[str, float]:
    """Metrics of the trivial predictor learnt from the training targets, on validation.

    Classification: always the majority class (accuracy), with the class frequencies as the
    predicted distribution (cross-entropy). Language models: the same over every token (the
    unigram model). Regression: always the mean (mean squared error).
    """
    if kind != "regression":
        train_targets, val_targets = train_targets.ravel(), val_targets.ravel()
        classes, counts = np.unique(train_targets.astype(np.int64), return_counts=True)
        majority = classes[np.argmax(counts)]
        freq = dict(zip(classes.tolist(), (counts / counts.sum()).tolist(), strict=True))
        nll = [-math.log(max(freq.get(int(y), 0.0), 1e-12)) for y in val_targets.astype(np.int64)]
        return {
            "baseline_val_accuracy": float(np.mean(val_targets.astype(np.int64) == majority)),
            "baseline_val_loss": float(np.mean(nll)),
        }
    mean = float(np.mean(train_targets))
    return {"baseline_val_loss": float(np.mean((val_targets.astype(np.float64) - mean) ** 2))}


def overfit_one_batch(
    model: torch.nn.Module, dataset: Dataset[Any], indices: list[int], spec: ExperimentSpec
) -> dict[str, float]:
    """Train on one fixed batch; raise CheckFailedError unless the loss falls below the threshold.

    Dropout and batch-norm updates are off, as the recipe teaches. The batch is re-read from
    the dataset at every step, so a dataset whose labels change from one read to the next (a
    real bug class) fails the check too.
    """
    check = spec.checks.overfit_one_batch
    batch_indices = indices[: check.batch_size]
    lr = check.lr if check.lr is not None else spec.train.optimizer.lr * 10
    optimizer = make_optimizer(model.parameters(), spec.train.optimizer, lr=lr)
    loss_fn = make_loss(spec)
    device = torch.device("cpu")
    first = last = float("nan")
    model.eval()  # regularisation off (dropout, batch-norm updates), as the recipe says
    for step in range(check.steps):
        batch = _collate([dataset[i] for i in batch_indices])
        last = train_step(model, batch, loss_fn, optimizer, spec, device)
        first = last if step == 0 else first
    metrics = {"overfit_initial_loss": first, "overfit_final_loss": last}
    if not last < check.loss_threshold:
        raise CheckFailedError(
            f"overfit-one-batch check failed: the loss went from {first:.4f} to {last:.4f} in "
            f"{check.steps} steps on one batch of {len(batch_indices)}, not below "
            f"{check.loss_threshold}. {OVERFIT_ADVICE} To skip the check, set "
            "checks.overfit_one_batch.enabled: false."
        )
    return metrics


def _collate(items: list[tuple[Any, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    features = torch.stack([torch.as_tensor(x) for x, _ in items])
    targets = torch.stack([torch.as_tensor(y) for _, y in items])
    return features, targets
