"""The strategy code on a real 2-process gloo group (no Ray): mesh construction, the tensor-
parallel and FSDP wrapping of the charlm model, and a trial's strategy. 10 to 30 s: two processes
are spawned per test.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.tensor import DTensor, Shard

from flywheel.errors import FlywheelError
from flywheel.runtime.loop import make_loss, make_optimizer, train_step
from flywheel.runtime.parallel import (
    check_hooks,
    checkpoint_activations,
    make_mesh,
    parallelize,
)
from flywheel.runtime.trial import trial_spec
from flywheel.specs import ExperimentSpec, Fidelity, Stage
from flywheel.specs.experiment import TrainSpec
from flywheel.specs.parallel import MeshShape

CHARLM = Path(__file__).resolve().parents[3] / "experiments" / "charlm"
HPARAMS = {"dim": 16, "heads": 4, "layers": 2, "seq_len": 8}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(rank: int, port: int, body: Any, args: tuple[Any, ...]) -> None:
    # A forked child must not enter the OpenMP pool the parent started (earlier tests ran
    # torch ops): it would wait forever on threads that fork did not copy.
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        body(rank, *args)
    finally:
        dist.destroy_process_group()


def spawn(body: Any, *args: Any) -> None:
    """Run ``body(rank, *args)`` in 2 processes of one gloo group; fails if either fails.

    Forked, not spawned: test modules are not importable by name in a fresh interpreter.
    """
    mp.start_processes(
        _run, args=(_free_port(), body, args), nprocs=2, join=True, start_method="fork"
    )


def _check_meshes(rank: int) -> None:
    for dp, tp in ((1, 2), (2, 1)):
        mesh = make_mesh(MeshShape(dp, tp), torch.device("cpu"))
        assert mesh.mesh_dim_names == ("dp", "tp")
        assert (mesh["dp"].size(), mesh["tp"].size()) == (dp, tp)
        assert mesh["tp"].get_local_rank() == rank % tp
        assert mesh["dp"].get_local_rank() == rank // tp


def test_meshes_of_two_ranks() -> None:
    spawn(_check_meshes)


def _full_and_parallel(train: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    """The charlm model twice from one seed: as built, and wrapped for ``train`` on 2 ranks."""
    task = _charlm_task()
    torch.manual_seed(0)
    full = task.build_model(HPARAMS)
    torch.manual_seed(0)
    model = task.build_model(HPARAMS)
    spec = TrainSpec.model_validate({**train, "scaling": {"num_workers": 2}})
    parallelize(model, spec, task, make_mesh(spec.mesh_shape, torch.device("cpu")))
    return full, model


def _charlm_task() -> ModuleType:
    """experiments/charlm/task.py under a name of its own: other tests import other `task`s."""
    spec = importlib.util.spec_from_file_location("charlm_task_under_test", CHARLM / "task.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_fsdp_tp(rank: int) -> None:
    full, model = _full_and_parallel({"strategy": "fsdp+tp", "mesh": {"dp": 1, "tp": 2}})
    q = model.blocks[0].attn.q.weight
    assert isinstance(q, DTensor)
    assert q.placements[1] == Shard(0), "colwise: output features split over tp"
    assert getattr(q.placements[0], "dim", None) == 0, "and FSDP-sharded over dp (strided)"
    proj = model.blocks[0].attn.proj.weight
    assert isinstance(proj, DTensor) and proj.placements[1] == Shard(1), "rowwise: input features"
    head = model.head.weight
    assert isinstance(head, DTensor) and head.placements == (Shard(0),), "FSDP only: replicated"
    assert q.to_local().shape == (8, 16), "the tp half of 16 x 16 (dp has one rank)"
    ids = torch.randint(0, 90, (3, 8))
    torch.testing.assert_close(model(ids), full(ids), rtol=1e-5, atol=1e-6)


def test_fsdp_tp_splits_the_charlm_model_and_computes_the_same() -> None:
    spawn(_check_fsdp_tp)


def _check_fsdp_clipping(rank: int) -> None:
    """Under fsdp, clip_grad_norm_ sees the global norm, as in one process."""
    full, model = _full_and_parallel({"strategy": "fsdp"})
    ids = torch.randint(0, 90, (4, 8), generator=torch.Generator().manual_seed(1))
    full(ids).square().mean().backward()
    model(ids[rank * 2 : rank * 2 + 2]).square().mean().backward()
    for p in model.parameters():  # the mean over the batch: FSDP averages the two halves
        assert p.grad is not None
    expected = torch.nn.utils.clip_grad_norm_(full.parameters(), 1e-3)
    total = torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
    total = total.full_tensor() if isinstance(total, DTensor) else total
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-7)


def test_fsdp_gradient_clipping_uses_the_global_norm() -> None:
    spawn(_check_fsdp_clipping)


def test_a_missing_hook_is_caught_at_run_time() -> None:
    class Bare:
        build_model = load_data = staticmethod(lambda hparams: None)

    train = TrainSpec.model_validate({"strategy": "tp", "scaling": {"num_workers": 2}})
    with pytest.raises(FlywheelError, match=r"does not define tensor_parallel_plan\(model\)"):
        check_hooks(Bare(), train)


def test_trials_keep_the_tensor_parallel_size() -> None:
    spec = ExperimentSpec.model_validate(
        {
            "name": "lm",
            "team": "t",
            "task": {"module": "task"},
            "train": {
                "strategy": "fsdp+tp",
                "mesh": {"dp": 2, "tp": 2},
                "batch_size": 32,
                "scaling": {"num_workers": 4},
            },
            "search": {
                "metric": "val_loss",
                "budget": 4,
                "trial_workers": 2,
                "space": {"train.optimizer.lr": {"type": "loguniform", "low": 0.001, "high": 0.1}},
            },
        }
    )
    stage = Stage(name="s", sampler="random", trials=1, fidelity=Fidelity())
    trial = trial_spec(spec, {"train.optimizer.lr": 0.01}, stage)
    assert (trial.train.strategy, trial.train.mesh_shape) == ("fsdp+tp", MeshShape(1, 2))
    assert trial.train.scaling.num_workers == 2


def _one_step(accumulation: int, activation_checkpointing: bool) -> dict[str, torch.Tensor]:
    """The charlm parameters after one SGD step on one fixed batch of 8 windows."""
    spec = ExperimentSpec.model_validate(
        {
            "name": "lm",
            "team": "t",
            "task": {"module": "task", "kind": "language_model"},
            "train": {
                "batch_size": 8,
                "optimizer": {"name": "sgd", "lr": 0.5},
                "grad_accumulation_steps": accumulation,
                "activation_checkpointing": activation_checkpointing,
            },
        }
    )
    task = _charlm_task()
    torch.manual_seed(0)
    model = checkpoint_activations(task.build_model(HPARAMS), spec.train, task)
    ids = torch.randint(0, 90, (8, 9), generator=torch.Generator().manual_seed(2))
    optimizer = make_optimizer(model.parameters(), spec.train.optimizer)
    train_step(
        model, (ids[:, :-1], ids[:, 1:]), make_loss(spec), optimizer, spec, torch.device("cpu")
    )
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_accumulation_and_activation_checkpointing_keep_the_step() -> None:
    """4 micro-batches of 2 with recomputed activations take the step of one batch of 8."""
    plain = _one_step(1, activation_checkpointing=False)
    changed = _one_step(4, activation_checkpointing=True)
    torch.manual_seed(0)
    initial = _charlm_task().build_model(HPARAMS).state_dict()
    assert not torch.equal(plain["head.weight"], initial["head.weight"]), "no step was taken"
    for name, value in plain.items():
        torch.testing.assert_close(changed[name], value, rtol=1e-5, atol=1e-6, msg=name)
