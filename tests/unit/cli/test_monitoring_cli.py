"""`flywheel data show` and `flywheel monitor`, run as a user runs them, against a real control
plane (uvicorn on 127.0.0.1, in this process) over MLflow's SQLite store.

The CLI processes reach MLflow and the storage root only through the control plane; its tracking
URI is a local SQLite database, its storage root a temporary folder. The CLI reads the admin
token the control plane wrote under the shared home. Cost: a few seconds (the CLI processes no
longer import MLflow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from torch.utils.data import TensorDataset

from flywheel.runtime.data import split_dataset, to_arrays
from flywheel.runtime.snapshot import record_snapshot
from flywheel.server.app import create_app
from flywheel.settings import Settings
from flywheel.specs.experiment import DataSpec
from flywheel.tracking import ExperimentRun

from ..server.helpers import TEAMS, MemoryBackend, http_server
from ..server.monitoring_helpers import drifted_version

FLYWHEEL = str(Path(sys.executable).parent / "flywheel")
MODEL = "digits-mlp"


@pytest.fixture
def control_url(tmp_path: Path) -> Iterator[str]:
    """The control plane of home ``tmp_path``, its MLflow store and storage root under it."""
    settings = Settings(home=tmp_path, mlflow_tracking_uri=_uri(tmp_path))
    with http_server(create_app(settings, TEAMS, MemoryBackend(), run_queue=False)) as url:
        yield url


def _run(home: Path, control_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with only a home (for the admin token) and the control plane's URL: no tracking
    URI, no storage root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env |= {"FLYWHEEL_HOME": str(home), "FLYWHEEL_CONTROL_PLANE_URL": control_url}
    return subprocess.run([FLYWHEEL, *args], env=env, capture_output=True, text=True, timeout=120)


def _uri(home: Path) -> str:
    return f"sqlite:///{home}/mlflow.db"


def test_data_show_lists_the_snapshot_and_its_runs(tmp_path: Path, control_url: str) -> None:
    dataset = TensorDataset(torch.rand(40, 3), torch.arange(40) % 2)
    features, targets = to_arrays(dataset)
    split = split_dataset(dataset, DataSpec())
    run_ids = []
    for name in ("first", "again"):
        run = ExperimentRun(_uri(tmp_path), "vision/snapdemo", name, {})
        record_snapshot(str(tmp_path / "storage"), "task", run, features, targets, split)
        run.end("FINISHED")
        run_ids.append(run.run_id)

    inputs = MlflowClient(_uri(tmp_path)).get_run(run_ids[1]).inputs.dataset_inputs
    contexts = {i.tags[0].value: i.dataset for i in inputs}  # tag mlflow.data.context
    assert set(contexts) == {"training", "validation"}
    fingerprint = contexts["training"].digest
    assert json.loads(contexts["training"].source)["uri"].endswith("/train.parquet")

    shown = _run(tmp_path, control_url, "data", "show", "snapdemo", "--json")
    table = _run(tmp_path, control_url, "data", "show", "snapdemo")
    nothing = _run(tmp_path, control_url, "data", "show", "nothing")

    assert shown.returncode == 0, shown.stderr
    [snapshot] = json.loads(shown.stdout)
    assert [r["run_id"] for r in snapshot["runs"]] == run_ids[::-1]
    assert snapshot["fingerprint"].startswith(fingerprint)
    assert [p["rows"] for p in snapshot["manifest"]["parts"]] == [32, 8]
    assert table.returncode == 0 and "x0..x2: float" in table.stdout and "again" in table.stdout
    assert nothing.returncode == 1
    assert "no run of experiment 'nothing' recorded a data snapshot" in nothing.stderr


@pytest.fixture
def served_digits(tmp_path: Path) -> Path:
    """A registered version with a training profile, and a request log of shifted traffic."""
    drifted_version(_uri(tmp_path), str(tmp_path / "storage"), MODEL, tmp_path / "artifacts")
    return tmp_path


def test_monitor_json_has_the_verdict_and_per_feature_scores(
    served_digits: Path, control_url: str
) -> None:
    result = _run(served_digits, control_url, "monitor", MODEL, "--last", "120", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["drift"] is True and report["requests"] == 120
    assert [f["name"] for f in report["features"]][:3] == ["x0", "x1", "x2"]
    [version] = report["versions"]
    assert version["feedback"] == 120 and 0.0 <= version["online_accuracy"] <= 1.0
    assert report["alert"]["active"] is True and report["alert"]["reasons"][0].startswith("v1: ")


def test_monitor_prints_a_table_and_an_unknown_model_is_a_user_error(
    served_digits: Path, control_url: str
) -> None:
    table = _run(served_digits, control_url, "monitor", MODEL)
    unknown = _run(served_digits, control_url, "monitor", "no-such-model")

    assert table.returncode == 0, table.stderr
    assert f"{MODEL}: drift over 200 logged requests" in table.stdout
    assert "features (most drifted first)" in table.stdout and "alert active" in table.stdout
    assert unknown.returncode == 2  # a wrong serving request, as before
    assert "model 'no-such-model' has no version in the MLflow registry" in unknown.stderr
