"""Training profiles: what a model's training inputs and predictions looked like, in brief.

Pure: numpy only. The job builds a profile from the training split and logs it next to the
registered model version (:mod:`flywheel.runtime.profile`); the monitor compares windows of
served requests with it (:mod:`flywheel.drift`).

A profile holds, for each profiled feature, quantiles, a histogram over bins cut at the training
deciles, mean and standard deviation; the distribution of the model's predictions; and a seeded
sample of :data:`REFERENCE_ROWS` training rows, which the two-sample tests compare with.

Wide inputs. Examples with at most :data:`MAX_RAW_FEATURES` values (digits: 64 pixels) are
profiled value by value. Every input is also summarised by a fixed random projection onto
:data:`PROJECTION_DIMS` dimensions: the centred, flattened example times a Gaussian matrix
(entries N(0, 1/dims)) drawn from ``numpy.random.default_rng(PROJECTION_SEED)``. Wider examples
(images) are profiled on the projection's components ``p0..p7`` instead of their raw values.
The matrix is not stored: it is drawn again from the seed, and a checksum of it in the profile
guards against a numpy that draws differently.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from flywheel.specs.base import LenientModel

#: Examples with more values than this are profiled on their projection only.
MAX_RAW_FEATURES = 64
PROJECTION_DIMS = 8
PROJECTION_SEED = 20_261_130
#: Training rows kept in the profile for the two-sample tests.
REFERENCE_ROWS = 500
QUANTILE_LEVELS = tuple(i / 20 for i in range(21))
#: Histogram bins are cut at the training deciles (ties merged, so discrete features get fewer).
DECILES = tuple(i / 10 for i in range(1, 10))
PROFILE_FILE = "profile/training_profile.json"


class FeatureProfile(LenientModel):
    """One feature over the training inputs."""

    name: str = Field(description="`x<i>` for a raw value, `p<i>` for a projection component.")
    mean: float = Field(description="Mean over the training rows.")
    std: float = Field(description="Standard deviation over the training rows.")
    quantiles: list[float] = Field(description="Values at QUANTILE_LEVELS (0, 5, ..., 100 %).")
    bin_edges: list[float] = Field(description="Inner edges of the histogram bins.")
    bin_fractions: list[float] = Field(description="Share of training rows in each bin.")


class PredictionProfile(LenientModel):
    """The model's predictions over the training inputs."""

    kind: Literal["classes", "values"] = Field(description="Class indices or numbers.")
    class_fractions: list[float] = Field(
        default_factory=list, description="Share of each predicted class (classes only)."
    )
    summary: FeatureProfile | None = Field(
        default=None, description="Quantiles and histogram of predicted values (values only)."
    )
    reference: list[float] = Field(
        default_factory=list, description="Predictions on the reference rows."
    )


class ProjectionInfo(LenientModel):
    """How examples are projected onto PROJECTION_DIMS dimensions."""

    seed: int = Field(description="Seed of the Gaussian matrix.")
    dims: int = Field(description="Number of components.")
    input_size: int = Field(description="Values per flattened example.")
    center: list[float] = Field(description="Per-value training mean subtracted first.")
    checksum: float = Field(description="Sum of the matrix's first row, to detect a change.")


class TrainingProfile(LenientModel):
    """The profile of one model version's training data."""

    version: int = Field(default=1, description="Format version.")
    rows: int = Field(description="Training rows profiled.")
    input_shape: list[int] = Field(description="Shape of one example.")
    feature_source: Literal["input", "projection"] = Field(
        description="Whether `features` are raw values or projection components."
    )
    features: list[FeatureProfile] = Field(description="One profile per profiled feature.")
    projection: ProjectionInfo = Field(description="The fixed random projection.")
    reference: list[list[float]] = Field(description="Sampled rows of the profiled features.")
    reference_projected: list[list[float]] = Field(description="The same rows, projected.")
    predictions: PredictionProfile = Field(description="The prediction distribution.")


def build_profile(
    features: np.ndarray, predictions: np.ndarray, kind: Literal["classes", "values"],
    num_classes: int = 0, seed: int = 0,
) -> TrainingProfile:  # fmt: skip
    """Profile training ``features`` (N, ...) and the model's ``predictions`` (N,) on them."""
    flat = features.reshape(len(features), -1).astype(np.float64)
    projection = projection_info(flat)
    projected = project(projection, flat)
    source: Literal["input", "projection"] = (
        "input" if flat.shape[1] <= MAX_RAW_FEATURES else "projection"
    )
    profiled = flat if source == "input" else projected
    prefix = "x" if source == "input" else "p"
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(flat), size=min(REFERENCE_ROWS, len(flat)), replace=False))
    return TrainingProfile(
        rows=len(flat),
        input_shape=list(features.shape[1:]),
        feature_source=source,
        features=[
            feature_profile(f"{prefix}{i}", profiled[:, i]) for i in range(profiled.shape[1])
        ],
        projection=projection,
        reference=_rounded(profiled[rows]),
        reference_projected=_rounded(projected[rows]),
        predictions=_prediction_profile(predictions, kind, num_classes, rows),
    )


def feature_profile(name: str, values: np.ndarray) -> FeatureProfile:
    """Quantiles, decile histogram, mean and standard deviation of one feature."""
    edges = np.unique(np.quantile(values, DECILES))
    return FeatureProfile(
        name=name,
        mean=float(values.mean()),
        std=float(values.std()),
        quantiles=[float(q) for q in np.quantile(values, QUANTILE_LEVELS)],
        bin_edges=[float(e) for e in edges],
        bin_fractions=[float(f) for f in bin_fractions(values, edges)],
    )


def bin_fractions(values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each bin; bin i holds edges[i-1] < v <= edges[i] (ends open)."""
    counts = np.bincount(np.searchsorted(inner_edges, values, side="left"),
                         minlength=len(inner_edges) + 1)  # fmt: skip
    return counts / max(1, len(values))


def profiled_features(profile: TrainingProfile, inputs: np.ndarray) -> np.ndarray:
    """Served ``inputs`` as the profile's features: raw values or projection components."""
    flat = inputs.reshape(len(inputs), -1).astype(np.float64)
    if profile.feature_source == "input":
        return flat
    return project(profile.projection, flat)


def projection_info(flat: np.ndarray) -> ProjectionInfo:
    """The projection for training rows ``flat`` (N, values)."""
    matrix = projection_matrix(PROJECTION_SEED, flat.shape[1], PROJECTION_DIMS)
    return ProjectionInfo(
        seed=PROJECTION_SEED,
        dims=PROJECTION_DIMS,
        input_size=flat.shape[1],
        center=[float(c) for c in flat.mean(axis=0)],
        checksum=float(matrix[0].sum()),
    )


def project(info: ProjectionInfo, flat: np.ndarray) -> np.ndarray:
    """Rows ``flat`` (N, values) projected onto the profile's components (N, dims)."""
    if flat.shape[1] != info.input_size:
        raise ValueError(
            f"examples have {flat.shape[1]} values; the profile was built on {info.input_size}"
        )
    matrix = projection_matrix(info.seed, info.input_size, info.dims)
    if not np.isclose(matrix[0].sum(), info.checksum):
        raise ValueError("this numpy draws another projection matrix than the profile's")
    projected: np.ndarray = (flat - np.asarray(info.center)) @ matrix
    return projected


def projection_matrix(seed: int, input_size: int, dims: int) -> np.ndarray:
    """The Gaussian projection matrix (input_size, dims), entries N(0, 1/dims)."""
    rng = np.random.default_rng(seed)
    matrix: np.ndarray = rng.standard_normal((input_size, dims)) / np.sqrt(dims)
    return matrix


def _prediction_profile(
    predictions: np.ndarray, kind: Literal["classes", "values"], num_classes: int,
    rows: np.ndarray,
) -> PredictionProfile:  # fmt: skip
    reference = [float(p) for p in predictions[rows]]
    if kind == "classes":
        counts = np.bincount(predictions.astype(np.int64), minlength=num_classes)
        fractions = [float(c) for c in counts / max(1, len(predictions))]
        return PredictionProfile(kind=kind, class_fractions=fractions, reference=reference)
    summary = feature_profile("prediction", predictions.astype(np.float64))
    return PredictionProfile(kind=kind, summary=summary, reference=reference)


def _rounded(rows: np.ndarray) -> list[list[float]]:
    """Rows as lists, at 6 significant digits: enough for the tests, half the JSON."""
    return [[float(f"{v:.6g}") for v in row] for row in rows]
