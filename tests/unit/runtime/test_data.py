"""Splitting, fingerprinting and the data order that makes DDP equal to a bigger batch."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from flywheel.errors import FlywheelError
from flywheel.feedback_sets import write_feedback_set
from flywheel.plans import FeedbackSet
from flywheel.request_log import LoggedFeedback, LoggedRequest
from flywheel.retraining import retraining_data
from flywheel.runtime.data import (
    fingerprint,
    load_split,
    split_dataset,
    to_arrays,
    train_loader,
    val_loader,
    with_feedback,
)
from flywheel.specs.experiment import DataSpec

DATA = TensorDataset(torch.arange(103, dtype=torch.float32).reshape(-1, 1), torch.arange(103))


def test_split_is_seeded_and_disjoint() -> None:
    first = split_dataset(DATA, DataSpec(seed=1))
    again = split_dataset(DATA, DataSpec(seed=1))
    other = split_dataset(DATA, DataSpec(seed=2))
    assert first == again and first.train_indices != other.train_indices
    assert len(first.val_indices) == 21
    assert sorted(first.train_indices + first.val_indices) == list(range(103))


def test_two_workers_at_b_see_the_batches_of_one_worker_at_2b() -> None:
    split = split_dataset(DATA, DataSpec(seed=3))
    for epoch in range(2):
        single, sampler = train_loader(split, 8, DataSpec(seed=3), rank=0, world_size=1)
        sampler.set_epoch(epoch)
        shards = [train_loader(split, 4, DataSpec(seed=3), rank=r, world_size=2) for r in (0, 1)]
        for _, shard_sampler in shards:
            shard_sampler.set_epoch(epoch)
        paired = zip(*(iter(loader) for loader, _ in shards), strict=True)
        for big, (a, b) in zip(single, paired, strict=True):
            assert sorted(big[1].tolist()) == sorted(a[1].tolist() + b[1].tolist())


def test_validation_shards_cover_every_sample_once() -> None:
    split = split_dataset(DATA, DataSpec())
    seen = [int(y) for r in range(3) for _, ys in val_loader(split, 5, r, 3) for y in ys]
    assert sorted(seen) == sorted(split.val_indices)


def test_fingerprint_changes_with_any_value() -> None:
    x, y = np.zeros((4, 2)), np.arange(4)
    changed = x.copy()
    changed[3, 1] = 1e-9
    assert fingerprint(x, y) == fingerprint(x.copy(), y.copy())
    assert fingerprint(x, y) != fingerprint(changed, y)
    assert fingerprint(x, y) != fingerprint(x.astype(np.float32), y)


def _feedback_set(root: str, values: list[float], wrong: bool, width: int = 1) -> FeedbackSet:
    requests = [
        LoggedRequest(f"r{i}", "m", "1", 1.0, 1.0, True, [v] * width, [width], 0 if wrong else 7)
        for i, v in enumerate(values)
    ]
    feedback = [LoggedFeedback(f"r{i}", "m", "1", 2.0, 7) for i in range(len(values))]
    return write_feedback_set(root, "m", "1", retraining_data(requests, feedback, 2))


def test_fed_back_rows_join_the_training_part_only_in_the_tasks_dtypes(tmp_path: Path) -> None:
    split = split_dataset(DATA, DataSpec(seed=1))
    feedback = _feedback_set(str(tmp_path), [500.0, 501.0], wrong=True)

    extended = with_feedback(split, feedback)

    assert extended.val_indices == split.val_indices
    assert extended.train_indices[: len(split.train_indices)] == split.train_indices
    added = extended.train_indices[len(split.train_indices) :]
    assert added == [103, 104, 105, 106]  # two mistakes, each twice
    features, targets = to_arrays(extended.dataset)
    assert features[added].ravel().tolist() == [500.0, 500.0, 501.0, 501.0]
    assert targets[added].tolist() == [7, 7, 7, 7]
    assert features.dtype == np.float32 and targets.dtype == np.int64


def test_load_split_without_feedback_is_the_plain_split_and_a_width_mismatch_is_refused(
    tmp_path: Path,
) -> None:
    plain = load_split(lambda hparams: DATA, DataSpec(seed=1), {}, None)
    assert plain == split_dataset(DATA, DataSpec(seed=1))

    wide = _feedback_set(str(tmp_path), [1.0], wrong=False, width=3)
    with pytest.raises(FlywheelError, match="have 3 input values, the task's examples 1"):
        load_split(lambda hparams: DATA, DataSpec(seed=1), {}, wide)
