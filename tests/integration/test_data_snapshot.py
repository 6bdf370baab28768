"""Data snapshots on the real MLflow server: dataset inputs, reuse, and `flywheel data show`.

Cost: the session platform (10 to 20 s, shared), then about 10 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from torch.utils.data import TensorDataset

from flywheel.local import PlatformStatus
from flywheel.runtime.data import split_dataset, to_arrays
from flywheel.runtime.snapshot import record_snapshot
from flywheel.settings import Settings
from flywheel.specs.experiment import DataSpec
from flywheel.tracking import ExperimentRun

from .helpers import run_cli

pytestmark = pytest.mark.integration


def test_runs_record_their_snapshot_and_data_show_lists_it(
    embedded_platform: PlatformStatus, platform_settings: Settings, tmp_path: Path
) -> None:
    generator = torch.Generator().manual_seed(0)
    dataset = TensorDataset(torch.rand(60, 5, generator=generator), torch.arange(60) % 2)
    features, targets = to_arrays(dataset)
    split = split_dataset(dataset, DataSpec(seed=3))
    root = str(tmp_path / "storage")
    run_ids, results = [], []
    for name in ("first", "rerun"):
        run = ExperimentRun(platform_settings.tracking_uri, "tests/snapdemo", name, {})
        results.append(record_snapshot(root, "task", run, features, targets, split))
        run.end("FINISHED")
        run_ids.append(run.run_id)

    assert [r.reused for r in results] == [False, True]
    fingerprint = results[0].manifest.fingerprint
    inputs = MlflowClient(platform_settings.tracking_uri).get_run(run_ids[1]).inputs
    datasets = {i.tags[0].value: i.dataset for i in inputs.dataset_inputs}
    assert set(datasets) == {"training", "validation"}
    assert datasets["training"].digest == fingerprint[:36]
    assert json.loads(datasets["training"].source)["uri"].endswith(
        f"snapshots/{fingerprint}/train.parquet"
    )

    shown = run_cli(platform_settings, "data", "show", "snapdemo", "--json")
    assert shown.returncode == 0, shown.stderr
    [snapshot] = json.loads(shown.stdout)
    assert snapshot["fingerprint"] == fingerprint
    assert [r["run_id"] for r in snapshot["runs"]] == run_ids[::-1]
    assert [p["rows"] for p in snapshot["manifest"]["parts"]] == [48, 12]

    table = run_cli(platform_settings, "data", "show", "snapdemo")
    assert table.returncode == 0, table.stderr
    assert fingerprint in table.stdout and "x0..x4: float" in table.stdout
    assert "first" in table.stdout and "rerun" in table.stdout

    missing = run_cli(platform_settings, "data", "show", "no-such-experiment")
    assert missing.returncode == 1
    assert "no run of experiment 'no-such-experiment'" in missing.stderr
