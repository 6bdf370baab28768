"""Sharded checkpoints with torch.distributed.checkpoint (DCP), for fsdp, tp and fsdp+tp.

Every rank writes its own shard into a local directory and reports it to Ray Train, which merges
the ranks' directories into one checkpoint under the storage root: rank 0's holds DCP's
``.metadata`` and :data:`INFO_FILE`, each rank's its ``__<rank>_0.distcp``. Loading reshards:
workers load into their sharded model and optimizer, and a single process (the driver
registering the model) loads full, unsharded tensors.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

#: Written by rank 0 beside the shards: the epoch and the strategy that wrote them.
INFO_FILE = "flywheel.json"
METADATA_FILE = ".metadata"


def is_sharded(directory: Path) -> bool:
    """Whether ``directory`` holds a DCP checkpoint (rather than a ddp ``checkpoint.pt``)."""
    return (directory / METADATA_FILE).is_file()


def save_sharded(
    model: nn.Module, optimizer: torch.optim.Optimizer, directory: Path, info: dict[str, Any]
) -> None:
    """Write this rank's shard of model and optimizer state (collective: every rank calls it)."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp_save({"model": model_state, "optim": optimizer_state}, checkpoint_id=directory)
    if torch.distributed.get_rank() == 0:
        (directory / INFO_FILE).write_text(json.dumps(info))


def load_sharded(model: nn.Module, optimizer: torch.optim.Optimizer, directory: Path) -> int:
    """Load a sharded checkpoint into the sharded model and optimizer; return its epoch."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp_load({"model": model_state, "optim": optimizer_state}, checkpoint_id=directory)
    set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state)
    return read_epoch(directory)


def read_epoch(directory: Path) -> int:
    info: dict[str, Any] = json.loads((directory / INFO_FILE).read_text())
    return int(info["epoch"])


def load_full(directory: Path) -> dict[str, Any]:
    """The whole checkpoint, unsharded, in one process without a process group.

    ``{"model": state dict with plain tensors, "optimizer": state keyed by parameter name,
    "epoch": int}``: what the driver needs to register the model.
    """
    with tempfile.TemporaryDirectory() as scratch:
        full_path = Path(scratch) / "full.pt"
        dcp_to_torch_save(directory, full_path)
        state: dict[str, Any] = torch.load(full_path, weights_only=True)
    return {"model": state["model"], "optimizer": state["optim"], "epoch": read_epoch(directory)}
