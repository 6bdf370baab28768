"""The benchmark's Markdown: regret per budget, speedup and narrowing, ranks, orchestration."""

from __future__ import annotations

import math
import statistics

from benchmarks.search_quality.methods import VARIANTS
from benchmarks.search_quality.metrics import Results
from benchmarks.search_quality.orchestration import OrchestrationCost


def render(results: Results, budgets: list[int], orchestration: OrchestrationCost | None) -> str:
    """Every table, in reading order, separated by blank lines."""
    parts = [_summary_table(results, budgets)]
    parts += [_regret_table(results, budget) for budget in budgets]
    parts.append(_speedup_table(results, budgets))
    if any(not p.uses_fidelity for p in results.problems):
        parts.append(_incumbent_table(results, budgets))
    parts += [_epochs_table(results, p.name, budgets) for p in results.problems if p.uses_fidelity]
    if orchestration is not None:
        parts.append(orchestration_table(orchestration))
    return "\n\n".join(parts)


def orchestration_table(cost: OrchestrationCost) -> str:
    """Wall time per trial of the same trivial trials through Tune and through plain Optuna."""
    optuna_ms = cost.optuna_per_trial_s * 1e3
    rows = [
        ("plain Optuna loop (ask/tell)", cost.optuna_s, optuna_ms),
        (
            "Ray Tune + OptunaSearch as flywheel runs it (`reuse_actors=True`)",
            cost.tune_s,
            cost.tune_per_trial_s * 1e3,
        ),
        (
            "the same with a new actor per trial (Tune's default)",
            cost.tune_fresh_s,
            cost.tune_fresh_per_trial_s * 1e3,
        ),
    ]
    lines = [
        f"Orchestration cost: {cost.trials} trivial trials, one at a time "
        f"(`ray.init(num_cpus=2)` took {cost.ray_init_s:.1f} s; it and a warm-up trial are "
        "not counted)",
        "",
        "| | wall time (s) | per trial (ms) | per trial / plain Optuna |",
        "|---|---|---|---|",
    ]
    for name, total_s, per_trial_ms in rows:
        lines.append(
            f"| {name} | {total_s:.2f} | {per_trial_ms:,.1f} | {per_trial_ms / optuna_ms:,.0f}x |"
        )
    return "\n".join(lines)


def _summary_table(results: Results, budgets: list[int]) -> str:
    """Per budget and method: mean rank over problems, problems won, median normalized regret."""
    lines = [
        f"Summary over {len(results.problems)} problems, {len(results.seeds)} seeds: rank of "
        "each method's median normalized regret on each problem (1 = best, ties share)",
        "",
        "| budget | method | mean rank | problems best (ties shared) | median regret (median "
        "over problems) | narrowing lost optimum (runs) |",
        "|---|---|---|---|---|---|",
    ]
    for budget in budgets:
        ranks, wins = results.ranks(budget), results.wins(budget)
        by_problem = results.median_regrets(budget).values()
        for method in results.methods:
            median = statistics.median(row[method] for row in by_problem)
            rank = statistics.mean(ranks[method])
            lines.append(
                f"| {budget} | {method} | {rank:.2f} | {wins[method]:.1f} | {_number(median)} "
                f"| {_loss_rate(results, method, budget)} |"
            )
    return "\n".join(lines)


def _loss_rate(results: Results, method: str, budget: int) -> str:
    """The share of runs, over the problems with known minimizers, whose narrowed space held none
    of them; '-' for a method that does not narrow."""
    if not results.narrows(method):
        return "-"
    counts = [results.narrowing_failures(p.name, method, budget) for p in results.problems]
    failed, known = sum(f for f, _ in counts), sum(k for _, k in counts)
    return f"{failed} of {known} ({100 * failed / known:.0f}%)" if known else "n/a"


def _regret_table(results: Results, budget: int) -> str:
    """Median normalized regret over seeds, per problem and method; the lowest in bold."""
    methods = results.methods
    lines = [
        f"Median normalized regret at {budget} trials ({len(results.seeds)} seeds; lower is "
        "better, 0 = global optimum, 1 = median random configuration)",
        "",
        "| problem | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for problem, row in results.median_regrets(budget).items():
        best = min(row.values())
        cells = [f"**{_number(row[m])}**" if row[m] == best else _number(row[m]) for m in methods]
        lines.append(f"| {problem} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _speedup_table(results: Results, budgets: list[int]) -> str:
    """Speedup to random search's final best, and how often narrowing lost the optimum."""
    methods = [m for m in results.methods if m != "random"]
    narrowed = [m for m in results.methods if results.narrows(m)]
    head = [f"speedup {m}" for m in methods]
    at = ", ".join(f"@{b}" for b in budgets)
    head += [f"narrowing lost optimum, {m} ({at})" for m in narrowed]
    lines = [
        f"Speedup to target: random search's median regret at {results.max_budget} trials is "
        "the target; speedup = the trials random search's median curve needs to reach it / "
        "the trials the method's median curve needs ('< x': not reached within the budget). "
        "Narrowing failures: runs whose narrowed space held no global minimizer.",
        "",
        "| problem | " + " | ".join(head) + " |",
        "|---|" + "---|" * len(head),
    ]
    for problem in results.problems:
        cells = []
        for method in methods:
            cells.append(str(results.speedup(problem.name, method)))
        for method in narrowed:
            counts = [results.narrowing_failures(problem.name, method, b) for b in budgets]
            known = max(k for _, k in counts)
            failed = ", ".join(str(f) for f, _ in counts)
            cells.append(f"{failed} of {known}" if known else "n/a")
        lines.append(f"| {problem.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _incumbent_table(results: Results, budgets: list[int]) -> str:
    """How often a multi-stage method's best trial came from its first stage."""
    staged = [m for m in results.methods if m in VARIANTS]
    lines = [
        "Runs whose best coarse trial beat every fine trial (problems without fidelity; "
        "flywheel's runtime returns the best trial of the last stage)",
        "",
        "| method | " + " | ".join(f"{b} trials" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for method in staged:
        counts = [results.coarse_beat_fine(method, budget) for budget in budgets]
        lines.append(f"| {method} | " + " | ".join(f"{k} of {n}" for k, n in counts) + " |")
    return "\n".join(lines)


def _epochs_table(results: Results, problem: str, budgets: list[int]) -> str:
    """Training epochs each method spent on a problem with fidelity (its compute)."""
    lines = [
        f"Training epochs spent on {problem} (median over seeds)",
        "",
        "| method | " + " | ".join(f"{b} trials" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for method in results.methods:
        epochs = [f"{results.epochs(problem, method, b):.0f}" for b in budgets]
        lines.append(f"| {method} | " + " | ".join(epochs) + " |")
    return "\n".join(lines)


def _number(value: float) -> str:
    """A regret in a few characters: 0, 3 significant digits, or scientific when tiny."""
    if math.isinf(value):
        return "inf"
    if value == 0:
        return "0"
    if value < 1e-3:
        return f"{value:.1e}"
    return f"{value:.3g}"
