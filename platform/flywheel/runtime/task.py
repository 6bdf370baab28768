"""Load the user's task module (``build_model``, ``load_data``) from the experiment folder."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from torch.utils.data import Dataset

from flywheel.errors import FlywheelError
from flywheel.specs.base import Scalar
from flywheel.specs.task_code import task_module_problems


class TaskModule(Protocol):
    """What a task module provides."""

    def build_model(self, hparams: dict[str, Scalar]) -> torch.nn.Module: ...

    def load_data(self, hparams: dict[str, Scalar]) -> Dataset[Any]: ...


@dataclass(frozen=True)
class LoadedTask:
    """A task module, imported, with the file it came from."""

    module: TaskModule
    file: Path

    @property
    def code_path(self) -> str:
        """What to ship with a logged model so the model class can be unpickled."""
        return str(self.file.parent if self.file.name == "__init__.py" else self.file)


def load_task(experiment_dir: Path | None, module: str) -> LoadedTask:
    """Import ``module`` from ``experiment_dir``, or from ``sys.path`` when None.

    Inside Ray workers the job's working directory is on ``sys.path`` (Ray puts it there) while
    the current directory may be elsewhere, so workers pass None.
    """
    if experiment_dir is not None:
        problems = task_module_problems(experiment_dir, module)
        if problems:
            raise FlywheelError("; ".join(problems))
        if str(experiment_dir) not in sys.path:
            sys.path.insert(0, str(experiment_dir))
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise FlywheelError(f"cannot import the task module {module!r}: {e}") from e
    file = Path(str(imported.__file__))
    return LoadedTask(cast(TaskModule, imported), file)
