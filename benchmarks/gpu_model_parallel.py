"""Single-GPU throughput and model FLOPs utilization (MFU) of the charlm transformer, trained
with flywheel's own strategy code (:func:`flywheel.runtime.parallel.parallelize`).

One process, one GPU: ``ddp`` trains the plain model, ``fsdp`` the same model through FSDP2 on a
1x1 mesh (what one worker of a sharded job runs, without the communication). bf16 as flywheel
applies it: autocast for ddp, FSDP's MixedPrecisionPolicy for fsdp. MFU = achieved model FLOP/s
over the GPU's peak dense bf16 FLOP/s, with model FLOPs per token = 6 * parameters (forward and
backward of the matmuls) + 12 * layers * width * sequence length (attention scores), the
PaLM appendix B estimate.

Needs CUDA; without it, it says so and exits with status 2.

    .venv/bin/python -m benchmarks.gpu_model_parallel [--steps 50] [--dim 1024] [--layers 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from flywheel.runtime.parallel import make_mesh, parallelize
from flywheel.runtime.task import load_task
from flywheel.specs.experiment import TrainSpec
from flywheel.specs.parallel import MeshShape

CHARLM = Path(__file__).resolve().parents[1] / "experiments" / "charlm"
#: Peak dense bf16 tensor-core FLOP/s by device name fragment (vendor data sheets).
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def main(argv: list[str]) -> int:
    args = _parse(argv)
    if not torch.cuda.is_available():
        print("gpu_model_parallel: no CUDA device here; run it on a machine with a GPU.")
        return 2
    peak = args.peak_tflops * 1e12 if args.peak_tflops else _peak_flops()
    _init_single_process_group()
    try:
        rows = [measure(strategy, args, peak) for strategy in ("ddp", "fsdp")]
    finally:
        dist.destroy_process_group()
    print(render(rows, args))
    return 0


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the table")
    return parser.parse_args(argv)


def measure(strategy: str, args: argparse.Namespace, peak_flops: float | None) -> dict[str, Any]:
    """Train ``args.steps`` timed steps on random token windows; tokens/s and MFU."""
    device = torch.device("cuda")
    task = load_task(CHARLM, "task")
    hparams = {"dim": args.dim, "heads": args.heads, "layers": args.layers, "seq_len": args.seq_len}
    torch.manual_seed(0)
    model = task.module.build_model(hparams).to(device)
    params = sum(p.numel() for p in model.parameters())
    train = TrainSpec.model_validate({"strategy": strategy, "precision": "bf16"})
    if strategy != "ddp":
        model = parallelize(model, train, task.module, make_mesh(MeshShape(1, 1), device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, 90, (args.batch_size, args.seq_len + 1), device=device)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            torch.cuda.synchronize()
            started = time.perf_counter()
        _step(model, optimizer, ids, autocast=strategy == "ddp")
    torch.cuda.synchronize()
    tokens_per_s = args.steps * args.batch_size * args.seq_len / (time.perf_counter() - started)
    flops_per_token = 6 * params + 12 * args.layers * args.dim * args.seq_len
    mfu = tokens_per_s * flops_per_token / peak_flops if peak_flops else None
    return {"strategy": strategy, "params": params, "tokens_per_s": tokens_per_s, "mfu": mfu}


def _step(
    model: nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor, autocast: bool
) -> None:
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        logits = model(ids[:, :-1])
    loss = nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)
    )
    loss.backward()
    optimizer.step()


def _peak_flops() -> float | None:
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def _init_single_process_group() -> None:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    dist.init_process_group("nccl", rank=0, world_size=1)


def render(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"charlm on {torch.cuda.get_device_name()}: width {args.dim}, {args.layers} blocks, "
        f"sequence {args.seq_len}, batch {args.batch_size}, bf16, {args.steps} timed steps",
        "",
        "| strategy | parameters | tokens/s | MFU |",
        "|---|---|---|---|",
    ]
    for row in rows:
        mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "n/a (unknown peak)"
        lines.append(
            f"| {row['strategy']} | {row['params']:,} | {row['tokens_per_s']:,.0f} | {mfu} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
