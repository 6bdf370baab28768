"""A two-stage search on digits through the real embedded platform (Ray Tune + Optuna + MLflow).

About 2 minutes on 2 cores. Elsewhere: a search stopped and resumed through the CLI
(test_s3_storage.py), preempted and resumed by the control plane and outliving its Ray head
(test_sharing.py), and trials that train on two workers (test_model_parallel.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from mlflow import MlflowClient

from flywheel.local import PlatformStatus
from flywheel.settings import Settings
from flywheel.tracking import TAG_SEARCH_STAGE, TAG_TRIAL_STATE

from .helpers import REPO, copy_experiment, run_cli, run_of_job, trial_runs

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
