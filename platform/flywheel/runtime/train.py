"""Distributed training with Ray Train's TorchTrainer: ddp, fsdp, tp and fsdp+tp.

The driver calls :func:`fit`; every Ray Train worker runs :func:`train_loop_per_worker`. A
checkpoint is written every ``train.checkpoint_every_epochs`` epochs: by rank 0 alone under ddp
(``checkpoint.pt``), by every rank under the sharded strategies (torch.distributed.checkpoint,
see :mod:`flywheel.runtime.sharded_checkpoint`). A worker group that fails is restarted by Ray
Train (``train.max_failures``) and resumes from the last checkpoint.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from torch import nn

from flywheel.plans import JobPlan
from flywheel.progress import ProgressEvent, emit
from flywheel.runtime import sharded_checkpoint
from flywheel.runtime.epochs import Placement, train_epochs
from flywheel.runtime.parallel import checkpoint_activations, dp_group, make_mesh, parallelize
from flywheel.runtime.task import LoadedTask, load_task
from flywheel.specs.experiment import ExperimentSpec, ScalingSpec
from flywheel.specs.parallel import data_coordinates
from flywheel.storage.arrow import ray_storage
from flywheel.storage_layout import StorageLayout
from flywheel.tracking import TAG_RESUMED_FROM_EPOCH, log_epoch_metrics, set_run_tag

CHECKPOINT_FILE = "checkpoint.pt"


def fit(
    plan: JobPlan,
    run_id: str | None,
    task_dir: Path | None = None,
    name: str | None = None,
    callbacks: list[Any] | None = None,
    resume_from: Checkpoint | None = None,
) -> ray.train.Result:
    """Train the plan's model on the Ray cluster; return Ray Train's result.

    ``resume_from``: a checkpoint of an earlier run of the same model to continue from (passed to
    the workers by path, as Ray Train V2 advises instead of ``resume_from_checkpoint``); the
    run's own checkpoints take precedence once it has some. A sharded checkpoint loads under any
    sharded strategy and mesh (DCP reshards); a ddp one under ddp.
    """
    spec = plan.spec
    storage = ray_storage(checkpoint_root(plan))
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "plan": plan.model_dump(mode="json"),
            "run_id": run_id,
            "task_dir": str(task_dir) if task_dir else None,
            "resume_from": resume_from.path if resume_from else None,
        },
        scaling_config=scaling_to_ray(spec.train.scaling),
        run_config=ray.train.RunConfig(
            name=name or plan.job_id,
            storage_path=storage.path,
            storage_filesystem=storage.filesystem,
            failure_config=FailureConfig(max_failures=spec.train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
        ),
    )
    return trainer.fit()


def scaling_to_ray(scaling: ScalingSpec) -> ScalingConfig:
    """The spec's scaling section as a Ray Train ScalingConfig."""
    return ScalingConfig(
        num_workers=scaling.num_workers,
        use_gpu=scaling.use_gpu,
        resources_per_worker=dict(scaling.resources_per_worker) or None,
    )


def checkpoint_root(plan: JobPlan) -> str:
    """Where Ray Train keeps this team's checkpoints under the storage root."""
    return StorageLayout(plan.storage_root).checkpoints(plan.spec.team, plan.spec.name)


def load_checkpoint_state(checkpoint: Checkpoint) -> dict[str, Any]:
    """The saved model/optimizer state and epoch inside a flywheel checkpoint, unsharded.

    Sharded checkpoints are gathered into full tensors here, in one process: ``model`` is a
    state dict that the task's unwrapped model loads, whatever the strategy that wrote it.
    """
    with checkpoint.as_directory() as directory:
        if sharded_checkpoint.is_sharded(Path(directory)):
            return sharded_checkpoint.load_full(Path(directory))
        state: dict[str, Any] = torch.load(Path(directory) / CHECKPOINT_FILE, weights_only=True)
    return state


@dataclass
class _Worker:
    """What one training worker holds."""

    spec: ExperimentSpec
    rank: int
    world_size: int
    device: torch.device
    tracking_uri: str
    run_id: str | None


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The training loop each Ray Train worker runs."""
    plan = JobPlan.model_validate(config["plan"])
    context = ray.train.get_context()
    worker = _Worker(
        plan.spec,
        context.get_world_rank(),
        context.get_world_size(),
        ray.train.torch.get_device(),
        plan.tracking_uri,
        config["run_id"],
    )
    task_dir = config["task_dir"]
    task = load_task(Path(task_dir) if task_dir else None, plan.spec.task.module)
    placement, wrap = _placement_and_wrap(worker, task)
    train_epochs(
        plan.spec,
        task,
        placement,
        wrap=wrap,
        restore=lambda model, optimizer: _restore(model, optimizer, worker, config["resume_from"]),
        on_epoch=lambda epoch, metrics, model, optimizer: _report(
            epoch, metrics, model, optimizer, worker
        ),
        feedback=plan.feedback,
    )


def _placement_and_wrap(
    worker: _Worker, task: LoadedTask
) -> tuple[Placement, Callable[[nn.Module], nn.Module]]:
    """Where this worker reads data, and how its model is wrapped, for the spec's strategy."""
    train = worker.spec.train
    if train.strategy == "ddp":
        placement = Placement(worker.rank, worker.world_size, worker.device)
        return placement, lambda model: ray.train.torch.prepare_model(
            checkpoint_activations(model, train, task.module)
        )
    shape = train.mesh_shape
    mesh = make_mesh(shape, worker.device)
    data_rank, data_size = data_coordinates(worker.rank, shape)
    placement = Placement(
        worker.rank, worker.world_size, worker.device, data_rank, data_size, dp_group(mesh)
    )
    return placement, lambda model: parallelize(model.to(worker.device), train, task.module, mesh)


def _restore(
    model: nn.Module, optimizer: torch.optim.Optimizer, worker: _Worker, resume_from: str | None
) -> int:
    """Load the last checkpoint (or ``resume_from``) into ``model`` and ``optimizer``; return the
    next epoch."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and resume_from is not None:
        checkpoint = Checkpoint(resume_from)
    if checkpoint is None:
        return 1
    with checkpoint.as_directory() as name:
        directory = Path(name)
        if sharded_checkpoint.is_sharded(directory):
            epoch = sharded_checkpoint.load_sharded(model, optimizer, directory)
        else:
            state = torch.load(directory / CHECKPOINT_FILE, weights_only=True)
            _unwrap(model).load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            epoch = int(state["epoch"])
    if worker.rank == 0:
        emit(ProgressEvent("train", f"resumed from the checkpoint of epoch {epoch}", epoch=epoch))
        if worker.run_id:
            set_run_tag(worker.tracking_uri, worker.run_id, TAG_RESUMED_FROM_EPOCH, str(epoch))
    return epoch + 1


def _report(
    epoch: int,
    metrics: dict[str, float],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    worker: _Worker,
) -> None:
    """Report the epoch to MLflow and the job log, and to Ray Train when a checkpoint is due.

    Ray Train's controller takes one report per poll (every 2 s by default) and a worker's next
    report waits for it, so reporting every epoch would throttle short epochs to that pace.
    Metrics reach MLflow every epoch anyway; Ray Train hears only of checkpoints.
    """
    train = worker.spec.train
    if worker.rank == 0:
        if worker.run_id:
            log_epoch_metrics(worker.tracking_uri, worker.run_id, metrics, step=epoch)
        emit(ProgressEvent("train", epoch=epoch, epochs=train.epochs, metrics=metrics))
    if epoch % train.checkpoint_every_epochs and epoch != train.epochs:
        return
    reported = {**metrics, "epoch": epoch}
    if train.strategy != "ddp":
        with tempfile.TemporaryDirectory() as directory:
            info = {"epoch": epoch, "strategy": train.strategy}
            sharded_checkpoint.save_sharded(model, optimizer, Path(directory), info)
            ray.train.report(reported, checkpoint=Checkpoint.from_directory(directory))
        return
    if worker.rank != 0:
        ray.train.report(reported)
        return
    with tempfile.TemporaryDirectory() as directory:
        state = {
            "model": _unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
        }
        torch.save(state, Path(directory) / CHECKPOINT_FILE)
        ray.train.report(reported, checkpoint=Checkpoint.from_directory(directory))


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
