"""Helpers shared by integration tests: running the CLI and finding MLflow runs of a job."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow.pytorch
import optuna
import pytest
import torch
from benchmarks.serving.model import TRAIN_STEPS, train_digits
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from optuna.storages import JournalStorage
from pydantic import SecretStr

from flywheel.client import Client
from flywheel.mlflow_auth import read_auth_config
from flywheel.settings import Settings

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = Path(__file__).parent / "experiments"


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a `flywheel` process use ``settings``."""
    env = dict(os.environ)
    for name, value in settings.model_dump(exclude_none=True).items():
        if name != "ray_auth_token":
            env[f"FLYWHEEL_{name.upper()}"] = str(value)
    return env


@contextmanager
def mlflow_admin(settings: Settings) -> Iterator[None]:
    """This process's MLflow calls go as the admin of the platform of ``settings`` (each
    platform's `flywheel up` writes its own admin password), then as before."""
    config = read_auth_config(settings.mlflow_auth_config_path)
    assert config is not None, "flywheel up wrote no MLflow auth config"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in config.admin.env().items():
            patch.setenv(name, value)
        yield


@contextmanager
def acting_as(username: str | None, password: str | None) -> Iterator[None]:
    """This process's MLflow calls made with these credentials (None: without any)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("MLFLOW_TRACKING_USERNAME", username),
                            ("MLFLOW_TRACKING_PASSWORD", password)):  # fmt: skip
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        yield


def error_code(call: Callable[[], object]) -> str:
    with pytest.raises(MlflowException) as caught:
        call()
    return caught.value.error_code


def team_settings(settings: Settings, team: str) -> Settings:
    """The platform's settings with a new token of ``team`` (issued with the admin token)."""
    token = Client(settings).create_token(team).token
    return settings.model_copy(update={"token": SecretStr(token)})


def run_cli(
    settings: Settings, *args: str, timeout_s: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed `flywheel` command against the test platform (``env``: extra variables)."""
    command = [str(Path(sys.executable).parent / "flywheel"), *args]
    return subprocess.run(
        command, env={**settings_env(settings), **(env or {})}, capture_output=True, text=True,
        timeout=timeout_s,
    )  # fmt: skip


def copy_experiment(source: Path, target: Path, spec_text: str | None = None) -> Path:
    """Copy an experiment folder; optionally replace its train.yaml. Returns the spec path."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    spec = target / "train.yaml"
    if spec_text is not None:
        spec.write_text(spec_text)
    return spec


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.5
) -> None:
    """Ask ``condition`` every ``every_s`` until it holds; fail, naming ``what``, after
    ``timeout_s``. The one place integration tests wait on something."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout_s:.0f} s for {what}"
        time.sleep(every_s)


def run_of_job(tracking_uri: str, job_id: str, timeout_s: float = 60) -> Run:
    """The MLflow run a job created, not one of its trials' runs (waits for it to appear)."""
    client = MlflowClient(tracking_uri)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            filter_string=f"tags.`flywheel.job_id` = '{job_id}'",
        )
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        if parents:
            return parents[0]
        time.sleep(0.5)
    raise AssertionError(f"no MLflow run for job {job_id} after {timeout_s} s")


def trial_runs(tracking_uri: str, parent: Run) -> list[Run]:
    """The runs nested under ``parent``: one per search trial."""
    return MlflowClient(tracking_uri).search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )


def register_digits_version(
    tracking_uri: str, name: str, seed: int, tags: dict[str, str], trained: bool = True
) -> str:
    """Train the digits MLP briefly in this process and register it as a new version of ``name``
    (``trained=False``: its random initial weights, a model that is right one time in ten).

    Cost: about 2 s. Quicker than a whole experiment where a test only needs another version.
    """
    model, example = train_digits(seed, {"hidden": 32}, steps=TRAIN_STEPS if trained else 0)
    with torch.no_grad():
        output = model(torch.from_numpy(example)).numpy()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("tests/serving")
    with mlflow.start_run():
        info = mlflow.pytorch.log_model(
            model, name="model", signature=infer_signature(example, output), input_example=example,
            pip_requirements=["torch"], registered_model_name=name,
        )  # fmt: skip
    version = str(info.registered_model_version)
    client = MlflowClient(tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return version


def finished_trials(journal: JournalStorage, study_name: str) -> dict[int, dict[str, object]]:
    """Trials that finished in a search's study (not copied in, not interrupted): number ->
    params."""
    study = optuna.load_study(study_name=study_name, storage=journal)
    interrupted = set(study.user_attrs.get("flywheel.interrupted", []))
    return {
        t.number: t.params
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished()
        and not t.user_attrs.get("flywheel.warm_start")
        and t.number not in interrupted
    }


def search_spec(name: str, trials: int, team: str = "testing", concurrent: int = 1) -> str:
    """A one-stage search of slow_digits, about 5 s a trial, ``concurrent`` trials at a time."""
    return f"""\
name: {name}
team: {team}
task: {{module: task}}
train:
  epochs: 2
  batch_size: 64
  scaling: {{num_workers: 1}}
hparams: {{sleep_s: 0.1}}
checks:
  baseline: false
  overfit_one_batch: {{enabled: false}}
search:
  metric: val_loss
  mode: min
  space:
    train.optimizer.lr: {{type: loguniform, low: 1.0e-3, high: 3.0e-2}}
  stages:
    - {{name: coarse, sampler: random, trials: {trials}, max_concurrent: {concurrent}, seed: 0}}
tracking:
  register_model: false
"""


def wait_for_state(client: Any, experiment: str, states: set[str], timeout_s: float = 300) -> str:
    """Poll the control plane (a ``flywheel.client.Client``) until the experiment reaches one
    of ``states``; returns it."""
    deadline = time.monotonic() + timeout_s
    while (state := client.job(experiment).state) not in states:
        assert time.monotonic() < deadline, f"{experiment} still {state}"
        time.sleep(0.5)
    return state
