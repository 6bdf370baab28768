"""Serving job entry point: ``python -m flywheel.runtime.serve '<ServePlan JSON>'``.

The job prints its result last, on one line that starts with ``RESULT_PREFIX``; a failure is
one ``flywheel:`` line on stderr and exit code 1.
"""

from __future__ import annotations

import json
import sys

import ray

from flywheel.errors import FlywheelError
from flywheel.rollout import RESULT_PREFIX, ServePlan
from flywheel.runtime.serve.admin import run_action


def main(argv: list[str]) -> int:
    plan = ServePlan.model_validate_json(argv[0])
    ray.init(log_to_driver=False)
    try:
        result = run_action(plan)
    except FlywheelError as e:
        print(f"flywheel: {e}", file=sys.stderr, flush=True)
        return 1
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
