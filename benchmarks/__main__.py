"""`make bench`: run every benchmark and print its table."""

from __future__ import annotations

import sys

from benchmarks import ddp_throughput


def main() -> int:
    ddp_throughput.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
