"""Model-parallel strategies inside a training worker: the device mesh, FSDP2 ``fully_shard``,
DTensor tensor parallelism and activation checkpointing.

Decisions (mesh shape, which hooks, which plan styles) are made by the pure
:mod:`flywheel.specs.parallel`; this module applies them to a model. The order follows PyTorch's
own recipe (torchtitan): tensor parallel first, then activation checkpointing, then FSDP from the
units up to the root.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.distributed._composable.checkpoint_activation import checkpoint as checkpoint_module
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    RowwiseParallel,
    parallelize_module,
)

from flywheel.errors import FlywheelError
from flywheel.specs.experiment import TrainSpec
from flywheel.specs.parallel import (
    FSDP_UNITS_HOOK,
    TP_PLAN_HOOK,
    MeshShape,
    PlanStyle,
    check_tp_plan,
    required_hooks,
)

#: Names of the mesh dimensions, outermost first.
MESH_DIMS = ("dp", "tp")

_STYLES: dict[PlanStyle, Callable[[], ParallelStyle]] = {
    "colwise": ColwiseParallel,
    "rowwise": RowwiseParallel,
}


def make_mesh(shape: MeshShape, device: torch.device) -> DeviceMesh:
    """The 2-D ("dp", "tp") mesh over the default process group (one of its dims may be 1)."""
    return init_device_mesh(device.type, (shape.dp, shape.tp), mesh_dim_names=MESH_DIMS)


def check_hooks(task_module: object, train: TrainSpec) -> None:
    """Raise FlywheelError unless the task defines every hook the training settings need.

    The spec check catches this at validate time from the source; this catches a module that
    reached the workers without it (or defines it under a name bound at run time only).
    """
    needed = required_hooks(train.strategy, train.activation_checkpointing)
    missing = [f"{name}(model) ({why})" for name, why in needed.items()
               if not callable(getattr(task_module, name, None))]  # fmt: skip
    if missing:
        raise FlywheelError(f"the task module does not define {', '.join(missing)}")


def parallelize(
    model: nn.Module, train: TrainSpec, task_module: object, mesh: DeviceMesh
) -> nn.Module:
    """Apply the spec's sharded strategy (fsdp, tp or fsdp+tp) to ``model``, in place."""
    check_hooks(task_module, train)
    if train.strategy in ("tp", "fsdp+tp"):
        parallelize_module(model, mesh["tp"], tensor_parallel_styles(model, task_module))
    checkpoint_activations(model, train, task_module)
    if train.strategy in ("fsdp", "fsdp+tp"):
        policy = mixed_precision_policy(train)
        for unit in fsdp_units(model, task_module):
            fully_shard(unit, mesh=mesh["dp"], mp_policy=policy)
        fully_shard(model, mesh=mesh["dp"], mp_policy=policy)
    return model


def tensor_parallel_styles(model: nn.Module, task_module: object) -> dict[str, ParallelStyle]:
    """The task's ``tensor_parallel_plan(model)`` as DTensor parallel styles."""
    names = {name for name, _ in model.named_modules() if name}
    try:
        plan = check_tp_plan(getattr(task_module, TP_PLAN_HOOK)(model), names)
    except ValueError as e:
        raise FlywheelError(str(e)) from e
    return {name: _STYLES[style]() for name, style in plan.items()}


def fsdp_units(model: nn.Module, task_module: object) -> list[nn.Module]:
    """The task's ``fsdp_units(model)``: submodules of ``model``, each sharded on its own."""
    units = list(getattr(task_module, FSDP_UNITS_HOOK)(model))
    inside = {id(m) for m in model.modules()}
    strays = [type(u).__name__ for u in units if id(u) not in inside or u is model]
    if strays:
        raise FlywheelError(
            f"{FSDP_UNITS_HOOK}(model) must return submodules of the model (not the model "
            f"itself); these are not: {', '.join(strays)}"
        )
    return units


def checkpoint_activations(model: nn.Module, train: TrainSpec, task_module: object) -> nn.Module:
    """Recompute each unit's activations in backward when the spec asks for it (in place)."""
    if train.activation_checkpointing:
        check_hooks(task_module, train)
        for unit in fsdp_units(model, task_module):
            checkpoint_module(unit)
    return model


def mixed_precision_policy(train: TrainSpec) -> MixedPrecisionPolicy:
    """bf16 compute with fp32 gradient reduction under ``precision: bf16``; fp32 otherwise."""
    if train.precision == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def dp_group(mesh: DeviceMesh | None) -> Any:
    """The process group of this rank's data-parallel peers; None (the world) without a mesh."""
    return mesh["dp"].get_group() if mesh is not None else None
