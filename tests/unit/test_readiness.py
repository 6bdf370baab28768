"""The ML Test Score report: 28 tests, verified ones with evidence, logged to MLflow."""

from __future__ import annotations

from pathlib import Path

import mlflow.artifacts
from mlflow import MlflowClient
from pydantic import SecretStr

from flywheel.client import Client
from flywheel.readiness import READINESS_FILE, RUBRIC, Evidence, readiness_report
from flywheel.request_log import LoggedFeedback, LoggedRequest, RequestLogWriter
from flywheel.settings import Settings

from .server.helpers import TEAMS, MemoryBackend, running_plane

VERIFIED = {"data-1", "model-3", "model-5", "infra-1", "infra-2", "infra-6", "monitor-2",
            "monitor-3", "monitor-6", "monitor-7"}  # fmt: skip

DIGITS_RUN = Evidence(
    params={"search.trials": "12", "data.sha256": "ab" * 32, "data.seed": "0",
            "checks.overfit_one_batch.loss_threshold": "0.05"},
    metrics={"val_accuracy": 0.97, "baseline_val_accuracy": 0.1, "overfit_final_loss": 0.01},
    run_tags={"flywheel.snapshot": "cd" * 32, "flywheel.spec_sha256": "ef" * 32},
    version_tags={"flywheel.profile": "profile/training_profile.json"},
    challenger_modes=("shadow",), logged_requests=300, feedback=40, monitor_checked=True,
)  # fmt: skip


def test_the_rubric_has_28_tests_in_four_groups_of_seven() -> None:
    groups = [group for _, group, _ in RUBRIC]
    assert len(RUBRIC) == 28 and len({test_id for test_id, _, _ in RUBRIC}) == 28
    assert {g: groups.count(g) for g in set(groups)} == dict.fromkeys(
        ("data", "model", "infrastructure", "monitoring"), 7
    )


def test_a_well_run_version_passes_every_test_the_platform_can_verify() -> None:
    report = readiness_report("digits-mlp", "3", DIGITS_RUN)

    assert {t.id for t in report.tests if t.status == "passed"} == VERIFIED
    assert all(t.status == "not verifiable" for t in report.tests if t.id not in VERIFIED)
    assert report.verified == 10 and report.score == 1.0  # data: only the schema is checkable
    assert report.group_scores == {"data": 1.0, "model": 2.0, "infrastructure": 3.0,
                                   "monitoring": 4.0}  # fmt: skip
    baseline = next(t for t in report.tests if t.id == "model-5")
    assert baseline.evidence == "val_accuracy 0.9700 against baseline 0.1000"


def test_missing_or_bad_evidence_fails_the_test_and_says_why() -> None:
    bad = Evidence(
        metrics={"val_accuracy": 0.05, "baseline_val_accuracy": 0.1, "overfit_final_loss": 0.4},
        params={"checks.overfit_one_batch.loss_threshold": "0.05"},
        logged_requests=10, monitor_checked=True, drift_alert=True,
    )  # fmt: skip
    report = readiness_report("m", "1", bad)
    failed = {t.id: t.evidence for t in report.tests if t.status == "failed"}

    assert set(failed) == VERIFIED - {"monitor-6"}
    assert failed["monitor-2"] == "a drift alert is active"
    assert failed["model-3"].startswith("trained once") and report.score == 0.0


def test_the_control_plane_gathers_evidence_and_logs_the_report(tmp_path: Path) -> None:
    """Through the client and a real control plane app, which alone reads MLflow and the
    storage root."""
    settings = Settings(home=tmp_path, mlflow_tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient(settings.tracking_uri)
    experiment = client.create_experiment("vision/digits", str(tmp_path / "artifacts"))
    run = client.create_run(experiment, tags={"flywheel.spec_sha256": "ef" * 32})
    client.log_metric(run.info.run_id, "val_accuracy", 0.9)
    client.log_metric(run.info.run_id, "baseline_val_accuracy", 0.1)
    client.create_registered_model("digits-mlp")
    client.create_model_version("digits-mlp", "runs:/x/model", run.info.run_id)
    log = RequestLogWriter(str(settings.storage_root), 1.0, 24, flush_every_s=3600)
    log.log_request(LoggedRequest("r1", "digits-mlp", "1", 1e9, 2.0, True, [0.0], [1], 3))
    log.log_feedback(LoggedFeedback("r1", "digits-mlp", "1", 1e9, 3, 3))
    log.close()

    with running_plane(settings, TEAMS, MemoryBackend()) as control:
        token = control.admin["Authorization"].removeprefix("Bearer ")
        admin = Client(settings.model_copy(update={"token": SecretStr(token)}), control.http)
        report = admin.readiness("digits-mlp")

    passed = {t.id for t in report.tests if t.status == "passed"}
    assert passed == {"model-5", "monitor-6", "monitor-7"} and report.version == "1"
    mlflow.set_tracking_uri(settings.tracking_uri)
    stored = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{READINESS_FILE}")
    assert stored == report.model_dump(mode="json")
