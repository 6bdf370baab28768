"""``python -m benchmarks.search_quality``: see :mod:`benchmarks.search_quality.cli`."""

import sys

from benchmarks.search_quality.cli import main

if __name__ == "__main__":
    main(sys.argv[1:])
