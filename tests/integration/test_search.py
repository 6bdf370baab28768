"""A two-stage search on digits through the real embedded platform (Ray Tune + Optuna + MLflow).

About 2 to 3 minutes on 2 cores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from flywheel.client import Client
from flywheel.local import PlatformStatus
from flywheel.settings import Settings
from flywheel.tracking import TAG_SEARCH_STAGE, TAG_TRIAL_STATE

from .helpers import EXPERIMENTS, REPO, copy_experiment, run_cli, run_of_job, trial_runs

pytestmark = pytest.mark.integration

DIGITS = REPO / "experiments" / "digits"

SEARCH_SPEC = """\
name: search-it
team: testing
task: {module: task}
train:
  epochs: 4
  batch_size: 64
  checkpoint_every_epochs: 4
  scaling: {num_workers: 2}
hparams: {hidden: 64}
checks:
  overfit_one_batch: {steps: 100}
search:
  metric: val_accuracy
  mode: max
  space:
    train.optimizer.lr: {type: loguniform, low: 1.0e-3, high: 3.0e-2}
    hparams.hidden: {type: int, low: 16, high: 128, log: true}
    train.batch_size: {type: choice, values: [32, 64]}
  stages:
    - name: coarse
      sampler: random
      trials: 4
      fidelity: {max_epochs: 2, data_fraction: 0.5}
      scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
      seed: 0
    - name: fine
      sampler: tpe
      trials: 2
      narrow: {top_k: 2, margin: 0.1, min_trials: 2}
      seed: 1
tracking:
  registered_model: search-it-model
"""


@pytest.mark.timeout(900)
def test_two_stage_search_records_trials_narrowing_and_candidate(
    embedded_platform: PlatformStatus, platform_settings: Settings, tmp_path: Path
) -> None:
    spec = copy_experiment(DIGITS, tmp_path / "digits", SEARCH_SPEC)

    result = run_cli(platform_settings, "submit", str(spec), "--follow")

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "stage coarse" in result.stdout and "stage fine" in result.stdout
    job_id = re.search(r"submitted job (\S+)", result.stdout).group(1)  # type: ignore[union-attr]
    client = MlflowClient(platform_settings.tracking_uri)
    parent = run_of_job(platform_settings.tracking_uri, job_id)
    assert parent.info.status == "FINISHED"
    children = trial_runs(platform_settings.tracking_uri, parent)
    stages = sorted(r.data.tags[TAG_SEARCH_STAGE] for r in children)
    assert stages == ["coarse"] * 4 + ["fine"] * 2
    assert all(r.info.status in {"FINISHED", "FAILED"} for r in children)
    assert {r.data.tags[TAG_TRIAL_STATE] for r in children} <= {"completed", "pruned", "failed"}
    assert all("train.optimizer.lr" in r.data.params for r in children)
    coarse_epochs = [
        max(m.step for m in client.get_metric_history(r.info.run_id, "val_accuracy"))
        for r in children
        if r.data.tags[TAG_SEARCH_STAGE] == "coarse"
    ]
    assert max(coarse_epochs) == 2  # the stage's fidelity, not the spec's 4 epochs

    decision_path = client.download_artifacts(
        parent.info.run_id, "search/fine/narrowing.json", str(tmp_path)
    )
    decision = json.loads(Path(decision_path).read_text())
    assert decision["stage"] == "fine"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "search/fine")}
    assert "search/fine/narrowed_box.png" in artifacts

    version = client.get_model_version_by_alias("search-it-model", "candidate")
    assert version.run_id == parent.info.run_id
    assert "best.train.optimizer.lr" in parent.data.params


RESUME_SPEC = """\
name: resume-it
team: testing
task: {module: task}
train:
  epochs: 2
  batch_size: 64
  scaling: {num_workers: 1}
hparams: {sleep_s: 0.1}  # about 5 s a trial: the job is stopped while the stage runs
checks:
  baseline: false
  overfit_one_batch: {enabled: false}
search:
  metric: val_loss
  mode: min
  space:
    train.optimizer.lr: {type: loguniform, low: 1.0e-3, high: 3.0e-2}
  stages:
    - {name: coarse, sampler: random, trials: 6, max_concurrent: 1, seed: 0}
    - {name: fine, sampler: tpe, trials: 2, max_concurrent: 1, narrow: {top_k: 2, min_trials: 2}}
tracking:
  register_model: false
"""


@pytest.mark.timeout(900)
def test_a_stopped_search_resumes_without_running_finished_trials_again(
    embedded_platform: PlatformStatus, platform_settings: Settings, tmp_path: Path
) -> None:
    spec = copy_experiment(EXPERIMENTS / "slow_digits", tmp_path / "slow", RESUME_SPEC)
    client = Client(platform_settings)
    first = client.submit(spec)
    for update in client.follow(first, poll_s=0.5):
        if any(e.stage == "search" and (e.epoch or 0) >= 2 for e in update.events):
            break
    client.stop(first)
    assert list(client.follow(first, poll_s=0.5))[-1].job.state == "STOPPED"
    journal = JournalStorage(
        JournalFileBackend(
            str(Path(platform_settings.storage_root) / "search/testing/resume-it/journal.log")
        )
    )
    before = _finished(journal, f"{first}:coarse")
    assert 2 <= len(before) < 6

    result = run_cli(platform_settings, "resume", "resume-it", "--team", "testing", "--follow")

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "resuming search" in result.stdout
    after = _finished(journal, f"{first}:coarse")
    assert len(after) == 6, "the budget of the stage is met exactly"
    assert before.items() <= after.items(), "finished trials were kept, not run again"
    assert len(_finished(journal, f"{first}:fine")) == 2
    mlflow = MlflowClient(platform_settings.tracking_uri)
    parent = run_of_job(platform_settings.tracking_uri, first)
    runs = mlflow.search_runs(
        [parent.info.experiment_id], filter_string="tags.`flywheel.stage` = 'coarse'"
    )
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == 6
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert mlflow.get_run(parent.info.run_id).info.status == "KILLED"


def _finished(journal: JournalStorage, study_name: str) -> dict[int, dict[str, object]]:
    """Trials that finished in the study (not copied in, not interrupted): number -> params."""
    study = optuna.load_study(study_name=study_name, storage=journal)
    interrupted = set(study.user_attrs.get("flywheel.interrupted", []))
    return {
        t.number: t.params
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished()
        and not t.user_attrs.get("flywheel.warm_start")
        and t.number not in interrupted
    }


DDP_TRIALS_SPEC = """\
name: ddp-trials
team: testing
task: {module: task}
train:
  epochs: 2
  batch_size: 64
  scaling: {num_workers: 1}
hparams: {hidden: 32}
checks:
  baseline: false
  overfit_one_batch: {enabled: false}
search:
  metric: val_loss
  space:
    train.optimizer.lr: {type: loguniform, low: 1.0e-3, high: 3.0e-2}
  trial_workers: 2
  stages:
    - {name: only, sampler: random, trials: 2, max_concurrent: 1, seed: 0}
tracking:
  register_model: false
"""


@pytest.mark.timeout(600)
def test_trials_can_train_with_ddp_workers(
    embedded_platform: PlatformStatus, platform_settings: Settings, tmp_path: Path
) -> None:
    spec = copy_experiment(DIGITS, tmp_path / "digits", DDP_TRIALS_SPEC)
    client = Client(platform_settings)
    job_id = client.submit(spec)

    final = list(client.follow(job_id, poll_s=1))[-1].job

    assert final.state == "SUCCEEDED", final.message
    mlflow = MlflowClient(platform_settings.tracking_uri)
    parent = run_of_job(platform_settings.tracking_uri, job_id)
    trials = trial_runs(platform_settings.tracking_uri, parent)
    assert [r.data.tags[TAG_TRIAL_STATE] for r in trials] == ["completed", "completed"]
    for trial in trials:
        steps = [m.step for m in mlflow.get_metric_history(trial.info.run_id, "val_loss")]
        assert steps == [1, 2], "every epoch of a DDP trial reaches Tune"
    logs = client.logs(job_id)
    assert "world_size=2" in logs, "the trials trained with two Ray Train workers"
