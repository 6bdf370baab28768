"""Splitting, fingerprinting and batching the dataset a task returns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import (
    ConcatDataset,
    DataLoader,
    Dataset,
    DistributedSampler,
    Subset,
    TensorDataset,
)

from flywheel.errors import FlywheelError
from flywheel.feedback_sets import read_feedback_set
from flywheel.plans import FeedbackSet
from flywheel.specs.experiment import DataSpec


@dataclass(frozen=True)
class Split:
    """Train and validation parts of a dataset, as index lists into it."""

    dataset: Dataset[Any]
    train_indices: list[int]
    val_indices: list[int]

    @property
    def train(self) -> Subset[Any]:
        return Subset(self.dataset, self.train_indices)

    @property
    def val(self) -> Subset[Any]:
        return Subset(self.dataset, self.val_indices)


def split_dataset(dataset: Dataset[Any], data: DataSpec) -> Split:
    """Seeded, deterministic split: the same on every worker and every run.

    ``data.fraction`` keeps a seeded subset of the training part; validation stays whole, so
    metrics of trials at different fidelities remain comparable.
    """
    size = len(cast(Any, dataset))
    n_val = max(1, round(size * data.validation_split))
    if size - n_val < 1:
        raise FlywheelError(
            f"the dataset has {size} samples: too few to hold out a validation split"
        )
    order = torch.randperm(size, generator=torch.Generator().manual_seed(data.seed)).tolist()
    train = order[n_val:]
    kept = max(1, round(len(train) * data.fraction))  # low-fidelity trials train on less data
    return Split(dataset, train_indices=train[:kept], val_indices=order[:n_val])


def with_feedback(split: Split, feedback: FeedbackSet) -> Split:
    """``split`` with the feedback set's rows appended to its training part.

    Validation stays the task's own, so the retrained version's metrics compare with its
    predecessor's. The rows take the shape and dtypes of the task's examples.
    """
    features, labels, _ = read_feedback_set(feedback)
    example, target = split.dataset[0]
    example_t, target_t = torch.as_tensor(example), torch.as_tensor(target)
    if features.shape[1] != example_t.numel():
        raise FlywheelError(
            f"the fed-back requests of {feedback.model} have {features.shape[1]} input values, "
            f"the task's examples {example_t.numel()}: the model's inputs changed since version "
            f"{feedback.from_version} was served, so its feedback cannot be trained on"
        )
    extra = TensorDataset(
        torch.from_numpy(features).reshape(len(features), *example_t.shape).to(example_t.dtype),
        torch.from_numpy(labels).to(target_t.dtype),
    )
    size = len(cast(Any, split.dataset))
    return Split(
        ConcatDataset([split.dataset, extra]),
        train_indices=[*split.train_indices, *range(size, size + len(extra))],
        val_indices=split.val_indices,
    )


def load_split(
    load_data: Any, data: DataSpec, hparams: dict[str, Any], feedback: FeedbackSet | None
) -> Split:
    """The task's data split by :func:`split_dataset`, plus a retraining's fed-back rows."""
    split = split_dataset(load_data(hparams), data)
    return split if feedback is None else with_feedback(split, feedback)


def to_arrays(dataset: Dataset[Any]) -> tuple[np.ndarray, np.ndarray]:
    """All (features, target) pairs of a dataset stacked into two arrays."""
    items = [dataset[i] for i in range(len(cast(Any, dataset)))]
    features = np.stack([np.asarray(x) for x, _ in items])
    targets = np.stack([np.asarray(y) for _, y in items])
    return features, targets


def fingerprint(features: np.ndarray, targets: np.ndarray) -> str:
    """sha256 over shapes, dtypes and bytes of the data: changes when any value changes."""
    digest = hashlib.sha256()
    for array in (features, targets):
        contiguous = np.ascontiguousarray(array)
        digest.update(f"{contiguous.dtype}{contiguous.shape}".encode())
        digest.update(contiguous.tobytes())
    return digest.hexdigest()


def train_loader(
    split: Split, batch_per_worker: int, data: DataSpec, rank: int, world_size: int
) -> tuple[DataLoader[Any], DistributedSampler[Any]]:
    """Loader over this worker's shard of the training set.

    A DistributedSampler is used at every world size, with ``drop_last`` on both sampler and
    loader, so that N workers at batch b see exactly the batches one worker sees at batch N*b.
    """
    sampler: DistributedSampler[Any] = DistributedSampler(
        split.train,
        num_replicas=world_size,
        rank=rank,
        shuffle=data.shuffle,
        seed=data.seed,
        drop_last=True,
    )
    if len(sampler) < batch_per_worker:
        raise FlywheelError(
            f"each worker gets {len(sampler)} training samples, fewer than its batch of "
            f"{batch_per_worker}; lower train.batch_size or the number of workers"
        )
    loader = DataLoader(split.train, batch_size=batch_per_worker, sampler=sampler, drop_last=True)
    return loader, sampler


def val_loader(split: Split, batch_size: int, rank: int, world_size: int) -> DataLoader[Any]:
    """Loader over this worker's strided shard of the validation set, without padding."""
    shard = Subset(split.dataset, split.val_indices[rank::world_size])
    return DataLoader(shard, batch_size=batch_size, shuffle=False)
