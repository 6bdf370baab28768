"""The cost of running trials through Ray Tune, as flywheel does, against a plain Optuna loop.

Both sides run the same trivial objective (a 2-D sphere, no training) with the same seeded TPE
sampler for the same number of trials. The Tune side is flywheel's search path without MLflow and
the journal: a ``Tuner`` over a function trainable that calls ``tune.report`` once, searched by
``OptunaSearch`` behind ``ConcurrencyLimiter(max_concurrent=1)``, on a local
``ray.init(num_cpus=2)``, with ``reuse_actors=True`` as flywheel's ``_tune`` sets it.
``ray.init`` and one untimed warm-up trial are not counted: a search pays them once per job.
The Tune side also runs with a new actor per trial (Tune's default, and flywheel's before it
set ``reuse_actors``), to show what reusing actors saves.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from dataclasses import dataclass

import optuna
import ray
from optuna.samplers import TPESampler
from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from benchmarks.search_quality.trivial_trial import sphere, trainable
from flywheel.runtime.optuna_space import space_to_optuna
from flywheel.specs.search import Param, UniformParam

SPACE: dict[str, Param] = {
    "hparams.x": UniformParam(type="uniform", low=-5.0, high=5.0),
    "hparams.y": UniformParam(type="uniform", low=-5.0, high=5.0),
}


@dataclass(frozen=True)
class OrchestrationCost:
    """Wall times of the same trials through Ray Tune and through a plain Optuna loop."""

    trials: int
    ray_init_s: float
    tune_s: float
    """Tune as flywheel runs it (``reuse_actors=True``)."""
    tune_fresh_s: float
    """Tune with a new actor per trial."""
    optuna_s: float

    @property
    def tune_per_trial_s(self) -> float:
        return self.tune_s / self.trials

    @property
    def optuna_per_trial_s(self) -> float:
        return self.optuna_s / self.trials

    @property
    def tune_fresh_per_trial_s(self) -> float:
        return self.tune_fresh_s / self.trials


def measure(trials: int) -> OrchestrationCost:
    """Time ``trials`` trivial trials both ways (starts and stops a local Ray instance)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna_s = _time_optuna(trials)
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_init_s = time.perf_counter() - started
    try:
        _time_tune(1, reuse_actors=True)  # warm-up: the first Tuner pays one-time set-up
        tune_s = _time_tune(trials, reuse_actors=True)
        tune_fresh_s = _time_tune(trials, reuse_actors=False)
    finally:
        ray.shutdown()
    return OrchestrationCost(trials, ray_init_s, tune_s, tune_fresh_s, optuna_s)


def _time_tune(trials: int, *, reuse_actors: bool) -> float:
    searcher = OptunaSearch(
        space=space_to_optuna(SPACE),
        metric="value",
        mode="min",
        sampler=TPESampler(seed=0, multivariate=True),
    )
    with tempfile.TemporaryDirectory(prefix="fw-bench-tune-") as storage:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=1),
                num_samples=trials,
                metric="value",
                mode="min",
                reuse_actors=reuse_actors,
            ),
            run_config=tune.RunConfig(name="orchestration", storage_path=storage, verbose=0),
        )
        started = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # Tune prints its tables; keep stdout Markdown
            tuner.fit()
        return time.perf_counter() - started


def _time_optuna(trials: int) -> float:
    study = optuna.create_study(sampler=TPESampler(seed=0, multivariate=True))
    distributions = space_to_optuna(SPACE)
    started = time.perf_counter()
    for _ in range(trials):
        trial = study.ask(distributions)
        study.tell(trial, sphere(trial.params))
    return time.perf_counter() - started
