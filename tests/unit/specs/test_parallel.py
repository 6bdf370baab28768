"""Pure rules of model parallelism: mesh shapes, required hooks, plans, trial settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from flywheel.errors import SpecError
from flywheel.specs import ExperimentSpec
from flywheel.specs.parallel import (
    MeshShape,
    check_tp_plan,
    data_coordinates,
    required_hooks,
    resolve_mesh,
    trial_training,
)
from flywheel.specs.task_code import task_module_problems
from flywheel.specs.validate import validate_experiment


@pytest.mark.parametrize(
    ("strategy", "dp", "tp", "workers", "expected"),
    [
        ("ddp", None, None, 4, MeshShape(4, 1)),
        ("fsdp", None, None, 2, MeshShape(2, 1)),
        ("tp", None, None, 2, MeshShape(1, 2)),
        ("fsdp+tp", 2, 2, 4, MeshShape(2, 2)),
        ("fsdp+tp", 1, 2, 2, MeshShape(1, 2)),
        ("fsdp", 3, 1, 3, MeshShape(3, 1)),
    ],
)
def test_mesh_shapes(
    strategy: str, dp: int | None, tp: int | None, workers: int, expected: MeshShape
) -> None:
    assert resolve_mesh(strategy, dp, tp, workers) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("strategy", "dp", "tp", "workers", "message"),
    [
        ("fsdp+tp", None, None, 2, "strategy fsdp+tp needs train.mesh, e.g. {dp: 1, tp: 2}"),
        ("fsdp+tp", 2, 2, 2, "dp * tp = 2 * 2 = 4, but scaling.num_workers is 2"),
        ("fsdp", 1, 2, 2, "strategy fsdp splits no layers: set mesh.tp to 1"),
        ("ddp", 1, 2, 2, "strategy ddp splits no layers"),
        ("tp", 2, 1, 2, "strategy tp has one tensor-parallel group: set mesh.dp to 1"),
    ],
)
def test_mesh_mistakes_say_what_to_fix(
    strategy: str, dp: int | None, tp: int | None, workers: int, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_mesh(strategy, dp, tp, workers)  # type: ignore[arg-type]


def test_data_coordinates_group_tensor_parallel_ranks() -> None:
    shape = MeshShape(dp=2, tp=2)
    assert [data_coordinates(r, shape) for r in range(4)] == [(0, 2), (0, 2), (1, 2), (1, 2)]
    assert [data_coordinates(r, MeshShape(1, 2)) for r in range(2)] == [(0, 1), (0, 1)]
    with pytest.raises(ValueError, match="outside a mesh of 4"):
        data_coordinates(4, shape)


def test_required_hooks() -> None:
    assert required_hooks("ddp", False) == {}
    assert list(required_hooks("tp", False)) == ["tensor_parallel_plan"]
    assert list(required_hooks("fsdp", False)) == ["fsdp_units"]
    assert list(required_hooks("fsdp+tp", True)) == ["tensor_parallel_plan", "fsdp_units"]
    assert list(required_hooks("ddp", True)) == ["fsdp_units"]


def test_tp_plan_is_checked_against_the_model() -> None:
    names = {"a", "b", "b.c"}
    assert check_tp_plan({"a": "colwise", "b.c": "rowwise"}, names) == {
        "a": "colwise",
        "b.c": "rowwise",
    }
    with pytest.raises(ValueError) as info:
        check_tp_plan({"a": "diagonal", "x": "colwise"}, names)
    assert str(info.value) == (
        "tensor_parallel_plan(model) is wrong: 'a': 'diagonal' is not one of colwise, rowwise; "
        "'x' is not a module of the model"
    )
    with pytest.raises(ValueError, match="must return a non-empty dict"):
        check_tp_plan([], names)


def test_trial_training() -> None:
    assert trial_training("fsdp+tp", MeshShape(2, 2), 1) == ("ddp", None)
    assert trial_training("fsdp+tp", MeshShape(2, 2), 4) == ("fsdp+tp", {"dp": 2, "tp": 2})
    assert trial_training("fsdp+tp", MeshShape(4, 2), 2) == ("fsdp+tp", {"dp": 1, "tp": 2})
    assert trial_training("tp", MeshShape(1, 4), 2) == ("tp", None)


def _spec(**train: object) -> dict[str, object]:
    return {"name": "lm", "team": "t", "task": {"module": "task"}, "train": train}


def test_spec_mesh_and_batch_rules() -> None:
    spec = ExperimentSpec.model_validate(
        _spec(strategy="fsdp+tp", mesh={"dp": 2, "tp": 2}, scaling={"num_workers": 4},
              batch_size=12, grad_accumulation_steps=3)
    )  # fmt: skip
    assert spec.train.mesh_shape == MeshShape(2, 2)
    assert spec.train.batch_parts == 6
    with pytest.raises(ValidationError, match="over 2 data-parallel groups x 3 accumulation"):
        ExperimentSpec.model_validate(
            _spec(strategy="fsdp+tp", mesh={"dp": 2, "tp": 2}, scaling={"num_workers": 4},
                  batch_size=8, grad_accumulation_steps=3)
        )  # fmt: skip
    tp_only = ExperimentSpec.model_validate(
        _spec(strategy="tp", scaling={"num_workers": 2}, batch_size=5)
    )
    assert tp_only.train.mesh_shape == MeshShape(1, 2), "tp ranks share each batch"


def test_trial_workers_must_fit_the_tensor_parallel_size() -> None:
    spec = _spec(strategy="fsdp+tp", mesh={"dp": 2, "tp": 2}, scaling={"num_workers": 4})
    lr = {"type": "loguniform", "low": 1e-4, "high": 1e-2}
    search = {"metric": "val_loss", "budget": 4, "space": {"train.optimizer.lr": lr}}
    with pytest.raises(ValidationError, match="trial_workers must be 1"):
        ExperimentSpec.model_validate({**spec, "search": {**search, "trial_workers": 3}})
    ExperimentSpec.model_validate({**spec, "search": {**search, "trial_workers": 2}})


HOOKLESS = "def build_model(hparams):\n    pass\n\ndef load_data(hparams):\n    pass\n"


def test_missing_hooks_are_reported_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "task.py").write_text(HOOKLESS + "def fsdp_units():\n    pass\n")
    assert task_module_problems(tmp_path, "task", required_hooks("fsdp+tp", False)) == [
        "module 'task' does not define tensor_parallel_plan(model), needed: strategy fsdp+tp "
        "splits the model by the task's plan",
        "task.fsdp_units must take one argument (model)",
    ]


def test_validate_points_at_the_strategy_line(tmp_path: Path) -> None:
    (tmp_path / "task.py").write_text(HOOKLESS)
    spec = tmp_path / "train.yaml"
    spec.write_text(
        "name: lm\nteam: t\ntask:\n  module: task\ntrain:\n  strategy: tp\n"
        "  scaling: {num_workers: 2}\n"
    )
    with pytest.raises(SpecError) as info:
        validate_experiment(spec)
    [problem] = info.value.problems
    assert (problem.line, problem.path) == (6, "train.strategy")
    assert "does not define tensor_parallel_plan(model)" in problem.message


def test_gradient_clipping_is_refused_with_tensor_parallelism() -> None:
    with pytest.raises(ValidationError, match="grad_clip_norm is not supported with strategy tp"):
        ExperimentSpec.model_validate(
            _spec(strategy="tp", scaling={"num_workers": 2}, grad_clip_norm=1.0)
        )
    ExperimentSpec.model_validate(
        _spec(strategy="fsdp", scaling={"num_workers": 2}, grad_clip_norm=1.0)
    )
