"""A deliberately broken task: every read of a sample returns a random label."""

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import Dataset


class ShuffledLabelDigits(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    def __init__(self) -> None:
        digits = load_digits()
        self.features = torch.tensor(digits.data / 16.0, dtype=torch.float32)
        self.labels = torch.tensor(digits.target, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[i], torch.randint(0, 10, ())


def load_data(hparams):
    return ShuffledLabelDigits()


def build_model(hparams):
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
