"""The trivial Tune trial of the orchestration benchmark, alone in a module that imports only
Ray Tune: every trial actor imports it, and its import time is not what is measured."""

from __future__ import annotations

from typing import Any

from ray import tune


def sphere(config: dict[str, Any]) -> float:
    """The trivial objective: x^2 + y^2."""
    return float(config["hparams.x"]) ** 2 + float(config["hparams.y"]) ** 2


def trainable(config: dict[str, Any]) -> None:
    """A Tune function trainable that reports once."""
    tune.report({"value": sphere(config)})
