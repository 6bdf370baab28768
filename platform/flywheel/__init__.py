"""flywheel: a Ray-based distributed experimentation platform for ML teams.

``Client`` is loaded on first use (PEP 562), so that importing the specs does not pull in Ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flywheel.errors import FlywheelError, SpecError
from flywheel.settings import Settings
from flywheel.specs import ExperimentSpec, load_spec

if TYPE_CHECKING:
    from flywheel.client import Client

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ExperimentSpec",
    "FlywheelError",
    "Settings",
    "SpecError",
    "__version__",
    "load_spec",
]


def __getattr__(name: str) -> Any:
    if name == "Client":
        return importlib.import_module("flywheel.client").Client
    raise AttributeError(f"module 'flywheel' has no attribute {name!r}")
