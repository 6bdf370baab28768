"""Splitting, fingerprinting and the data order that makes DDP equal to a bigger batch."""

import numpy as np
import torch
from torch.utils.data import TensorDataset

from flywheel.runtime.data import fingerprint, split_dataset, train_loader, val_loader
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
