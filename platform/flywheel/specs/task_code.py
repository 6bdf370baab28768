"""Static check of the user's task module: it exists and defines the functions flywheel calls.

The module is parsed, never imported: validating a spec must not run user code (the control
plane validates specs it receives from every team).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

REQUIRED_FUNCTIONS = ("build_model", "load_data")

_Function = ast.FunctionDef | ast.AsyncFunctionDef


def find_task_file(experiment_dir: Path, module: str) -> Path | None:
    """The file that ``import module`` would load from ``experiment_dir``, if any."""
    base = experiment_dir.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def task_module_problems(
    experiment_dir: Path, module: str, hooks: Mapping[str, str] | None = None
) -> list[str]:
    """What is wrong with the task module, as messages; empty when it is usable.

    ``hooks``: functions of one argument (the model) the training settings need, each with the
    reason (see :func:`flywheel.specs.parallel.required_hooks`).
    """
    path = find_task_file(experiment_dir, module)
    if path is None:
        where = experiment_dir.joinpath(*module.split("."))
        return [f"module {module!r} not found: expected {where}.py or {where}/__init__.py"]
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as e:
        return [f"module {module!r} has a syntax error at {path.name}:{e.lineno}: {e.msg}"]
    defined = {node.name: node for node in tree.body if isinstance(node, _Function)}
    problems = []
    for name in REQUIRED_FUNCTIONS:
        func = defined.get(name)
        if func is None:
            problems.append(f"module {module!r} does not define {name}(hparams)")
        elif not _takes_an_argument(func):
            problems.append(f"{module}.{name} must take one argument (hparams)")
    for name, reason in (hooks or {}).items():
        hook = defined.get(name)
        if hook is None:
            problems.append(f"module {module!r} does not define {name}(model), needed: {reason}")
        elif not _takes_an_argument(hook):
            problems.append(f"{module}.{name} must take one argument (model)")
    return problems


def _takes_an_argument(func: _Function) -> bool:
    return len(func.args.args) + len(func.args.posonlyargs) >= 1 or func.args.vararg is not None
