"""Drift statistics on scikit-learn's digits: quiet on unshifted traffic, quick on shifted.

Seeded. Cost: about 20 s of CPU (100 + 40 windows of 0.1 s each and a profile).
The rates measured here are the ones docs/user-guide.md states.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from flywheel.drift import DriftThresholds, detect_drift, ks_test, mmd_test, psi
from flywheel.profiles import PROJECTION_DIMS, TrainingProfile, build_profile

WINDOW = DriftThresholds().min_requests  # the smallest window the monitor judges: the hardest


class Digits:
    """Digits split into training rows (profiled) and a pool that served traffic is drawn from."""

    def __init__(self) -> None:
        features, labels = load_digits(return_X_y=True)
        self.x, self.y = features / 16.0, labels
        order = np.random.default_rng(0).permutation(len(self.x))
        self.train, self.pool = order[:1200], order[1200:]
        self.model = LogisticRegression(max_iter=300).fit(self.x[self.train], self.y[self.train])
        train_x = self.x[self.train]
        self.profile = build_profile(train_x, self.model.predict(train_x), "classes", 10)

    def verdict(self, inputs: np.ndarray, seed: int) -> bool:
        return detect_drift(self.profile, inputs, self.model.predict(inputs), seed=seed).drift


@pytest.fixture(scope="module")
def digits() -> Digits:
    return Digits()


def test_at_most_5_of_100_unshifted_windows_alarm(digits: Digits) -> None:
    rng = np.random.default_rng(1)
    alarms = sum(
        digits.verdict(digits.x[rng.choice(digits.pool, WINDOW, replace=False)], seed)
        for seed in range(100)
    )
    assert alarms <= 5  # measured: 2 of 100 at 50 requests


def test_covariate_shift_is_detected_within_50_requests(digits: Digits) -> None:
    """Strokes 20 % fainter: every window of 50 sampled requests alarms."""
    rng = np.random.default_rng(2)
    detected = sum(
        digits.verdict(digits.x[rng.choice(digits.pool, WINDOW, replace=False)] * 0.8, seed)
        for seed in range(20)
    )
    assert detected >= 19


def test_label_shift_is_detected_within_50_requests(digits: Digits) -> None:
    """Three in ten requests show a 0 (one in ten in training): every window alarms."""
    rng = np.random.default_rng(3)
    zeros = digits.pool[digits.y[digits.pool] == 0]
    others = digits.pool[digits.y[digits.pool] != 0]
    detected = 0
    for seed in range(20):
        rows = np.r_[rng.choice(zeros, 15, replace=False), rng.choice(others, 35, replace=False)]
        detected += digits.verdict(digits.x[rows], seed)
    assert detected >= 19


def test_a_window_below_the_minimum_gets_no_verdict(digits: Digits) -> None:
    shifted = digits.x[digits.pool[: WINDOW - 1]] * 0.5
    result = detect_drift(digits.profile, shifted, digits.model.predict(shifted))

    assert not result.drift and not result.enough_requests and result.features == ()


def test_every_pixel_gets_psi_and_ks_scores_and_the_reasons_name_the_tests(digits: Digits) -> None:
    shifted = digits.x[digits.pool[:200]] * 0.5
    result = detect_drift(digits.profile, shifted, digits.model.predict(shifted))

    assert [f.name for f in result.features] == [f"x{i}" for i in range(64)]
    assert result.drift and result.multivariate is not None and result.multivariate.p_value < 0.01
    assert any("MMD" in r for r in result.reasons)
    assert any("feature(s) drifted" in r for r in result.reasons)


def test_wide_inputs_are_profiled_on_the_projection() -> None:
    rng = np.random.default_rng(4)
    images = rng.random((400, 3, 16, 16))
    profile = build_profile(images[:300], rng.integers(0, 3, 300), "classes", 3)

    assert profile.feature_source == "projection"
    assert [f.name for f in profile.features] == [f"p{i}" for i in range(PROJECTION_DIMS)]
    same = detect_drift(profile, images[300:], rng.integers(0, 3, 100))
    brighter = detect_drift(profile, images[300:] + 0.1, rng.integers(0, 3, 100))
    assert not same.drift and brighter.drift


def test_numeric_predictions_are_compared_with_ks() -> None:
    rng = np.random.default_rng(5)
    inputs = rng.random((600, 4))
    profile = build_profile(inputs[:400], inputs[:400].sum(axis=1), "values")
    result = detect_drift(profile, inputs[400:], inputs[400:].sum(axis=1) + 1.0)

    assert result.predictions is not None and result.predictions.p_value < 1e-6 and result.drift


def test_the_profile_survives_json_and_ignores_unknown_fields(digits: Digits) -> None:
    text = digits.profile.model_dump_json()
    newer = text.replace('"rows"', '"written_by": "a newer flywheel", "rows"', 1)

    assert TrainingProfile.model_validate_json(newer) == digits.profile


def test_ks_matches_scipy_on_tied_data() -> None:
    rng = np.random.default_rng(6)
    a, b = rng.integers(0, 5, (300, 3)), rng.integers(0, 6, (80, 3))
    statistic, _ = ks_test(a.astype(float), b.astype(float))
    expected = [stats.ks_2samp(a[:, i], b[:, i]).statistic for i in range(3)]
    np.testing.assert_allclose(statistic, expected)


def test_psi_is_zero_for_equal_shares_and_large_for_moved_mass() -> None:
    expected = np.full(10, 0.1)
    assert psi(expected, np.full(10, 100)) == pytest.approx(0.0, abs=1e-9)
    assert psi(expected, np.r_[np.full(5, 0), np.full(5, 200)]) > 2.0


def test_mmd_p_value_is_small_only_for_different_samples() -> None:
    rng = np.random.default_rng(7)
    reference = rng.normal(size=(300, 8))
    assert mmd_test(reference, rng.normal(size=(60, 8))).p_value > 0.05
    assert mmd_test(reference, rng.normal(0.5, 1.0, size=(60, 8))).p_value < 0.01
