"""Handwritten digits: 8x8 grey images, 10 classes (scikit-learn ships the data; no download).

flywheel calls ``load_data(hparams)`` and ``build_model(hparams)``; ``hparams`` holds the spec's
``hparams`` merged over ``data.params``.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

NUM_PIXELS = 64
NUM_CLASSES = 10


def load_data(hparams: dict[str, object]) -> TensorDataset:
    """All 1,797 images, pixels scaled to [0, 1], with their labels."""
    digits = load_digits()
    features = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    labels = torch.tensor(digits.target, dtype=torch.long)
    return TensorDataset(features, labels)


def build_model(hparams: dict[str, object]) -> nn.Module:
    """A two-hidden-layer MLP; ``hidden`` and ``dropout`` come from hparams."""
    hidden = int(hparams.get("hidden", 128))  # type: ignore[call-overload]
    dropout = float(hparams.get("dropout", 0.0))  # type: ignore[arg-type]
    return nn.Sequential(
        nn.Linear(NUM_PIXELS, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, NUM_CLASSES),
    )
