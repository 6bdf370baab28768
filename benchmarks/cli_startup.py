"""CLI start-up: `flywheel --help` vs importing what a thin HTTP CLI needs (httpx, typer, rich,
pydantic), each in a fresh interpreter, measured in the same run.

The peer is the floor a CLI built on those four libraries can reach. The ratio says how much the
CLI's own imports add on top; the heavy-module column says whether the CLI pulled in Ray, MLflow,
torch or Optuna (it must not: it talks to the control plane over HTTP).

    .venv/bin/python -m benchmarks.cli_startup [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: Modules whose import the CLI must not pay for.
HEAVY_MODULES = ("ray", "mlflow", "torch", "optuna", "sklearn", "pandas")

PEER_IMPORTS = "import httpx, typer, rich, pydantic"

#: Prints which heavy modules importing the CLI's entry point pulled in.
_PROBE = (
    "import json, sys; import flywheel.cli; "
    f"print(json.dumps(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)))"
)


@dataclass(frozen=True)
class Timing:
    """Wall times of one command over the repeats, in seconds."""

    name: str
    command: tuple[str, ...]
    times_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    flywheel = _flywheel_command()
    commands = {
        "flywheel --help": (*flywheel, "--help"),
        f"python -c '{PEER_IMPORTS}'": (sys.executable, "-c", PEER_IMPORTS),
        "python -c pass (interpreter alone)": (sys.executable, "-c", "pass"),
    }
    for command in commands.values():  # warm the page cache before measuring
        _run(command)
    timings = _interleaved(commands, args.repeats)
    heavy = json.loads(_run((sys.executable, "-c", _PROBE)).stdout)
    _print_table(timings, heavy, args.repeats)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cli_startup", description=__doc__)
    parser.add_argument("--repeats", type=int, default=15, help="Runs of each command.")
    return parser.parse_args(argv)


def _flywheel_command() -> tuple[str, ...]:
    script = Path(sys.executable).with_name("flywheel")
    if script.exists():
        return (str(script),)
    return (sys.executable, "-m", "flywheel.cli")


def _interleaved(commands: dict[str, tuple[str, ...]], repeats: int) -> list[Timing]:
    """Run the commands in turn, ``repeats`` rounds, so that load on the machine hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            start = time.perf_counter()
            _run(command)
            times[name].append(time.perf_counter() - start)
    return [Timing(name, commands[name], tuple(times[name])) for name in commands]


def _run(command: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)


def _print_table(timings: list[Timing], heavy: list[str], repeats: int) -> None:
    peer = timings[1]
    print(f"CLI start-up, {repeats} runs each, interleaved (median and fastest wall time)\n")
    print("| command | median (s) | fastest (s) | ratio to the peer (median) |")
    print("|---|---|---|---|")
    for timing in timings:
        ratio = timing.median_s / peer.median_s
        print(f"| `{timing.name}` | {timing.median_s:.3f} | {timing.min_s:.3f} | {ratio:.2f} |")
    print(f"\nHeavy modules imported by `import flywheel.cli`: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    sys.exit(main())
