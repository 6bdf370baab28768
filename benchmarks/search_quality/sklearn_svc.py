"""A real model-tuning task: an SVM on scikit-learn's breast-cancer data, by cross-validation.

The data set ships inside scikit-learn (569 tumours, 30 features), so nothing is downloaded. The
objective is the misclassification rate of ``sklearn.svm.SVC`` averaged over a fixed stratified
3-fold split of the standardized features: deterministic, so its optimum and its median are those
of the function, taken from the runs (the best value any run found, and random search's median).
The space mixes scales and kinds, as tuning a model does: ``C`` and ``gamma`` on log scales, the
kernel as a choice, and the polynomial degree as a whole number (used by the ``poly`` kernel only).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from flywheel.specs.base import Scalar
from flywheel.specs.search import ChoiceParam, IntParam, LogUniformParam, Param

NAME = "sklearn-svc-breast-cancer"
FOLDS = 3
#: Solver iterations per fit: bounds the time of the worst configurations (huge C, poly), which
#: stop early with a worse score; a property of the task, the same for every method.
MAX_ITER = 3_000


def space() -> dict[str, Param]:
    """C and gamma on log scales, the kernel, and the polynomial degree."""
    return {
        "hparams.C": LogUniformParam(type="loguniform", low=1e-3, high=1e3),
        "hparams.gamma": LogUniformParam(type="loguniform", low=1e-5, high=1e1),
        "hparams.kernel": ChoiceParam(type="choice", values=["rbf", "poly", "sigmoid"]),
        "hparams.degree": IntParam(type="int", low=2, high=5),
    }


class SvcObjective:
    """Cross-validated error of an SVC with a trial's parameters; the data loads on first use."""

    def __init__(self) -> None:
        self._data: tuple[NDArray[np.float64], NDArray[np.int64]] | None = None

    def __call__(self, params: Mapping[str, Scalar], epochs: int) -> float:
        features, labels = self._load()
        model = SVC(
            C=float(params["hparams.C"]),
            gamma=float(params["hparams.gamma"]),
            kernel=str(params["hparams.kernel"]),
            degree=int(params["hparams.degree"]),
            max_iter=MAX_ITER,
        )
        folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=0)
        with warnings.catch_warnings():  # MAX_ITER reached: the score says it
            warnings.simplefilter("ignore")
            accuracy = cross_val_score(model, features, labels, cv=folds, scoring="accuracy")
        return 1.0 - float(np.mean(accuracy))

    def _load(self) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        if self._data is None:
            features, labels = load_breast_cancer(return_X_y=True)
            self._data = (StandardScaler().fit_transform(features), labels)
        return self._data
