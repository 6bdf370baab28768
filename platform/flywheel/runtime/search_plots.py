"""Pictures of a search for MLflow: Optuna's plots per stage and the narrowed box.

Matplotlib runs headless: jobs get ``MPLBACKEND=Agg`` from their plan.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import optuna
from matplotlib.figure import Figure
from optuna.visualization import matplotlib as optuna_plots

from flywheel.narrowing import NarrowingDecision
from flywheel.specs.search import ChoiceParam, IntParam, LogUniformParam, Param
from flywheel.tracking import ExperimentRun

logger = logging.getLogger(__name__)

_PLOTS: dict[str, Callable[[optuna.Study], Any]] = {
    "optimization_history": optuna_plots.plot_optimization_history,
    "parallel_coordinates": optuna_plots.plot_parallel_coordinate,
    "param_importances": optuna_plots.plot_param_importances,
}


def record_stage_plots(parent: ExperimentRun, study: optuna.Study, stage: str) -> None:
    """Log Optuna's plots of a stage; a plot that needs more trials than there are is skipped."""
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(completed) < 2:
        logger.info("stage %s: fewer than 2 completed trials, no plots", stage)
        return
    for name, plot in _PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                axes = plot(study)
        except (ValueError, RuntimeError) as e:  # e.g. importances of a one-parameter space
            logger.info("stage %s: no %s plot: %s", stage, name, e)
            continue
        figure = _figure_of(axes)
        parent.log_figure(figure, f"search/{stage}/{name}.png")
        plt.close(figure)


def narrowed_box_figure(decision: NarrowingDecision) -> Figure:
    """One bar per parameter: the old range (grey) and the narrowed one (blue), each scaled to
    the old range (log parameters in log space); choices show the share of values kept."""
    names = list(decision.old_space)
    figure, axes = plt.subplots(figsize=(7, 0.6 * len(names) + 1.2))
    for row, name in enumerate(names):
        low, high = _relative(decision.old_space[name], decision.new_space[name])
        axes.barh(row, 1.0, left=0.0, color="#dddddd")
        axes.barh(row, high - low, left=low, color="#3b6ea8")
    axes.set_yticks(range(len(names)), names)
    axes.set_xlim(0, 1)
    axes.set_xlabel("position in the previous range (log scale for log parameters)")
    axes.set_title(f"stage {decision.stage}: {decision.reason}", fontsize=9)
    figure.tight_layout()
    return figure


def _relative(old: Param, new: Param) -> tuple[float, float]:
    if isinstance(old, ChoiceParam) and isinstance(new, ChoiceParam):
        return 0.0, len(new.values) / len(old.values)
    assert not isinstance(old, ChoiceParam) and not isinstance(new, ChoiceParam)
    log = isinstance(old, LogUniformParam) or (isinstance(old, IntParam) and old.log)
    scale = math.log if log else float
    span = scale(old.high) - scale(old.low)
    if span <= 0:
        return 0.0, 1.0
    return (scale(new.low) - scale(old.low)) / span, (scale(new.high) - scale(old.low)) / span


def _figure_of(axes: Any) -> Figure:
    """The figure of what Optuna returns: one Axes, or an array of them."""
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    figure: Figure = first.figure
    return figure
