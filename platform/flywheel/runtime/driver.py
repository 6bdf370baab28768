"""The job driver: checks, distributed training, tracking and registration of one experiment.

Runs as the Ray job's entrypoint. The MLflow run it opens always ends: FINISHED on success,
FAILED (with the reason) on any error, KILLED when the job is stopped.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform as stdlib_platform
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

from flywheel.backends.documents import document_store
from flywheel.backends.serving import ServeRestBackend
from flywheel.errors import FlywheelError
from flywheel.narrowing import apply_overrides
from flywheel.plans import PLAN_PATH, FeedbackSet, JobPlan
from flywheel.progress import ProgressEvent, emit
from flywheel.runtime import checks
from flywheel.runtime import data as data_mod
from flywheel.runtime.profile import log_training_profile
from flywheel.runtime.search import run_search
from flywheel.runtime.snapshot import record_snapshot
from flywheel.runtime.task import LoadedTask, load_task
from flywheel.runtime.train import fit, load_checkpoint_state
from flywheel.serving_service import ServingService
from flywheel.specs.base import Scalar
from flywheel.specs.search import Fidelity
from flywheel.tracking import (
    TAG_FEEDBACK_SET,
    TAG_JOB_ID,
    TAG_RETRAIN_OF,
    TAG_SERVE_SPEC,
    TAG_SPEC_SHA256,
    TAG_TEAM,
    ExperimentRun,
    RegisteredVersion,
    set_model_alias,
    set_model_version_tag,
)

_INPUT_EXAMPLE_ROWS = 5
#: The MLflow alias a search sets on the model it registers.
CANDIDATE_ALIAS = "candidate"


class JobStopped(BaseException):
    """Raised in the driver when the job is stopped (SIGTERM)."""


def main(argv: list[str]) -> int:
    """Run the experiment described by the plan file ``argv[0]``; return the exit code."""
    plan = JobPlan.model_validate_json(Path(argv[0] if argv else PLAN_PATH).read_text())
    ray.init()
    spec = plan.spec
    emit(ProgressEvent("setup", f"MLflow experiment {spec.mlflow_experiment}"))
    tags = {TAG_JOB_ID: plan.job_id, TAG_TEAM: spec.team, TAG_SPEC_SHA256: plan.spec_sha256}
    if spec.description:
        tags["mlflow.note.content"] = spec.description
    run = ExperimentRun(
        plan.tracking_uri, spec.mlflow_experiment, plan.job_id, {**spec.tracking.tags, **tags}
    )
    # After ray.init, which installs a handler of its own. Ray kills a stopped job a few seconds
    # after SIGTERM, so the run is ended in the handler itself, before anything else.
    signal.signal(signal.SIGTERM, lambda signum, frame: _on_sigterm(run))
    try:
        run_experiment(plan, run, Path.cwd())
    except (JobStopped, KeyboardInterrupt, SystemExit):
        _end_killed(run)
        return 1
    except Exception as e:  # every failure ends the MLflow run FAILED, then fails the job
        reason = str(e) if isinstance(e, FlywheelError) else traceback.format_exc()
        run.end("FAILED", reason)
        emit(ProgressEvent("failed", str(e) or type(e).__name__))
        print(f"flywheel: {reason}", file=sys.stderr, flush=True)
        return 1
    run.end("FINISHED")
    emit(ProgressEvent("done", f"MLflow run {run.run_id}"))
    return 0


def run_experiment(plan: JobPlan, run: ExperimentRun, experiment_dir: Path) -> None:
    """Checks, training and registration, recorded in ``run``."""
    spec = plan.spec
    run.log_params({**flatten(spec.model_dump(mode="json")), **_versions()})
    run.log_params({"train.mesh_shape": spec.train.mesh_shape.describe()})
    run.log_text((experiment_dir / plan.spec_file).read_text(), f"spec/{plan.spec_file}")
    task = load_task(experiment_dir, spec.task.module)
    hparams = {**spec.data.params, **spec.hparams}
    split = data_mod.load_split(task.module.load_data, spec.data, hparams, plan.feedback)
    features, targets = data_mod.to_arrays(split.dataset)
    if plan.feedback is not None:
        _record_feedback(plan.feedback, run, features, targets, split)
    digest = data_mod.fingerprint(features, targets)
    snapshot = record_snapshot(plan.storage_root, spec.task.module, run, features, targets, split)
    verb = "reused" if snapshot.reused else "stored"
    emit(ProgressEvent("setup", f"{verb} data snapshot {snapshot.manifest.fingerprint[:12]}"))
    run.log_params(
        {
            "data.sha256": digest,
            "data.train_size": len(split.train_indices),
            "data.val_size": len(split.val_indices),
        }
    )
    _run_checks(plan, run, task, hparams, split, targets)
    final = _search(plan, run) if spec.search is not None else plan
    emit(ProgressEvent("train", "starting Ray Train workers", epoch=0, epochs=spec.train.epochs))
    result = fit(final, run.run_id)
    if result.checkpoint is None:
        raise FlywheelError("training finished without a checkpoint; nothing to register")
    version = _register(final, run, task, load_checkpoint_state(result.checkpoint), features, split)
    if version is not None and spec.search is not None:
        set_model_alias(plan.tracking_uri, version, CANDIDATE_ALIAS)
        emit(ProgressEvent("register", f"alias {CANDIDATE_ALIAS!r} -> version {version.version}"))
    if version is not None and spec.serve is not None and spec.serve.enabled:
        _serve(plan, version)


def _serve(plan: JobPlan, version: RegisteredVersion) -> None:
    """Serve the new version: champion of a model not served yet, else challenger per the spec.

    Through the serving service, as any client: the document, Serve's REST API, the aliases.
    A plan without a serving target (Kubernetes) leaves it to the control plane, which serves
    the version once the job has succeeded (``flywheel.server.serve_finished``).
    """
    serve_spec = plan.spec.serve
    assert serve_spec is not None
    target = plan.serve_target
    set_model_version_tag(plan.tracking_uri, version, TAG_SERVE_SPEC, serve_spec.model_dump_json())
    if target is None:
        emit(ProgressEvent("serve", f"{version.name} version {version.version} is served by the "
                           "control plane once this job has succeeded"))  # fmt: skip
        return
    if not target.dashboard_url:
        raise FlywheelError("this job's plan has no serving target; submit the experiment again")
    emit(ProgressEvent("serve", f"serving {version.name} version {version.version}"))
    store = document_store(target.storage_root)
    backend = ServeRestBackend(target.dashboard_url, _cluster_token())
    service = ServingService(store, backend, target)
    result = service.serve_new_version(version.name, version.version, serve_spec)
    if result.mode == "progressive":
        emit(ProgressEvent("serve", f"progressive rollout of version {version.version}"))
        result = service.drive(version.name)
    role = "champion" if result.champion == version.version else "challenger"
    emit(ProgressEvent("serve", f"version {version.version} serves as {role}"))


def _cluster_token() -> str | None:
    """The cluster token, from the file Ray itself reads (``RAY_AUTH_TOKEN_PATH``)."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if not path or not Path(path).is_file():
        return None
    return Path(path).read_text().strip() or None


def _record_feedback(
    feedback: FeedbackSet,
    run: ExperimentRun,
    features: np.ndarray,
    targets: np.ndarray,
    split: data_mod.Split,
) -> None:
    """Log a retraining's fed-back rows: a dataset input (the Parquet file, its fingerprint),
    counts as params, and the version it retrains as a tag."""
    added = split.train_indices[len(split.train_indices) - feedback.rows :]
    run.log_dataset(
        features[added], targets[added], name=f"feedback:{feedback.model}",
        digest=feedback.fingerprint[:36], source=feedback.url, context="feedback",
    )  # fmt: skip
    run.log_params(
        {
            "data.feedback_rows": feedback.rows,
            "data.feedback_requests": feedback.requests,
            "data.feedback_wrong": feedback.wrong,
            "data.feedback_right": feedback.right,
        }
    )
    run.set_tags(
        {
            TAG_RETRAIN_OF: f"{feedback.model}/{feedback.from_version}",
            TAG_FEEDBACK_SET: feedback.fingerprint,
        }
    )
    emit(
        ProgressEvent(
            "setup",
            f"retraining {feedback.model} version {feedback.from_version} with {feedback.requests} "
            f"fed-back requests ({feedback.wrong} it got wrong; {feedback.rows} training rows)",
        )
    )


def _search(plan: JobPlan, run: ExperimentRun) -> JobPlan:
    """Run the search; return the plan that retrains its best configuration at full fidelity."""
    assert plan.spec.search is not None
    outcome = run_search(plan, run)
    best = outcome.best
    run.log_params({f"best.{name}": value for name, value in best.params.items()})
    run.log_params({"best.stage": best.stage, "search.trials": len(outcome.trials)})
    run.log_metrics({f"best_trial_{plan.spec.search.metric}": float(best.value or 0.0)})
    emit(
        ProgressEvent(
            "search", f"best trial: {best.params} ({plan.spec.search.metric} {best.value:.4g})"
        )
    )
    final_spec = apply_overrides(plan.spec, best.params, Fidelity())
    return plan.model_copy(update={"spec": final_spec})


def _run_checks(
    plan: JobPlan,
    run: ExperimentRun,
    task: LoadedTask,
    hparams: dict[str, Scalar],
    split: data_mod.Split,
    targets: np.ndarray,
) -> None:
    spec = plan.spec
    if spec.checks.baseline:
        metrics = checks.baseline_metrics(
            targets[split.train_indices], targets[split.val_indices], spec.task.kind
        )
        run.log_metrics(metrics)
        emit(ProgressEvent("baseline", "trivial baseline", metrics=metrics))
    if spec.checks.overfit_one_batch.enabled:
        emit(ProgressEvent("overfit", "overfitting one batch"))
        torch.manual_seed(spec.data.seed)
        model = task.module.build_model(hparams)
        metrics = checks.overfit_one_batch(model, split.dataset, split.train_indices, spec)
        run.log_metrics(metrics)
        emit(ProgressEvent("overfit", "passed", metrics=metrics))


def _register(
    plan: JobPlan,
    run: ExperimentRun,
    task: LoadedTask,
    state: dict[str, Any],
    features: np.ndarray,
    split: data_mod.Split,
) -> RegisteredVersion | None:
    spec = plan.spec
    emit(ProgressEvent("register", "logging the final model"))
    model = task.module.build_model({**spec.data.params, **spec.hparams})
    model.load_state_dict(state["model"])
    model.eval()
    dtype = np.int64 if spec.task.kind == "language_model" else np.float32
    example = features[:_INPUT_EXAMPLE_ROWS].astype(dtype)
    with torch.no_grad():
        output = model(torch.from_numpy(example)).numpy()
    version = run.log_model(
        model,
        input_example=example,
        output_example=output,
        code_paths=[task.code_path],
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"],
        registered_model=spec.registered_model if spec.tracking.register_model else None,
    )
    if version is not None:
        emit(ProgressEvent("register", f"registered {version.name} version {version.version}"))
    train_features = features[split.train_indices]
    if log_training_profile(
        run, plan.tracking_uri, version, model, train_features, spec.task, spec.data.seed
    ):
        emit(ProgressEvent("register", "logged the training profile"))
    return version


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: spec sections as MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _versions() -> dict[str, str]:
    return {
        "version.flywheel": importlib.metadata.version("flywheel"),
        "version.ray": ray.__version__,
        "version.torch": torch.__version__,
        "version.python": stdlib_platform.python_version(),
    }


def _on_sigterm(run: ExperimentRun) -> None:
    """End the run KILLED, then unwind the driver."""
    _end_killed(run)
    raise JobStopped()


def _end_killed(run: ExperimentRun) -> None:
    if not run.ended:
        run.end("KILLED", "the job was stopped")
        emit(ProgressEvent("failed", "the job was stopped"))
