"""The digits-flywheel example: its training data lacks most of two digits, and that shows.

Cost: about 5 s (a logistic regression on digits, one profile, two windows).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from flywheel.drift import detect_drift
from flywheel.profiles import build_profile

TASK = Path(__file__).resolve().parents[2] / "experiments" / "digits-flywheel" / "task.py"


def _load_data() -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.spec_from_file_location("digits_flywheel_task", TASK)
    assert spec is not None and spec.loader is not None
    task = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(task)
    features, labels = task.load_data({"rare_digits": "3,8", "rare_keep_fraction": 0.1}).tensors
    return features.numpy().astype(np.float64), labels.numpy()


def test_the_rare_digits_are_mostly_left_out() -> None:
    _, labels = _load_data()
    counts = np.bincount(labels, minlength=10)

    assert counts[3] < 0.15 * 183 and counts[8] < 0.15 * 174
    assert all(counts[d] > 170 for d in (0, 1, 2, 4, 5, 6, 7, 9))


def test_natural_traffic_drifts_from_the_blind_spot_profile() -> None:
    features, labels = _load_data()
    model = LogisticRegression(max_iter=300).fit(features, labels)
    profile = build_profile(features, model.predict(features), "classes", 10)
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    rng = np.random.default_rng(0)
    natural = x[rng.choice(len(x), 100, replace=False)]
    familiar = x[rng.choice(np.flatnonzero(~np.isin(y, [3, 8])), 100, replace=False)]

    assert detect_drift(profile, natural, model.predict(natural)).drift
    assert not detect_drift(profile, familiar, model.predict(familiar)).drift
