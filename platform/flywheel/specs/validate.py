"""Full validation of an experiment spec file: the model, then the task code it points to."""

from __future__ import annotations

from pathlib import Path

import yaml

from flywheel.errors import SpecError, SpecProblem
from flywheel.specs.experiment import ExperimentSpec
from flywheel.specs.loading import load_spec
from flywheel.specs.parallel import required_hooks
from flywheel.specs.task_code import task_module_problems


def validate_experiment(path: Path) -> ExperimentSpec:
    """Load ``path`` and check that its task module exists and defines the required functions,
    and the hooks its training strategy needs.

    The experiment folder is the folder of the spec file. Raises SpecError listing every problem.
    """
    spec = load_spec(path)
    module_problems = task_module_problems(path.parent, spec.task.module)
    if module_problems:
        raise SpecError(_problems(path, ("task", "module"), module_problems))
    hooks = required_hooks(spec.train.strategy, spec.train.activation_checkpointing)
    hook_problems = task_module_problems(path.parent, spec.task.module, hooks)
    if hook_problems:
        raise SpecError(_problems(path, ("train", "strategy"), hook_problems))
    return spec


def _problems(path: Path, keys: tuple[str, ...], messages: list[str]) -> list[SpecProblem]:
    line = _line_of_key(path.read_text(encoding="utf-8"), keys)
    return [SpecProblem(str(path), line, ".".join(keys), m) for m in messages]


def _line_of_key(text: str, keys: tuple[str, ...]) -> int | None:
    """1-based line of a nested mapping key in YAML text (the text is known to be valid)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return line
        match = next(((k, v) for k, v in node.value if k.value == key), None)
        if match is None:
            return line
        line, node = match[0].start_mark.line + 1, match[1]
    return line
