"""The peer: plain PyTorch DDP of the digits MLP, launched with torchrun, no Ray and no flywheel.

Same model, data split, sampler, global batch, optimizer and per-epoch validation as flywheel's
training loop. Rank 0 prints one JSON line with the per-epoch training time.

    torchrun --standalone --nproc_per_node 2 benchmarks/peers/torchrun_ddp.py --epochs 20
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset


def main() -> None:
    args = _parse()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    dataset, train_idx, val_idx = _data(seed=0, validation_split=0.2)
    train = Subset(dataset, train_idx)
    sampler = DistributedSampler(train, num_replicas=world, rank=rank, seed=0, drop_last=True)
    loader = DataLoader(train, batch_size=args.batch_size // world, sampler=sampler, drop_last=True)
    val = DataLoader(Subset(dataset, val_idx[rank::world]), batch_size=256)
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(_model(args.hidden))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    epoch_times_s = []
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        started = time.perf_counter()
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            optimizer.step()
        epoch_times_s.append(time.perf_counter() - started)
        accuracy = _evaluate(model, val)
    if rank == 0:
        samples = len(loader) * args.batch_size
        print(json.dumps({"epoch_times_s": epoch_times_s, "samples_per_epoch": samples,
                          "val_accuracy": accuracy}), flush=True)  # fmt: skip
    dist.destroy_process_group()


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    return parser.parse_args()


def _data(seed: int, validation_split: float) -> tuple[TensorDataset, list[int], list[int]]:
    digits = load_digits()
    dataset = TensorDataset(
        torch.tensor(digits.data / 16.0, dtype=torch.float32), torch.tensor(digits.target)
    )
    n_val = round(len(dataset) * validation_split)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    return dataset, order[n_val:], order[:n_val]


def _model(hidden: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, 10),
    )  # fmt: skip


@torch.no_grad()
def _evaluate(model: nn.Module, val: DataLoader) -> float:
    model.eval()
    totals = torch.zeros(2)
    for x, y in val:
        totals += torch.tensor([float((model(x).argmax(1) == y).sum()), float(len(y))])
    model.train()
    dist.all_reduce(totals)
    return float(totals[0] / totals[1])


if __name__ == "__main__":
    main()
