"""The data flywheel end to end on the real platform: experiments/digits-flywheel as it ships.

Version 1 trains on digits lacking most 3s and 8s and is served. Natural traffic, with feedback,
shows drift; the drift alert queues one retraining (the serve section's ``retrain_on_alert``),
which adds the fed-back requests to the training data, registers version 2 and starts it as a
shadow. On held-out traffic, version 2's online accuracy is measurably higher.

Cost: about 4 minutes on 2 cores: two trainings (about 60 s each), a first deploy (20 to 30 s),
the shadow rollout, and 1,800 one-row requests, each with feedback.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.datasets import load_digits

from flywheel.client import Client
from flywheel.local import PlatformStatus
from flywheel.request_log import read_feedback
from flywheel.settings import Settings
from flywheel.tracking import TAG_RETRAIN_OF

from .helpers import REPO, copy_experiment, run_cli, run_of_job, wait_until

pytestmark = pytest.mark.integration

MODEL = "digits-flywheel"
DIGITS = load_digits()
PIXELS = (DIGITS.data / 16.0).astype(np.float32)
ORDER = np.random.default_rng(1).permutation(len(PIXELS))
FED_BACK, HELD_OUT = ORDER[:600], ORDER[600:1200]


def test_production_feedback_retrains_a_version_that_answers_the_blind_spot_better(
    embedded_platform: PlatformStatus, platform_settings: Settings, tmp_path: Path
) -> None:
    client = Client(platform_settings)
    spec = copy_experiment(REPO / "experiments" / "digits-flywheel", tmp_path / "fw")
    first = client.submit(spec)
    assert list(client.follow(first, poll_s=2.0))[-1].job.state == "SUCCEEDED", client.logs(first)
    try:
        with httpx.Client(
            base_url=platform_settings.serve_url, timeout=30, trust_env=False
        ) as http:
            _infer_with_feedback(http, FED_BACK, "fed", None)
            _wait_for_feedback(platform_settings, "fed-", len(FED_BACK))

            drifted = _monitor(platform_settings, len(FED_BACK))
            again = _monitor(platform_settings, len(FED_BACK))
            refused = run_cli(platform_settings, "retrain", MODEL)

            assert drifted["drift"] and drifted["alert"]["active"], drifted["versions"]
            retraining = drifted["retraining"]
            assert retraining, "the raised alert queued no retraining"
            assert again["alert"]["active"] and again["retraining"] is None  # one per incident
            assert refused.returncode != 0 and retraining in refused.stderr, refused.stderr

            updates = list(client.follow(retraining, poll_s=2.0))
            assert updates[-1].job.state == "SUCCEEDED", client.logs(retraining)[-3000:]
            run = run_of_job(platform_settings.tracking_uri, retraining)
            assert run.data.tags[TAG_RETRAIN_OF] == f"{MODEL}/1"
            assert run.data.params["data.feedback_requests"] == str(len(FED_BACK))
            contexts = {
                tag.value
                for dataset in run.inputs.dataset_inputs
                for tag in dataset.tags
                if tag.key == "mlflow.data.context"
            }
            assert {"training", "validation", "feedback"} <= contexts
            assert [(v.version, v.role) for v in client.models() if v.model == MODEL] == [
                ("1", "champion"),
                ("2", "shadow"),
            ]
            assert [j.name for j in client.jobs()].count(MODEL) == 2  # exactly one retraining

            for version in ("1", "2"):
                _infer_with_feedback(http, HELD_OUT, f"held-v{version}", version)
            _wait_for_feedback(platform_settings, "held-", 2 * len(HELD_OUT))
            held_out = _monitor(platform_settings, 2 * len(HELD_OUT))
    finally:
        client.undeploy(MODEL)

    accuracy = {v["version"]: v["online_accuracy"] for v in held_out["versions"]}
    assert accuracy["2"] >= accuracy["1"] + 0.05, accuracy
    registry = MlflowClient(platform_settings.tracking_uri)
    assert registry.get_model_version(MODEL, "2").run_id == run.info.run_id


def _infer_with_feedback(
    http: httpx.Client, rows: np.ndarray, prefix: str, version: str | None
) -> None:
    """One request per row (to ``version``, else to the route), then its true label."""
    path = f"/v2/models/{MODEL}" + (f"/versions/{version}" if version else "") + "/infer"

    def one(row: int) -> None:
        request_id = f"{prefix}-{row}"
        body = {
            "id": request_id,
            "inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP32",
                        "data": PIXELS[row].tolist()}],
        }  # fmt: skip
        answer = http.post(path, json=body)
        assert answer.status_code == 200, answer.text
        label = {"id": request_id, "label": int(DIGITS.target[row])}
        stored = http.post(f"/v2/models/{MODEL}/feedback", json=label)
        assert stored.status_code == 200, stored.text

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, rows.tolist()))


def _wait_for_feedback(settings: Settings, prefix: str, count: int) -> None:
    """Until the request log holds ``count`` feedback records whose ids start with ``prefix``."""

    def logged() -> bool:
        records = read_feedback(str(settings.storage_root), MODEL)
        return sum(r.request_id.startswith(prefix) for r in records) >= count

    wait_until(logged, 120.0, f"{count} {prefix}* feedback records in the request log", 1.0)


def _monitor(settings: Settings, last: int) -> dict[str, Any]:
    done = run_cli(settings, "monitor", MODEL, "--json", "--last", str(last))
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report
