"""One search trial, and the Tune callback that records every trial as a nested MLflow run.

A trial trains in its Tune actor with the same epoch loop as the Ray Train workers
(:mod:`flywheel.runtime.epochs`), one process, and reports every epoch to Tune so that ASHA can
stop it. MLflow is written from the driver, by :class:`TrialTracker`, so that a trial stopped by
the scheduler or killed still has its run ended with the right state.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import ValidationError
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.integration.ray_train import TuneReportCallback

from flywheel.narrowing import apply_overrides
from flywheel.plans import JobPlan
from flywheel.progress import ProgressEvent, emit
from flywheel.runtime.epochs import Placement, fresh_start, train_epochs
from flywheel.runtime.parallel import checkpoint_activations
from flywheel.runtime.task import load_task
from flywheel.runtime.train import fit
from flywheel.specs.experiment import ExperimentSpec
from flywheel.specs.parallel import trial_training
from flywheel.specs.search import Stage
from flywheel.tracking import (
    TAG_FAILURE_REASON,
    TAG_JOB_ID,
    TAG_SEARCH_STAGE,
    TAG_TRIAL_STATE,
    ExperimentRun,
    end_child_run,
    log_epoch_metrics,
    start_child_run,
)


def run_trial(config: dict[str, Any], plan_json: str, stage_json: str) -> None:
    """Tune's trainable: train the spec with the trial's parameters at the stage's fidelity.

    One worker trains here, in the trial's process, unsharded; more train with Ray Train, with the
    spec's strategy (ddp, fsdp, tp, fsdp+tp; :func:`flywheel.runtime.train.fit`), reporting every
    epoch to Tune through Ray Train's TuneReportCallback.
    """
    plan = JobPlan.model_validate_json(plan_json)
    stage = Stage.model_validate_json(stage_json)
    spec = trial_spec(plan.spec, config, stage)
    if spec.train.scaling.num_workers > 1:
        trial_id = tune.get_context().get_trial_id()
        fit(
            plan.model_copy(update={"spec": spec}),
            run_id=None,
            name=f"{plan.job_id}-trial-{trial_id}",
            callbacks=[TuneReportCallback()],  # type: ignore[no-untyped-call]  # Ray's is unannotated
        )
        return
    device = torch.device("cuda" if spec.train.scaling.use_gpu else "cpu")
    task = load_task(None, spec.task.module)
    train_epochs(
        spec,
        task,
        Placement(rank=0, world_size=1, device=device),
        wrap=lambda model: checkpoint_activations(model.to(device), spec.train, task.module),
        restore=fresh_start,
        on_epoch=lambda epoch, metrics, model, optimizer: tune.report({**metrics, "epoch": epoch}),
        feedback=plan.feedback,
    )


def trial_spec(spec: ExperimentSpec, params: dict[str, Any], stage: Stage) -> ExperimentSpec:
    """The spec a trial trains: its parameters, the stage's fidelity, ``trial_workers`` workers,
    and the strategy and mesh that fit them (:func:`flywheel.specs.parallel.trial_training`).

    With several workers every epoch is checkpointed, since Ray Train reports (and so Tune, and
    ASHA, hear) only with checkpoints.
    """
    trial = apply_overrides(spec, params, stage.fidelity).model_dump()
    workers = spec.search.trial_workers if spec.search else 1
    trial["train"]["scaling"]["num_workers"] = workers
    strategy, mesh = trial_training(spec.train.strategy, spec.train.mesh_shape, workers)
    trial["train"]["strategy"], trial["train"]["mesh"] = strategy, mesh
    if workers > 1:
        trial["train"]["checkpoint_every_epochs"] = 1
    try:
        return ExperimentSpec.model_validate(trial)
    except ValidationError as e:
        raise ValueError(f"trial parameters {params} do not fit {workers} workers: {e}") from e


def trial_resources(spec: ExperimentSpec) -> dict[str, float]:
    """What Tune reserves for a trial's own process.

    One worker: that worker's share of the spec's scaling (fractional GPUs too). Several: next to
    nothing (Tune refuses an empty request; one byte of memory), since the trial only drives Ray
    Train, whose workers reserve their own resources.
    """
    if spec.search is not None and spec.search.trial_workers > 1:
        return {"cpu": 0.0, "memory": 1.0}
    scaling = spec.train.scaling
    resources = {k.lower(): v for k, v in scaling.resources_per_worker.items()}
    resources.setdefault("cpu", 1.0)
    if scaling.use_gpu:
        resources.setdefault("gpu", 1.0)
    return resources


class TrialTracker(tune.Callback):
    """Opens, fills and ends one nested MLflow run per trial; prints the stage's progress."""

    def __init__(
        self, plan: JobPlan, parent: ExperimentRun, stage: Stage, max_epochs: int, total: int
    ) -> None:
        self._plan = plan
        self._parent = parent
        self._stage = stage
        self._max_epochs = max_epochs
        self._total = total
        self._runs: dict[str, str] = {}
        self._epochs: dict[str, int] = {}
        self._values: dict[str, float] = {}
        self._ended: dict[str, str] = {}

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        tags = {
            TAG_SEARCH_STAGE: self._stage.name,
            TAG_JOB_ID: self._plan.job_id,
            "flywheel.trial_id": trial.trial_id,
        }
        self._runs[trial.trial_id] = start_child_run(
            self._plan.tracking_uri,
            self._parent,
            f"{self._stage.name}-{trial.trial_id}",
            tags,
            dict(trial.config),
        )

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        run_id = self._runs.get(trial.trial_id)
        epoch = int(result.get("epoch", 0))
        metrics = {
            k: float(v)
            for k, v in result.items()
            if k.startswith(("train_", "val_")) and isinstance(v, int | float)
        }
        if run_id is not None and metrics:
            log_epoch_metrics(self._plan.tracking_uri, run_id, metrics, step=epoch)
        self._epochs[trial.trial_id] = epoch
        metric = self._metric()
        if metric in metrics and math.isfinite(metrics[metric]):
            self._values[trial.trial_id] = metrics[metric]

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        reached = self._epochs.get(trial.trial_id, 0)
        state = "completed" if reached >= self._max_epochs else "pruned"
        self._end(trial, "FINISHED", {TAG_TRIAL_STATE: state})

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        reason = str(getattr(trial, "error_message", "") or "the trial failed")
        self._values.pop(trial.trial_id, None)
        self._end(trial, "FAILED", {TAG_TRIAL_STATE: "failed", TAG_FAILURE_REASON: reason})

    def _end(self, trial: Trial, status: str, tags: dict[str, str]) -> None:
        run_id = self._runs.get(trial.trial_id)
        if run_id is None or trial.trial_id in self._ended:
            return
        end_child_run(self._plan.tracking_uri, run_id, status, tags)  # type: ignore[arg-type]
        self._ended[trial.trial_id] = tags[TAG_TRIAL_STATE]
        self._progress()

    def _progress(self) -> None:
        states = list(self._ended.values())
        done = len(states)
        running = len(self._runs) - done
        best = self._best()
        best_text = f"; best {self._metric()} {best:.4g}" if best is not None else ""
        emit(
            ProgressEvent(
                "search",
                f"stage {self._stage.name}: {done}/{self._total} done, {running} running, "
                f"{states.count('pruned')} pruned, {states.count('failed')} failed{best_text}",
                epoch=done,
                epochs=self._total,
            )
        )

    def _best(self) -> float | None:
        finished = [v for k, v in self._values.items() if k in self._ended]
        if not finished:
            return None
        search = self._plan.spec.search
        return min(finished) if search is None or search.mode == "min" else max(finished)

    def _metric(self) -> str:
        return self._plan.spec.search.metric if self._plan.spec.search else "val_loss"
