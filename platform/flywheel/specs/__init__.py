"""Experiment specs: strict pydantic models and YAML loading with file:line errors."""

from flywheel.specs.experiment import (
    ChecksSpec,
    DataSpec,
    ExperimentSpec,
    OptimizerSpec,
    OverfitSpec,
    ScalingSpec,
    StorageSpec,
    TaskSpec,
    TrackingSpec,
    TrainSpec,
)
from flywheel.specs.loading import load_model, load_spec, parse_model

__all__ = [
    "ChecksSpec",
    "DataSpec",
    "ExperimentSpec",
    "OptimizerSpec",
    "OverfitSpec",
    "ScalingSpec",
    "StorageSpec",
    "TaskSpec",
    "TrackingSpec",
    "TrainSpec",
    "load_model",
    "load_spec",
    "parse_model",
]
