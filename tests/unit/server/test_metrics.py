"""``GET /metrics`` of the control plane, scraped and parsed as Prometheus parses it."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from flywheel import storage
from flywheel.drift_scores import scores_of, write_scores
from flywheel.server.app import create_app
from flywheel.server.metrics import Admission, admission_histogram, admissions_of
from flywheel.wire import FeatureScore, MonitorReport, VersionReport

from .helpers import SEARCH, SPEC, TEAMS, ControlPlane, experiment_folder, submit

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(http: TestClient, headers: dict[str, str]) -> Samples:
    response = http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def team_value(samples: Samples, name: str, team: str, **labels: str) -> float:
    return samples[(name, tuple(sorted({"team": team, **labels}.items())))]


def _preempt_and_queue(control: ControlPlane, tmp_path: Path) -> None:
    """language borrows vision's quota; vision takes it back (one preemption); a second vision
    experiment then waits: a non-trivial state for every metric."""
    spec = SPEC.replace("team: vision", "team: language") + SEARCH
    submit(control, experiment_folder(tmp_path / "a", spec), control.language)
    submit(control, experiment_folder(tmp_path / "b", spec), control.language)
    control.step()
    submit(control, experiment_folder(tmp_path / "c", SPEC + SEARCH), control.vision)
    control.step()  # drain the borrower
    control.step()  # the owner is admitted
    submit(control, experiment_folder(tmp_path / "d", SPEC + SEARCH), control.vision)
    control.step()


def test_metrics_count_queue_usage_preemptions_and_admission_delays(
    control: ControlPlane, tmp_path: Path
) -> None:
    _preempt_and_queue(control, tmp_path)
    samples = scrape(control.http, control.admin)
    usage = {u["name"]: u for u in control.http.get("/api/v1/teams", headers=control.admin).json()}

    assert team_value(samples, "flywheel_queued_experiments", "language") == 1  # the preempted
    assert team_value(samples, "flywheel_queued_experiments", "vision") == 1
    assert team_value(samples, "flywheel_preemptions_total", "language") == 1
    assert team_value(samples, "flywheel_preemptions_total", "vision") == 0
    for team in ("language", "vision"):
        used = team_value(samples, "flywheel_team_used_cpu_cores", team)
        assert used == usage[team]["usage"]["cpu"] > 0
        assert team_value(samples, "flywheel_team_quota_cpu_cores", team) == 2
        assert team_value(samples, "flywheel_team_used_gpus", team) == 0
        assert team_value(samples, "flywheel_team_quota_gpus", team) == 0
    assert team_value(samples, "flywheel_experiments", "language", state="ADMITTED") == 1
    assert team_value(samples, "flywheel_experiments", "language", state="PREEMPTED") == 1
    assert team_value(samples, "flywheel_experiments", "vision", state="QUEUED") == 1
    assert team_value(samples, "flywheel_experiments", "vision", state="FAILED") == 0
    # language: two admissions at the first step; vision: the owner, after one queue step.
    assert team_value(samples, "flywheel_admission_delay_seconds_count", "language") == 2
    assert team_value(samples, "flywheel_admission_delay_seconds_count", "vision") == 1
    inf = team_value(samples, "flywheel_admission_delay_seconds_bucket", "vision", le="+Inf")
    assert inf == 1


def test_metrics_are_read_from_the_database_so_a_restart_keeps_them(
    control: ControlPlane, tmp_path: Path
) -> None:
    _preempt_and_queue(control, tmp_path)
    before = scrape(control.http, control.admin)
    restarted = create_app(control.settings, TEAMS, control.backend, run_queue=False)
    with TestClient(restarted) as http:
        after = scrape(http, control.admin)
    assert after == before


def test_metrics_need_the_admin_token(control: ControlPlane) -> None:
    assert control.http.get("/metrics").status_code == 401
    bad = {"Authorization": "Bearer fw_not-a-token"}
    assert control.http.get("/metrics", headers=bad).status_code == 401
    refused = control.http.get("/metrics", headers=control.vision)
    assert refused.status_code == 403 and "admin token" in refused.json()["error"]


def test_an_admission_waits_from_the_last_time_the_experiment_entered_the_queue() -> None:
    rows = [
        ("a", "t", "QUEUED", 10.0),
        ("b", "t", "QUEUED", 11.0),
        ("a", "t", "ADMITTED", 12.5),
        ("a", "t", "PREEMPTED", 100.0),
        ("a", "t", "ADMITTED", 400.0),
        ("c", "t", "ADMITTED", 5.0),  # its queue entry is not in the rows: not counted
    ]
    assert admissions_of(rows) == [Admission("t", 2.5), Admission("t", 300.0)]


def test_the_admission_histogram_is_cumulative_per_team() -> None:
    family = admission_histogram([Admission("t", 0.5), Admission("t", 7.0)], ["t", "idle"])
    values = {(s.name, s.labels.get("le"), s.labels["team"]): s.value for s in family.samples}
    assert values[("flywheel_admission_delay_seconds_bucket", "1.0", "t")] == 1
    assert values[("flywheel_admission_delay_seconds_bucket", "15.0", "t")] == 2
    assert values[("flywheel_admission_delay_seconds_bucket", "+Inf", "t")] == 2
    assert values[("flywheel_admission_delay_seconds_count", None, "t")] == 2
    assert values[("flywheel_admission_delay_seconds_sum", None, "t")] == 7.5
    assert values[("flywheel_admission_delay_seconds_count", None, "idle")] == 0


def test_drift_scores_of_the_last_check_of_each_model_are_exported(control: ControlPlane) -> None:
    root = str(control.settings.storage_root)
    feature = FeatureScore(name="x0", psi=0.9, ks_statistic=0.4, ks_p_value=1e-5, drifted=True)
    calm = FeatureScore(name="x1", psi=0.1, ks_statistic=0.05, ks_p_value=0.8, drifted=False)
    version = VersionReport(
        version="3", requests=200, errors=0, error_rate=0.0, latency_p50_ms=2.0,
        latency_p95_ms=4.0, feedback=100, online_accuracy=0.875, profiled=True, drift=True,
        enough_requests=True, reasons=["x0 drifted"], multivariate_p_value=0.001,
        prediction_p_value=None, features=[feature, calm],
    )  # fmt: skip
    report = MonitorReport(
        model="digits", drift=True, requests=200, window_start_s=1.0, window_end_s=2.0,
        features=[feature, calm], versions=[version],
    )  # fmt: skip
    write_scores(root, scores_of(report, alert_active=True, checked_s=1234.5))
    storage.write_text(f"{root}/monitoring/torn/scores.json", '{"model": ')

    samples = scrape(control.http, control.admin)

    model = (("model", "digits"),)
    both = (("model", "digits"), ("version", "3"))
    assert samples[("flywheel_model_drift", model)] == 1.0
    assert samples[("flywheel_model_drift_alert", model)] == 1.0
    assert samples[("flywheel_model_monitor_check_timestamp_seconds", model)] == 1234.5
    assert samples[("flywheel_model_drift_psi_max", both)] == 0.9
    assert samples[("flywheel_model_drift_ks_statistic_max", both)] == 0.4
    assert samples[("flywheel_model_drift_mmd_p_value", both)] == 0.001
    assert samples[("flywheel_model_online_accuracy_ratio", both)] == 0.875
    assert ("flywheel_model_drift_prediction_p_value", both) not in samples
    assert not any(dict(labels).get("model") == "torn" for _, labels in samples)
