"""DDP training throughput: flywheel (Ray Train TorchTrainer) vs plain torchrun DDP.

Both train the digits MLP with 2 CPU workers (gloo), global batch 64, Adam, validation every
epoch, for the same number of epochs. Reported: steady-state training samples/s (median over
epochs after the first) and the wall time of the whole training call, with flywheel/peer ratios.

    .venv/bin/python -m benchmarks.ddp_throughput [--epochs 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ray

from flywheel.plans import spec_to_job_plan
from flywheel.runtime.train import fit
from flywheel.settings import Settings
from flywheel.specs import ExperimentSpec

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "experiments" / "digits"
PEER = Path(__file__).parent / "peers" / "torchrun_ddp.py"


@dataclass(frozen=True)
class Measurement:
    name: str
    samples_per_s: float
    wall_s: float


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rows = []
        for _ in range(args.repeats):
            rows.append((measure_flywheel(args.epochs), measure_torchrun(args.epochs)))
    finally:
        ray.shutdown()
    print(render(rows, args.epochs))


def measure_flywheel(epochs: int) -> Measurement:
    spec = ExperimentSpec.model_validate(
        {
            "name": "bench-ddp",
            "team": "bench",
            "task": {"module": "task"},
            "train": {
                "epochs": epochs,
                "batch_size": 64,
                "optimizer": {"lr": 0.001},
                "checkpoint_every_epochs": 5,
                "scaling": {"num_workers": 2},
            },
            "hparams": {"hidden": 128, "dropout": 0.0},
            "storage": {"root": tempfile.mkdtemp(prefix="fw-bench-")},
        }
    )
    plan = spec_to_job_plan(spec, "train.yaml", b"", Settings(), f"bench-{time.time_ns()}")
    started = time.perf_counter()
    result = fit(plan, run_id=None, task_dir=DIGITS)
    wall_s = time.perf_counter() - started
    history = result.metrics_dataframe
    per_epoch = list(history["train_samples_per_s"])[1:] if history is not None else []
    rate = (
        statistics.median(per_epoch) if per_epoch else float(result.metrics["train_samples_per_s"])
    )
    return Measurement("flywheel (Ray Train)", rate, wall_s)


def measure_torchrun(epochs: int) -> Measurement:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(PEER), "--epochs", str(epochs),
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall_s = time.perf_counter() - started
    report = json.loads(done.stdout.strip().splitlines()[-1])
    times = report["epoch_times_s"][1:]
    return Measurement(
        "torchrun DDP", report["samples_per_epoch"] / statistics.median(times), wall_s
    )


def render(rows: list[tuple[Measurement, Measurement]], epochs: int) -> str:
    flywheel_rate = statistics.median(f.samples_per_s for f, _ in rows)
    peer_rate = statistics.median(p.samples_per_s for _, p in rows)
    flywheel_wall = statistics.median(f.wall_s for f, _ in rows)
    peer_wall = statistics.median(p.wall_s for _, p in rows)
    return "\n".join(
        [
            f"DDP throughput, digits MLP, 2 CPU workers, {epochs} epochs, {len(rows)} repeats "
            "(medians)",
            "",
            "| | training samples/s | wall time of the training call (s) |",
            "|---|---|---|",
            f"| flywheel (Ray Train) | {flywheel_rate:,.0f} | {flywheel_wall:.1f} |",
            f"| plain torchrun DDP | {peer_rate:,.0f} | {peer_wall:.1f} |",
            f"| ratio flywheel / torchrun | {flywheel_rate / peer_rate:.2f} | "
            f"{flywheel_wall / peer_wall:.2f} |",
        ]
    )


if __name__ == "__main__":
    main(sys.argv[1:])
