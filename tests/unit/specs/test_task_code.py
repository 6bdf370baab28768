"""Import-path resolution and the static check of task modules (no user code is run)."""

from pathlib import Path

from flywheel.specs.task_code import find_task_file, task_module_problems

GOOD = "def build_model(hparams):\n    pass\n\ndef load_data(hparams):\n    pass\n"


def test_module_file_is_found(tmp_path: Path) -> None:
    (tmp_path / "task.py").write_text(GOOD)
    assert find_task_file(tmp_path, "task") == tmp_path / "task.py"
    assert task_module_problems(tmp_path, "task") == []


def test_dotted_path_resolves_to_a_package_module(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    (tmp_path / "models" / "mlp.py").write_text(GOOD)
    assert find_task_file(tmp_path, "models.mlp") == tmp_path / "models" / "mlp.py"
    assert task_module_problems(tmp_path, "models.mlp") == []


def test_package_init_is_found(tmp_path: Path) -> None:
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "__init__.py").write_text(GOOD)
    assert find_task_file(tmp_path, "task") == tmp_path / "task" / "__init__.py"


def test_missing_module(tmp_path: Path) -> None:
    where = tmp_path / "nope"
    assert task_module_problems(tmp_path, "nope") == [
        f"module 'nope' not found: expected {where}.py or {where}/__init__.py"
    ]


def test_missing_functions_are_each_reported(tmp_path: Path) -> None:
    (tmp_path / "task.py").write_text("x = 1\n")
    assert task_module_problems(tmp_path, "task") == [
        "module 'task' does not define build_model(hparams)",
        "module 'task' does not define load_data(hparams)",
    ]


def test_function_without_argument(tmp_path: Path) -> None:
    (tmp_path / "task.py").write_text("def build_model():\n    pass\ndef load_data(h):\n    pass\n")
    assert task_module_problems(tmp_path, "task") == [
        "task.build_model must take one argument (hparams)"
    ]


def test_syntax_error_is_reported_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "task.py").write_text("def build_model(h):\n    return (\n")
    [problem] = task_module_problems(tmp_path, "task")
    assert problem.startswith("module 'task' has a syntax error at task.py:2")


def test_the_module_is_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "task.py").write_text(f"open({str(marker)!r}, 'w').close()\n" + GOOD)
    assert task_module_problems(tmp_path, "task") == []
    assert not marker.exists()
