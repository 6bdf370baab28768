"""``python -m benchmarks.scheduling``: see :mod:`benchmarks.scheduling.cli`."""

import sys

from benchmarks.scheduling.cli import main

if __name__ == "__main__":
    main(sys.argv[1:])
