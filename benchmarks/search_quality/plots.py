"""Regret-versus-budget pictures: one PNG per problem family, one panel per problem.

Each line is the median over seeds of the normalized regret of the best trial so far, in the
longest run of each method, with the interquartile range as a band. Coarse-to-fine plans depend
on the budget, so their runs at the smaller budgets are drawn as markers (median, with the IQR as
an error bar) beside the curve of the longest run. The y axis is logarithmic; a regret of 0
(the optimum found, common on the tables) is drawn at :data:`FLOOR`. Matplotlib's object API
draws without a GUI backend.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from benchmarks.search_quality.metrics import Results

COLORS = {
    "coarse-to-fine": "#1f5fa8",
    "tpe": "#e07b10",
    "tpe-mv": "#d62728",
    "tpe-indep": "#ff9896",
    "gp": "#2a9d4b",
    "cmaes": "#9467bd",
    "random": "#7a7a7a",
    "c2f-narrow": "#8c564b",
    "c2f-share": "#bcbd22",
    "c2f-tpe": "#17becf",
    "c2f-gp": "#a8326e",
}
COLUMNS = 3
#: Regrets below this (0 included) are drawn at it.
FLOOR = 1e-4


def write_plots(results: Results, budgets: list[int], folder: Path) -> list[Path]:
    """Draw one figure per problem family into ``folder``; return the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    families: dict[str, list[str]] = {}
    for problem in results.problems:
        families.setdefault(problem.family, []).append(problem.name)
    written = []
    for family, names in families.items():
        path = folder / f"search_quality_{family}.png"
        _family_figure(results, names, budgets).savefig(path, dpi=110)
        written.append(path)
    return written


def _family_figure(results: Results, names: list[str], budgets: list[int]) -> Figure:
    rows = math.ceil(len(names) / COLUMNS)
    columns = min(COLUMNS, len(names))
    figure = Figure(figsize=(4.6 * columns, 3.4 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        _panel(ax, results, name, budgets)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="lower left")
    figure.suptitle(
        f"Normalized regret vs trials\nmedian and IQR over {len(results.seeds)} seeds; "
        f"0 drawn at {FLOOR:g}",
        fontsize=10,
    )
    return figure


def _panel(ax: Axes, results: Results, problem: str, budgets: list[int]) -> None:
    for method in results.methods:
        color = COLORS.get(method)
        curves = results.curves(problem, method)
        curves[~np.isfinite(curves)] = np.nan  # no full-fidelity trial yet
        started = np.isfinite(curves).any(axis=0)
        low, mid, high = np.full((3, curves.shape[1]), np.nan)
        low[started], mid[started], high[started] = np.maximum(
            np.nanpercentile(curves[:, started], [25, 50, 75], axis=0), FLOOR
        )
        trials = np.arange(1, curves.shape[1] + 1)
        once = results.runs_once(problem, method)
        style = "-" if once else "--"
        ax.plot(trials, mid, style, color=color, label=method, linewidth=1.4)
        ax.fill_between(trials, low, high, color=color, alpha=0.15, linewidth=0)
        if not once:
            _budget_markers(ax, results, problem, method, budgets, color)
    ax.set_title(problem, fontsize=10)
    ax.set_xlabel("trials")
    ax.set_ylabel("normalized regret")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)


def _budget_markers(
    ax: Axes, results: Results, problem: str, method: str, budgets: list[int], color: str | None
) -> None:
    """A budget-dependent method's result at each budget: median with the IQR as error bar."""
    for budget in budgets:
        regrets = np.maximum(results.regrets(problem, method, budget), FLOOR)
        low, mid, high = np.percentile(regrets, [25, 50, 75])
        ax.errorbar(
            budget, mid, yerr=[[mid - low], [high - mid]], fmt="o", color=color, markersize=4
        )
