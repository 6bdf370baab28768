"""Drift statistics: a window of served inputs and predictions against a training profile.

Pure: numpy and scipy, no I/O. Four tests, each of which can raise the verdict:

* per feature, the two-sample Kolmogorov-Smirnov test against the profile's reference rows, with
  a Bonferroni correction over the features (one family-wise level ``p_value``);
* per feature, the population stability index (PSI) over the profile's decile bins, against
  ``psi``; the window's bin shares are smoothed by half a count, so that an empty bin in a small
  window does not read as infinite drift. PSI is noisy on small windows (on unshifted digits
  traffic the largest of 64 features reaches 0.6 at 50 requests, 0.35 at 100), hence a default
  of 0.75 rather than the 0.25 quoted for large samples;
* on the fixed random projection, the maximum mean discrepancy (MMD, Gaussian kernel, median
  distance bandwidth) with a seeded permutation test at level ``p_value``;
* on the predictions, a chi-square goodness-of-fit test of the predicted classes against the
  training shares (a KS test for numeric predictions), at level ``p_value``.

The defaults keep the verdict quiet on unshifted traffic: docs/user-guide.md states the measured
false-alarm rate and the number of requests after which covariate and label shift are detected;
tests/unit/test_drift.py measures both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from flywheel.profiles import TrainingProfile, bin_fractions, profiled_features, project

#: Permutations of the MMD test: its smallest p-value is 1 / (PERMUTATIONS + 1).
PERMUTATIONS = 200
MMD_REFERENCE_ROWS = 300
_MIN_FRACTION = 1e-4


@dataclass(frozen=True)
class DriftThresholds:
    """When a window counts as drifted (the serve section's ``monitor`` fields)."""

    p_value: float = 0.01
    psi: float = 0.75
    min_requests: int = 50


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's scores for a window."""

    name: str
    psi: float
    ks_statistic: float
    ks_p_value: float
    drifted: bool


@dataclass(frozen=True)
class TestResult:
    """A two-sample test's statistic and p-value."""

    statistic: float
    p_value: float


@dataclass(frozen=True)
class DriftResult:
    """The verdict for a window, with every score behind it."""

    drift: bool
    requests: int
    enough_requests: bool
    reasons: tuple[str, ...]
    features: tuple[FeatureDrift, ...]
    multivariate: TestResult | None
    predictions: TestResult | None


def detect_drift(
    profile: TrainingProfile,
    inputs: np.ndarray,
    predictions: np.ndarray,
    thresholds: DriftThresholds = DriftThresholds(),
    seed: int = 0,
) -> DriftResult:
    """Compare ``inputs`` (N, ...) and ``predictions`` (N,) with ``profile``; N may be 0."""
    n = len(inputs)
    if n < max(2, thresholds.min_requests):
        return DriftResult(False, n, False, (), (), None, None)
    window = profiled_features(profile, inputs)
    features = _feature_scores(profile, window, thresholds)
    reference_projected = np.asarray(profile.reference_projected)
    multivariate = mmd_test(reference_projected, project(profile.projection, _flat(inputs)), seed)
    prediction = prediction_test(profile, predictions)
    reasons = _reasons(features, multivariate, prediction, thresholds)
    return DriftResult(bool(reasons), n, True, reasons, features, multivariate, prediction)


def psi(expected: np.ndarray, actual_counts: np.ndarray) -> float:
    """Population stability index of bin ``actual_counts`` against ``expected`` shares."""
    total = actual_counts.sum()
    actual = (actual_counts + 0.5) / (total + 0.5 * len(actual_counts))
    floor = np.maximum(expected, _MIN_FRACTION)
    floor = floor / floor.sum()
    return float(np.sum((actual - floor) * np.log(actual / floor)))


def mmd_test(reference: np.ndarray, window: np.ndarray, seed: int = 0) -> TestResult:
    """MMD² (biased) of two samples with a seeded permutation p-value.

    At most :data:`MMD_REFERENCE_ROWS` reference rows take part: the cost grows with the square
    of the pooled sample.
    """
    reference = reference[:MMD_REFERENCE_ROWS]
    pooled = np.vstack([reference, window]).astype(np.float32)
    norms = np.sum(pooled**2, axis=1)
    squared = np.maximum(norms[:, None] + norms[None, :] - 2.0 * pooled @ pooled.T, 0.0)
    bandwidth = float(np.median(squared)) or 1.0  # the median heuristic
    kernel = np.exp(-squared / bandwidth)
    n_ref, n_win = len(reference), len(window)
    rng = np.random.default_rng(seed)
    orders = np.vstack([np.arange(len(pooled)), rng.random((PERMUTATIONS, len(pooled))).argsort(1)])
    in_window = orders >= n_ref  # row p: which positions permutation p puts in the "window"
    weights = np.where(in_window, 1.0 / n_win, -1.0 / n_ref).astype(np.float32).T
    statistics = np.einsum("ip,ip->p", weights, kernel @ weights)
    exceed = int(np.sum(statistics[1:] >= statistics[0]))
    return TestResult(float(statistics[0]), (1 + exceed) / (1 + PERMUTATIONS))


def ks_test(reference: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sample KS statistic and asymptotic p-value of every column, at once.

    Ties are handled (the distance is taken only after the last of equal values), and the
    asymptotic p-value (Kolmogorov's distribution) is slightly conservative on small samples.
    """
    n_ref, n_win = len(reference), len(window)
    pooled = np.vstack([reference, window])
    order = np.argsort(pooled, axis=0, kind="stable")
    values = np.take_along_axis(pooled, order, axis=0)
    distance = np.cumsum(np.where(order < n_ref, 1.0 / n_ref, -1.0 / n_win), axis=0)
    last_of_ties = np.vstack([values[1:] != values[:-1], np.ones((1, values.shape[1]), bool)])
    statistic = np.max(np.abs(distance) * last_of_ties, axis=0)
    p_value = stats.kstwobign.sf(statistic * np.sqrt(n_ref * n_win / (n_ref + n_win)))
    return statistic, np.asarray(p_value)


def prediction_test(profile: TrainingProfile, predictions: np.ndarray) -> TestResult | None:
    """Predicted classes against the training shares (chi-square), or values (KS)."""
    shares = profile.predictions
    if shares.kind == "classes" and shares.class_fractions:
        expected_share = np.maximum(np.asarray(shares.class_fractions), 1e-3)
        counts = np.bincount(predictions.astype(np.int64), minlength=len(expected_share))
        if len(counts) > len(expected_share):  # a class the model never predicted in training
            expected_share = np.append(expected_share, [1e-3] * (len(counts) - len(expected_share)))
        expected = expected_share / expected_share.sum() * counts.sum()
        result = stats.chisquare(counts, expected)
        return TestResult(float(result.statistic), float(result.pvalue))
    if shares.reference:
        ks = stats.ks_2samp(np.asarray(shares.reference), predictions.astype(np.float64))
        return TestResult(float(ks.statistic), float(ks.pvalue))
    return None


def _feature_scores(
    profile: TrainingProfile, window: np.ndarray, thresholds: DriftThresholds
) -> tuple[FeatureDrift, ...]:
    ks_statistic, ks_p_value = ks_test(np.asarray(profile.reference), window)
    level = thresholds.p_value / max(1, len(profile.features))
    scores = []
    for i, feature in enumerate(profile.features):
        edges = np.asarray(feature.bin_edges)
        counts = bin_fractions(window[:, i], edges) * len(window)
        score = psi(np.asarray(feature.bin_fractions), counts)
        p_value = float(ks_p_value[i])
        drifted = score > thresholds.psi or p_value < level
        scores.append(FeatureDrift(feature.name, score, float(ks_statistic[i]), p_value, drifted))
    return tuple(scores)


def _reasons(
    features: tuple[FeatureDrift, ...],
    multivariate: TestResult,
    prediction: TestResult | None,
    thresholds: DriftThresholds,
) -> tuple[str, ...]:
    reasons = []
    drifted = [f.name for f in features if f.drifted]
    if drifted:
        reasons.append(f"{len(drifted)} feature(s) drifted: {', '.join(drifted[:5])}")
    if multivariate.p_value < thresholds.p_value:
        reasons.append(f"inputs differ as a whole (MMD p = {multivariate.p_value:.3g})")
    if prediction is not None and prediction.p_value < thresholds.p_value:
        reasons.append(f"predictions differ (p = {prediction.p_value:.3g})")
    return tuple(reasons)


def _flat(inputs: np.ndarray) -> np.ndarray:
    return inputs.reshape(len(inputs), -1).astype(np.float64)
