"""Pure rules of model parallelism: mesh shapes, the task hooks a strategy needs, and the
tensor-parallel plan a task returns.

No torch here: the runtime turns these decisions into a DeviceMesh, ``fully_shard`` and
``parallelize_module`` calls (:mod:`flywheel.runtime.parallel`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Strategy = Literal["ddp", "fsdp", "tp", "fsdp+tp"]
#: How a tensor-parallel plan may split one module: by output features (colwise) or by input
#: features (rowwise), as Megatron-LM pairs them.
PlanStyle = Literal["colwise", "rowwise"]
PLAN_STYLES: tuple[PlanStyle, ...] = ("colwise", "rowwise")

#: The hook a task defines to say how its model is split by tensor parallelism.
TP_PLAN_HOOK = "tensor_parallel_plan"
#: The hook a task defines to list its FSDP units (and activation-checkpointing units).
FSDP_UNITS_HOOK = "fsdp_units"


@dataclass(frozen=True)
class MeshShape:
    """A 2-D device mesh: ``dp`` data-parallel (or FSDP-sharding) groups of ``tp`` ranks each.

    Ranks are laid out row-major, as ``init_device_mesh`` does: rank = dp_index * tp + tp_index.
    """

    dp: int
    tp: int

    @property
    def size(self) -> int:
        return self.dp * self.tp

    def describe(self) -> str:
        return f"dp={self.dp},tp={self.tp}"


def resolve_mesh(strategy: Strategy, dp: int | None, tp: int | None, workers: int) -> MeshShape:
    """The mesh a strategy trains on with ``workers`` workers; ValueError says what to fix.

    ``dp``/``tp`` are the spec's ``train.mesh`` (None when it has none). ddp and fsdp use every
    worker for data (``dp = workers``), tp uses every worker for one tensor-parallel group
    (``tp = workers``); fsdp+tp needs the mesh written out.
    """
    if dp is None or tp is None:
        if strategy == "fsdp+tp":
            raise ValueError(
                f"strategy fsdp+tp needs train.mesh, e.g. {{dp: 1, tp: {workers}}}, with dp * tp "
                f"equal to scaling.num_workers ({workers})"
            )
        return MeshShape(1, workers) if strategy == "tp" else MeshShape(workers, 1)
    shape = MeshShape(dp, tp)
    if shape.size != workers:
        raise ValueError(
            f"train.mesh dp * tp = {dp} * {tp} = {shape.size}, but scaling.num_workers is "
            f"{workers}; make them equal"
        )
    if strategy in ("ddp", "fsdp") and tp != 1:
        raise ValueError(f"strategy {strategy} splits no layers: set mesh.tp to 1, or use fsdp+tp")
    if strategy == "tp" and dp != 1:
        raise ValueError(
            "strategy tp has one tensor-parallel group: set mesh.dp to 1, or use fsdp+tp"
        )
    return shape


def required_hooks(strategy: Strategy, activation_checkpointing: bool) -> dict[str, str]:
    """The task hooks the training settings need, each with the reason, in a stable order."""
    hooks: dict[str, str] = {}
    if strategy in ("tp", "fsdp+tp"):
        hooks[TP_PLAN_HOOK] = f"strategy {strategy} splits the model by the task's plan"
    if strategy in ("fsdp", "fsdp+tp"):
        hooks[FSDP_UNITS_HOOK] = f"strategy {strategy} shards the model unit by unit"
    elif activation_checkpointing:
        hooks[FSDP_UNITS_HOOK] = "activation_checkpointing recomputes the task's units"
    return hooks


def data_coordinates(rank: int, shape: MeshShape) -> tuple[int, int]:
    """(data-parallel rank, data-parallel size) of a global rank: the ranks of one tensor-parallel
    group read the same batches."""
    if not 0 <= rank < shape.size:
        raise ValueError(f"rank {rank} is outside a mesh of {shape.size} ranks")
    return rank // shape.tp, shape.dp


def check_tp_plan(plan: object, module_names: set[str]) -> dict[str, PlanStyle]:
    """The task's tensor-parallel plan, checked: a mapping from module names of the model to
    ``"colwise"`` or ``"rowwise"``. ValueError lists every problem."""
    if not isinstance(plan, Mapping) or not plan:
        raise ValueError(
            f"{TP_PLAN_HOOK}(model) must return a non-empty dict of module name -> "
            f"'colwise' | 'rowwise', not {plan!r}"
        )
    problems = []
    checked: dict[str, PlanStyle] = {}
    for name, style in plan.items():
        if name not in module_names:
            problems.append(f"{name!r} is not a module of the model")
        elif style == "colwise" or style == "rowwise":
            checked[name] = style
        else:
            problems.append(f"{name!r}: {style!r} is not one of {', '.join(PLAN_STYLES)}")
    if problems:
        raise ValueError(f"{TP_PLAN_HOOK}(model) is wrong: " + "; ".join(problems))
    return checked


def trial_training(
    strategy: Strategy, shape: MeshShape, trial_workers: int
) -> tuple[Strategy, dict[str, int] | None]:
    """(strategy, ``train.mesh``) of a search trial that trains on ``trial_workers`` workers.

    One worker trains in the trial's own process, unsharded: the same model and math, no mesh
    (``ddp`` with one worker). More keep the strategy; fsdp+tp keeps the mesh's ``tp`` and gives
    the rest to ``dp``; the other strategies derive their mesh from the worker count.
    """
    if trial_workers == 1:
        return "ddp", None
    if strategy == "fsdp+tp":
        return strategy, {"dp": trial_workers // shape.tp, "tp": shape.tp}
    return strategy, None
