"""Digits with a blind spot: most examples of two digits are left out of the training data.

The model that trains on this data has seen few 3s and 8s. Served traffic has them at their
natural rate, so the monitor sees the shift, and the feedback on those requests is what a
retraining adds back. ``hparams`` (merged over ``data.params``):

- ``rare_digits``: the digits mostly left out, comma-separated (default ``"3,8"``);
- ``rare_keep_fraction``: the share of their examples kept (default 0.1), a seeded choice.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

NUM_PIXELS = 64
NUM_CLASSES = 10
_SEED = 0


def load_data(hparams: dict[str, object]) -> TensorDataset:
    """Digits scaled to [0, 1], with most examples of the rare digits dropped."""
    digits = load_digits()
    rare = [int(d) for d in str(hparams.get("rare_digits", "3,8")).split(",") if d.strip()]
    keep_fraction = float(hparams.get("rare_keep_fraction", 0.1))  # type: ignore[arg-type]
    rng = np.random.default_rng(_SEED)
    is_rare = np.isin(digits.target, rare)
    kept = ~is_rare | (rng.random(len(digits.target)) < keep_fraction)
    features = torch.tensor(digits.data[kept] / 16.0, dtype=torch.float32)
    labels = torch.tensor(digits.target[kept], dtype=torch.long)
    return TensorDataset(features, labels)


def build_model(hparams: dict[str, object]) -> nn.Module:
    """A two-hidden-layer MLP; ``hidden`` comes from hparams."""
    hidden = int(hparams.get("hidden", 64))  # type: ignore[call-overload]
    return nn.Sequential(
        nn.Linear(NUM_PIXELS, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, NUM_CLASSES),
    )
