"""The installed `flywheel` command, run as a user runs it (a subprocess); no cluster needed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel.specs.reference import experiment_schema

REPO = Path(__file__).resolve().parents[3]
FLYWHEEL = str(Path(sys.executable).parent / "flywheel")


def _run(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env |= {
        "FLYWHEEL_HOME": str(home),
        "FLYWHEEL_RAY_DASHBOARD_PORT": "9",  # discard port: nothing listens there
        "FLYWHEEL_MLFLOW_PORT": "9",
        "FLYWHEEL_CONTROL_PLANE_PORT": "9",
    }
    return subprocess.run(
        [FLYWHEEL, *args], env=env, capture_output=True, text=True, timeout=120, cwd=cwd
    )


@pytest.fixture
def digits(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "experiments" / "digits", tmp_path / "digits")
    return tmp_path / "digits" / "train.yaml"


def test_validate_accepts_the_example(tmp_path: Path, digits: Path) -> None:
    result = _run(tmp_path, "validate", str(digits))
    assert result.returncode == 0, result.stderr
    assert "experiment 'digits' of team 'vision'" in result.stdout


def test_validate_reports_a_misspelled_key_with_file_and_line(tmp_path: Path, digits: Path) -> None:
    text = digits.read_text().replace("  batch_size: 64", "  batch_sise: 64")
    digits.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("  batch_sise:"))

    result = _run(tmp_path, "validate", str(digits))

    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        f"{digits}:{line}: train.batch_sise: unknown field; did you mean 'batch_size'?"
    )
    assert "Traceback" not in result.stderr


def test_schema_prints_the_generated_json_schema(tmp_path: Path) -> None:
    result = _run(tmp_path, "schema")
    assert result.returncode == 0
    assert json.loads(result.stdout) == experiment_schema()


def test_schema_markdown_is_the_committed_reference(tmp_path: Path) -> None:
    result = _run(tmp_path, "schema", "--markdown")
    assert result.stdout == (REPO / "docs" / "spec-reference.md").read_text()


def test_status_json_of_a_stopped_platform(tmp_path: Path) -> None:
    result = _run(tmp_path, "status", "--json")
    assert result.returncode == 0
    state = json.loads(result.stdout)
    assert state["running"] is False
    assert state["ray_dashboard_url"] == "http://127.0.0.1:9"
    assert state["mlflow_url"] == "http://127.0.0.1:9"
    assert state["control_plane"] == "http://127.0.0.1:9"
    healthy = {c["name"]: c["healthy"] for c in state["components"]}
    assert healthy == {"ray": False, "mlflow": False, "control_plane": False}
    endpoints = {m["name"]: (m["url"], m["auth"]) for m in state["metrics"]}
    assert endpoints == {
        "control_plane": ("http://127.0.0.1:9/metrics", "bearer"),
        "ray": ("http://127.0.0.1:8471/metrics", "none"),
        "haproxy": ("http://127.0.0.1:9101/metrics", "none"),
    }
    [control] = [m for m in state["metrics"] if m["name"] == "control_plane"]
    assert control["token_path"] == str(tmp_path / "control" / "admin_token")


def test_jobs_without_a_platform_is_one_clear_error(tmp_path: Path) -> None:
    result = _run(tmp_path, "jobs")
    assert result.returncode == 1
    assert "cannot reach the control plane at http://127.0.0.1:9" in result.stderr
    assert "flywheel up" in result.stderr
    assert "Traceback" not in result.stderr


def test_token_create_without_a_platform_is_one_clear_error(tmp_path: Path) -> None:
    result = _run(tmp_path, "token", "create", "vision")
    assert result.returncode == 1
    assert "cannot reach the control plane" in result.stderr and "Traceback" not in result.stderr


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    result = _run(tmp_path, "submit")
    assert result.returncode == 2
    assert "Missing argument" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("rollout", "m", "--version", "2"),
        ("rollout", "m", "--version", "2", "--canary", "10", "--shadow"),
        ("rollout", "m", "--version", "2", "--canary", "0"),
        ("deploy", "m", "--version", "1", "--alias", "champion"),
        ("predict", "m", "--json", "/no/such/request.json"),
    ],
    ids=["no mode", "two modes", "canary out of range", "version and alias", "missing file"],
)
def test_bad_serving_input_is_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = _run(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "error:" in result.stderr


def test_predict_rejects_a_request_that_is_not_json(tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text("{not json")
    result = _run(tmp_path, "predict", "m", "--json", str(request))
    assert result.returncode == 2 and "not valid JSON" in result.stderr


def test_up_without_a_teams_file_starts_nothing(tmp_path: Path) -> None:
    result = _run(tmp_path, "up", cwd=tmp_path)  # no cluster/teams.yaml there
    assert result.returncode == 1
    assert "teams file cluster/teams.yaml not found" in result.stderr
    assert "FLYWHEEL_TEAMS_FILE" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
