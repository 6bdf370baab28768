"""The peer: plain PyTorch DDP of the charlm transformer, launched with torchrun, no Ray and no
flywheel.

Same model (imported from experiments/charlm/task.py, the user code), data, split, sampler,
global batch, optimizer and per-epoch validation as flywheel's training loop. Rank 0 prints one
JSON line with the per-epoch training time and the tokens trained per epoch.

    torchrun --standalone --nproc_per_node 2 benchmarks/peers/torchrun_charlm_ddp.py --epochs 4
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path
from types import ModuleType

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

TASK = Path(__file__).resolve().parents[2] / "experiments" / "charlm" / "task.py"


def main() -> None:
    args = _parse()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    task = _load_task()
    hparams = {"seq_len": args.seq_len, "corpus_chars": args.corpus_chars}
    dataset = task.load_data(hparams)
    n_val = round(len(dataset) * 0.1)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    train = Subset(dataset, order[n_val:])
    sampler = DistributedSampler(train, num_replicas=world, rank=rank, seed=0, drop_last=True)
    loader = DataLoader(train, batch_size=args.batch_size // world, sampler=sampler, drop_last=True)
    val = DataLoader(Subset(dataset, order[:n_val][rank::world]), batch_size=256)
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(task.build_model(hparams))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    epoch_times_s = []
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        started = time.perf_counter()
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            _loss(model, x, y).backward()
            optimizer.step()
        epoch_times_s.append(time.perf_counter() - started)
        val_loss = _evaluate(model, val)
    if rank == 0:
        tokens = len(loader) * args.batch_size * args.seq_len
        print(json.dumps({"epoch_times_s": epoch_times_s, "tokens_per_epoch": tokens,
                          "val_loss": val_loss}), flush=True)  # fmt: skip
    dist.destroy_process_group()


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--corpus-chars", type=int, default=60_000)
    return parser.parse_args()


def _load_task() -> ModuleType:
    spec = importlib.util.spec_from_file_location("charlm_task", TASK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


@torch.no_grad()
def _evaluate(model: nn.Module, val: DataLoader) -> float:
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64)
    for x, y in val:
        totals += torch.tensor([float(_loss(model, x, y)) * y.numel(), float(y.numel())])
    model.train()
    dist.all_reduce(totals)
    return float(totals[0] / totals[1])


if __name__ == "__main__":
    main()
