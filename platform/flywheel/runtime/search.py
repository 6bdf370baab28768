"""Coarse-to-fine and Bayesian search: stages of Ray Tune trials whose configurations Optuna draws.

Each stage is one Optuna study in the experiment's journal under the storage root (a file on a
local root, one object per entry on S3: :mod:`flywheel.storage.journal`), so the search state
lives outside the Ray cluster: an interrupted search resumes where it stopped, trials that
finished are not run again, and the samplers see every past trial. (Tuner.restore alone is known
to lose the Optuna searcher's state.) Every stage after the first may narrow the space around the
best trials of the stage before it (:func:`flywheel.narrowing.narrow`); trials that fall inside the
narrowed space warm-start the next study. Every trial is an MLflow run nested under the
experiment's run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import optuna
from optuna.storages import JournalStorage
from optuna.trial import TrialState, create_trial
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from flywheel.errors import FlywheelError
from flywheel.narrowing import NarrowingDecision, TrialResult, narrow, within
from flywheel.plans import JobPlan
from flywheel.progress import ProgressEvent, emit
from flywheel.runtime.optuna_space import space_to_optuna, stage_to_sampler
from flywheel.runtime.search_plots import narrowed_box_figure, record_stage_plots
from flywheel.runtime.trial import TrialTracker, run_trial, trial_resources
from flywheel.specs.base import Scalar
from flywheel.specs.search import AshaScheduler, Param, Stage
from flywheel.storage.arrow import ray_storage
from flywheel.storage.journal import journal_backend
from flywheel.storage_layout import StorageLayout
from flywheel.tracking import TAG_SEARCH_ID, ExperimentRun, end_stale_runs

#: Trial user attribute marking a trial copied in from an earlier stage.
ATTR_WARM_START = "flywheel.warm_start"
#: Trial user attribute marking a trial that was running when its job died.
ATTR_INTERRUPTED = "flywheel.interrupted"
ATTR_SEARCH_ID = "flywheel.search_id"
ATTR_EXPERIMENT = "flywheel.experiment"


@dataclass(frozen=True)
class SearchOutcome:
    """The result of all stages: the best configuration and everything behind it."""

    search_id: str
    best: TrialResult
    trials: tuple[TrialResult, ...]
    decisions: tuple[NarrowingDecision, ...]


def run_search(plan: JobPlan, parent: ExperimentRun) -> SearchOutcome:
    """Run (or resume) every stage of the plan's search; return the best trial."""
    spec = plan.spec
    assert spec.search is not None
    storage = journal_storage(plan)
    search_id = latest_search_id(storage, plan) if plan.resume else plan.job_id
    parent.set_tags({TAG_SEARCH_ID: search_id})
    if plan.resume:
        end_stale_runs(plan.tracking_uri, parent, search_id)
        emit(ProgressEvent("search", f"resuming search {search_id}"))
    space: dict[str, Param] = dict(spec.search.space)
    previous: list[TrialResult] = []
    everything: list[TrialResult] = []
    decisions: list[NarrowingDecision] = []
    for stage in spec.search.resolved_stages(spec.train.epochs):
        if stage.narrow is not None:
            decision = narrow(space, previous, stage.narrow, spec.search.mode, stage.name)
            _record_decision(parent, decision)
            decisions.append(decision)
            space = dict(decision.new_space)
        previous = _run_stage(plan, parent, storage, search_id, stage, space, previous)
        everything.extend(previous)
    best = best_trial(everything, previous, spec.search.mode)
    return SearchOutcome(search_id, best, tuple(everything), tuple(decisions))


def journal_storage(plan: JobPlan) -> JournalStorage:
    """The Optuna journal of this experiment, under the storage root."""
    layout = StorageLayout(plan.storage_root)
    return JournalStorage(journal_backend(layout.search_journal(plan.spec.team, plan.spec.name)))


def latest_search_id(storage: JournalStorage, plan: JobPlan) -> str:
    """The id of the most recent search of this experiment, to resume it."""
    summaries = [
        s
        for s in optuna.get_all_study_summaries(storage)
        if s.user_attrs.get(ATTR_EXPERIMENT) == _experiment_key(plan)
    ]
    if not summaries:
        raise FlywheelError(
            f"no earlier search of {_experiment_key(plan)} to resume under {plan.storage_root}; "
            "submit without --resume to start one"
        )
    latest = max(summaries, key=lambda s: s.datetime_start or datetime.min)
    return str(latest.user_attrs[ATTR_SEARCH_ID])


def best_trial(
    everything: list[TrialResult], last_stage: list[TrialResult], mode: str
) -> TrialResult:
    """The best completed trial of the last stage, else of any stage."""
    for pool in (last_stage, everything):
        done = [t for t in pool if t.value is not None and math.isfinite(t.value)]
        if done:
            pick = min if mode == "min" else max
            return pick(done, key=lambda t: float(t.value))  # type: ignore[arg-type]
    raise FlywheelError("no search trial completed; the logs of the trials say why")


def _run_stage(
    plan: JobPlan,
    parent: ExperimentRun,
    storage: JournalStorage,
    search_id: str,
    stage: Stage,
    space: dict[str, Param],
    previous: list[TrialResult],
) -> list[TrialResult]:
    """Run what is left of one stage; return all of its finished trials."""
    search = plan.spec.search
    assert search is not None
    study = optuna.create_study(
        study_name=f"{search_id}:{stage.name}",
        storage=storage,
        sampler=stage_to_sampler(stage, space),
        direction="minimize" if search.mode == "min" else "maximize",
        load_if_exists=True,
    )
    study.set_user_attr(ATTR_SEARCH_ID, search_id)
    study.set_user_attr(ATTR_EXPERIMENT, _experiment_key(plan))
    _fail_interrupted(study)
    if not study.trials:
        _warm_start(study, space, previous)
    remaining = stage.trials - len(_own_finished(study))
    if remaining > 0:
        emit(
            ProgressEvent(
                "search", f"stage {stage.name}: {remaining} of {stage.trials} trials to run"
            )
        )
        _tune(plan, parent, storage, stage, study.study_name, space, remaining)
    else:
        emit(ProgressEvent("search", f"stage {stage.name}: all {stage.trials} trials already done"))
    study = optuna.load_study(study_name=study.study_name, storage=storage)
    record_stage_plots(parent, study, stage.name)
    return [_to_result(t, stage.name) for t in _own_finished(study)]


def _tune(
    plan: JobPlan,
    parent: ExperimentRun,
    storage: JournalStorage,
    stage: Stage,
    study_name: str,
    space: dict[str, Param],
    num_samples: int,
) -> None:
    """Run ``num_samples`` trials of a stage through a Ray Tune Tuner."""
    search = plan.spec.search
    assert search is not None
    max_epochs = min(stage.fidelity.max_epochs or plan.spec.train.epochs, plan.spec.train.epochs)
    searcher = OptunaSearch(
        space=space_to_optuna(space),
        metric=search.metric,
        mode=search.mode,
        sampler=stage_to_sampler(stage, space),
        study_name=study_name,
        storage=storage,  # the journal: every ask and tell is durable
    )
    tracker = TrialTracker(plan, parent, stage, max_epochs, num_samples)
    layout = StorageLayout(plan.storage_root)
    tune_storage = ray_storage(layout.tune(plan.spec.team, plan.spec.name))
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(
                run_trial, plan_json=plan.model_dump_json(), stage_json=stage.model_dump_json()
            ),
            trial_resources(plan.spec),
        ),
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=stage.max_concurrent),
            scheduler=_scheduler(stage, max_epochs),
            num_samples=num_samples,
            metric=search.metric,
            mode=search.mode,
            # A new actor per trial costs about 2 s, a reused one 0.1 s (docs/benchmarks.md).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"{study_name.replace(':', '-')}-{plan.job_id}",
            storage_path=tune_storage.path,
            storage_filesystem=tune_storage.filesystem,
            callbacks=[tracker],
            verbose=0,
        ),
    )
    tuner.fit()


def _scheduler(stage: Stage, max_epochs: int) -> TrialScheduler:
    if isinstance(stage.scheduler, AshaScheduler):
        return ASHAScheduler(
            time_attr="epoch",
            max_t=max_epochs,
            grace_period=min(stage.scheduler.grace_period, max_epochs),
            reduction_factor=stage.scheduler.reduction_factor,
        )
    return FIFOScheduler()  # type: ignore[no-untyped-call]  # Ray's __init__ is unannotated


def _fail_interrupted(study: optuna.Study) -> None:
    """Trials left running by a job that died are failed, and not counted against the budget."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    if not stale:
        return
    interrupted = set(study.user_attrs.get(ATTR_INTERRUPTED, []))
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
        interrupted.add(trial.number)
    study.set_user_attr(ATTR_INTERRUPTED, sorted(interrupted))


def _warm_start(study: optuna.Study, space: dict[str, Param], previous: list[TrialResult]) -> None:
    """Copy the earlier stage's completed trials that lie inside ``space`` into a new study."""
    distributions = space_to_optuna(space)
    for result in previous:
        if (
            result.value is None
            or not math.isfinite(result.value)
            or not within(space, result.params)
        ):
            continue
        params = {name: result.params[name] for name in distributions}
        study.add_trial(
            create_trial(
                params=params,
                distributions=distributions,
                value=result.value,
                user_attrs={ATTR_WARM_START: True},
            )
        )


def _own_finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The stage's own finished trials: not copied in, not interrupted."""
    interrupted = set(study.user_attrs.get(ATTR_INTERRUPTED, []))
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished()
        and not t.user_attrs.get(ATTR_WARM_START)
        and t.number not in interrupted
    ]


def _to_result(trial: optuna.trial.FrozenTrial, stage: str) -> TrialResult:
    value = trial.value if trial.state == TrialState.COMPLETE else None
    params: dict[str, Scalar] = dict(trial.params)
    return TrialResult(params=params, value=value, stage=stage)


def _record_decision(parent: ExperimentRun, decision: NarrowingDecision) -> None:
    """Log a narrowing decision: JSON, a picture of the box, a line in the job log."""
    parent.log_dict(decision.to_dict(), f"search/{decision.stage}/narrowing.json")
    parent.log_figure(narrowed_box_figure(decision), f"search/{decision.stage}/narrowed_box.png")
    if decision.kept_previous:
        parent.set_tags({f"flywheel.search.{decision.stage}.narrowing": "kept previous space"})
    emit(ProgressEvent("search", f"stage {decision.stage}: {decision.reason}"))


def _experiment_key(plan: JobPlan) -> str:
    return f"{plan.spec.team}/{plan.spec.name}"
