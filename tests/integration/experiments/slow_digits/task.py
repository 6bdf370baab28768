"""Digits with a model that sleeps in its forward pass, so a test can act mid-training."""

import time

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset


class SlowMLP(nn.Module):
    def __init__(self, sleep_s: float) -> None:
        super().__init__()
        self.sleep_s = sleep_s
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            time.sleep(self.sleep_s)
        return self.net(x)


def load_data(hparams):
    digits = load_digits()
    return TensorDataset(
        torch.tensor(digits.data / 16.0, dtype=torch.float32), torch.tensor(digits.target)
    )


def build_model(hparams):
    return SlowMLP(float(hparams.get("sleep_s", 0.0)))
