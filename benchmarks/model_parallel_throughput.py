"""Model-parallel training throughput: flywheel's ddp, fsdp, tp and fsdp+tp against plain
torchrun DDP, on the charlm transformer.

Every run trains experiments/charlm's model (width 64, 2 blocks, 4 heads, 64-character windows)
with 2 CPU workers (gloo), global batch 32, AdamW, validation every epoch, for the same number of
epochs. Reported: steady-state training tokens/s (median over epochs after the first) of each
strategy, and its ratio to the peer measured in the same repeat. On CPU, fsdp and tp pay for
collectives that buy memory, not speed, on a model this small: the ratios measure that overhead.

    .venv/bin/python -m benchmarks.model_parallel_throughput [--epochs 4] [--repeats 2]
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
from typing import Any

import ray

from flywheel.plans import spec_to_job_plan
from flywheel.runtime.train import fit
from flywheel.settings import Settings
from flywheel.specs import ExperimentSpec

REPO = Path(__file__).resolve().parents[1]
CHARLM = REPO / "experiments" / "charlm"
PEER = Path(__file__).parent / "peers" / "torchrun_charlm_ddp.py"
SEQ_LEN = 64
CORPUS_CHARS = 60_000
#: Strategy -> train.mesh on 2 workers.
STRATEGIES: dict[str, dict[str, int] | None] = {
    "ddp": None,
    "fsdp": None,
    "tp": None,
    "fsdp+tp": {"dp": 1, "tp": 2},
}
PEER_NAME = "torchrun DDP"


@dataclass(frozen=True)
class Measurement:
    name: str
    tokens_per_s: float
    wall_s: float


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        repeats = [measure_all(args.epochs) for _ in range(args.repeats)]
    finally:
        ray.shutdown()
    print(render(repeats, args.epochs))


def measure_all(epochs: int) -> dict[str, Measurement]:
    """One repeat: the peer, then every strategy."""
    rows = {PEER_NAME: measure_torchrun(epochs)}
    for strategy, mesh in STRATEGIES.items():
        rows[strategy] = measure_flywheel(strategy, mesh, epochs)
    return rows


def measure_flywheel(strategy: str, mesh: dict[str, int] | None, epochs: int) -> Measurement:
    spec = ExperimentSpec.model_validate(_spec(strategy, mesh, epochs))
    plan = spec_to_job_plan(spec, "train.yaml", b"", Settings(), f"bench-{time.time_ns()}")
    started = time.perf_counter()
    result = fit(plan, run_id=None, task_dir=CHARLM)
    wall_s = time.perf_counter() - started
    history = result.metrics_dataframe
    per_epoch = list(history["train_samples_per_s"])[1:] if history is not None else []
    samples_per_s = (
        statistics.median(per_epoch) if per_epoch else float(result.metrics["train_samples_per_s"])
    )
    return Measurement(f"flywheel {strategy}", samples_per_s * SEQ_LEN, wall_s)


def _spec(strategy: str, mesh: dict[str, int] | None, epochs: int) -> dict[str, Any]:
    return {
        "name": f"bench-{strategy.replace('+', '-')}",
        "team": "bench",
        "task": {"module": "task", "kind": "language_model"},
        "data": {"validation_split": 0.1},
        "train": {
            "epochs": epochs,
            "batch_size": 32,
            "optimizer": {"name": "adamw", "lr": 0.003},
            "checkpoint_every_epochs": 1,  # a report per epoch: per-epoch rates
            "strategy": strategy,
            "mesh": mesh,
            "scaling": {"num_workers": 2},
        },
        "hparams": {"seq_len": SEQ_LEN, "corpus_chars": CORPUS_CHARS},
        "storage": {"root": tempfile.mkdtemp(prefix="fw-bench-")},
    }


def measure_torchrun(epochs: int) -> Measurement:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(PEER), "--epochs", str(epochs), "--seq-len", str(SEQ_LEN),
        "--corpus-chars", str(CORPUS_CHARS),
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall_s = time.perf_counter() - started
    report = json.loads(done.stdout.strip().splitlines()[-1])
    median_s = statistics.median(report["epoch_times_s"][1:])
    return Measurement(PEER_NAME, report["tokens_per_epoch"] / median_s, wall_s)


def render(repeats: list[dict[str, Measurement]], epochs: int) -> str:
    """Medians over repeats; each ratio is taken against the peer of the same repeat."""
    lines = [
        f"Model-parallel throughput, charlm transformer, 2 CPU workers (gloo), {epochs} epochs, "
        f"{len(repeats)} repeats (medians)",
        "",
        "| run | training tokens/s | ratio to torchrun DDP (same repeat) | wall time (s) |",
        "|---|---|---|---|",
    ]
    for name in repeats[0]:
        rate = statistics.median(r[name].tokens_per_s for r in repeats)
        ratio = statistics.median(r[name].tokens_per_s / r[PEER_NAME].tokens_per_s for r in repeats)
        wall_s = statistics.median(r[name].wall_s for r in repeats)
        label = repeats[0][name].name
        lines.append(f"| {label} | {rate:,.0f} | {ratio:.2f} | {wall_s:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
