"""`make bench`: run every benchmark and print its table."""

from __future__ import annotations

import sys

from benchmarks import cli_startup, ddp_throughput, model_parallel_throughput
from benchmarks.search_quality import cli as search_quality
from benchmarks.serving import cli as serving


def main() -> int:
    cli_startup.main([])
    ddp_throughput.main([])
    model_parallel_throughput.main([])
    search_quality.main([])
    serving.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
