"""Job entry point: ``python -m flywheel.runtime .flywheel/plan.json``."""

from __future__ import annotations

import sys

from flywheel.runtime.driver import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
