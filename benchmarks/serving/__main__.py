"""``python -m benchmarks.serving``: see :mod:`benchmarks.serving.cli`."""

import sys

from benchmarks.serving.cli import main

if __name__ == "__main__":
    main(sys.argv[1:])
