"""Serve builds each model application in a process of its own, which imports the builder's
module. That import must stay light (no torch, mlflow, scipy): it is paid on every first deploy
of a model, before its replica starts and loads the model."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "mlflow", "scipy", "sklearn")


def test_the_application_builders_import_without_torch_mlflow_or_scipy() -> None:
    code = (
        "import json, sys; import flywheel.runtime.serve.app; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
