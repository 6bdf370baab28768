"""The model every server in the serving benchmark answers with, and the answer the peers give.

The digits MLP (``experiments/digits/task.py``, 128 hidden units) trained for 60 full-batch Adam
steps in this process (about 2 s), saved once as an MLflow model folder; the peers load that
folder, flywheel registers the same weights in its platform's MLflow. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import mlflow.pytorch
import numpy as np
import torch
from mlflow.models import infer_signature

REPO = Path(__file__).resolve().parents[2]
TRAIN_STEPS = 60


def train_and_save(folder: Path) -> None:
    """Train the MLP briefly and save it to ``folder`` as an MLflow model."""
    model, example = train_digits(seed=0, hparams={})
    with torch.no_grad():
        signature = infer_signature(example, model(torch.from_numpy(example)).numpy())
    mlflow.pytorch.save_model(
        model, str(folder), signature=signature, input_example=example,
        pip_requirements=["torch"],
    )  # fmt: skip


def train_digits(
    seed: int, hparams: dict[str, object], steps: int = TRAIN_STEPS
) -> tuple[torch.nn.Module, np.ndarray]:
    """The digits MLP after ``steps`` full-batch Adam steps (``TRAIN_STEPS``: about 2 s; 0: its
    random initial weights), in eval mode, and five input rows for an MLflow signature and input
    example."""
    task = digits_task()
    torch.manual_seed(seed)
    features, labels = task.load_data({}).tensors
    model = task.build_model(hparams)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(features), labels).backward()
        optimizer.step()
    model.eval()
    return model, features[:5].numpy()


def first_row() -> np.ndarray:
    """The request row: the first digit, pixels scaled to [0, 1], shape (1, 64)."""
    features, _ = digits_task().load_data({}).tensors
    return features[:1].numpy()


def load(folder: str) -> torch.nn.Module:
    """The saved model, for one thread on the CPU (as each flywheel replica runs it)."""
    torch.set_num_threads(1)
    return mlflow.pytorch.load_model(folder, map_location="cpu")


def answer(model: torch.nn.Module, name: str, document: dict[str, Any]) -> dict[str, Any]:
    """Run the OIP v2 request ``document`` (one FP32 input) and return the OIP v2 answer."""
    tensor = document["inputs"][0]
    features = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    with torch.inference_mode():
        output = model(torch.from_numpy(features)).numpy()
    return {
        "model_name": name,
        "outputs": [{"name": "output-0", "datatype": "FP32", "shape": list(output.shape),
                     "data": output.reshape(-1).tolist()}],
    }  # fmt: skip


def digits_task() -> ModuleType:
    """``experiments/digits/task.py``, loaded from its file (the experiment is no package)."""
    spec = importlib.util.spec_from_file_location(
        "digits_task", REPO / "experiments" / "digits" / "task.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
