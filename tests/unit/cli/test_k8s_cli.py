"""`flywheel k8s render`, `render-teams` and `render-serving`: offline, YAML on stdout.

One test runs the installed command (a subprocess, about 20 s on 2 busy cores: the CLI imports
ray); the others call the same entry point, ``flywheel.cli.main``, in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flywheel.cli import main
from flywheel.k8s.kueue import teams_to_objects
from flywheel.serving.document import ServingDocument, deploy
from flywheel.specs.serving import ServeSpec
from flywheel.specs.teams import load_teams

REPO = Path(__file__).resolve().parents[3]
FLYWHEEL = str(Path(sys.executable).parent / "flywheel")
DIGITS = REPO / "experiments" / "digits" / "train.yaml"


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env |= {"FLYWHEEL_HOME": str(home), "FLYWHEEL_RAY_DASHBOARD_PORT": "9"}
    return subprocess.run(
        [FLYWHEEL, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def _main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``flywheel ARGS`` in this process, from the repository root."""
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["flywheel", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def test_render_teams_prints_the_kueue_objects(tmp_path: Path) -> None:
    result = _run(tmp_path, "k8s", "render-teams", "cluster/teams.yaml")
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    expected = teams_to_objects(load_teams(REPO / "cluster" / "teams.yaml"))
    assert documents == [o.to_manifest() for o in expected]


def test_render_prints_the_rayjob_for_another_team(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path))
    result = _main(
        monkeypatch, capsys, "k8s", "render", str(DIGITS), "--team", "language",
        "--job-id", "lang-d-1", "--storage-root", "s3://ml-bucket/flywheel",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (rayjob,) = yaml.safe_load_all(result.stdout)
    assert rayjob["kind"] == "RayJob"
    assert rayjob["metadata"]["name"] == "lang-d-1"
    assert rayjob["metadata"]["namespace"] == "flywheel-team-language"
    assert rayjob["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "language"
    assert "s3://ml-bucket/flywheel/bundles/lang-d-1.zip" in rayjob["spec"]["runtimeEnvYAML"]
    assert not (tmp_path / "storage").exists()  # offline: nothing written, nothing started


def test_render_rejects_an_unknown_team(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _main(monkeypatch, capsys, "k8s", "render", str(DIGITS), "--team", "audio")
    assert result.returncode == 1
    assert "team 'audio' is not in the teams file" in result.stderr
    assert result.stdout == ""


def test_render_rejects_a_storage_root_off_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _main(monkeypatch, capsys, "k8s", "render", str(DIGITS), "--storage-root", "/data")
    assert result.returncode == 1
    assert "--storage-root '/data'" in result.stderr


def test_render_teams_reports_a_bad_teams_file_with_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    teams = tmp_path / "teams.yaml"
    teams.write_text("teams:\n  - name: vision\n    quota: {cpu: 2, gpus: 1}\n")
    result = _main(monkeypatch, capsys, "k8s", "render-teams", str(teams))
    assert result.returncode == 2
    assert f"{teams}:3: teams[0].quota.gpus: unknown field" in result.stderr


def _serving_document(path: Path) -> Path:
    spec = ServeSpec.model_validate({"autoscaling": {"min_replicas": 1, "max_replicas": 3}})
    path.write_text(deploy(ServingDocument(), "digits", "2", spec).model_dump_json())
    return path


def test_render_serving_prints_the_rayservice_of_a_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path))
    document = _serving_document(tmp_path / "document.json")
    result = _main(
        monkeypatch, capsys, "k8s", "render-serving", str(document), "--team", "vision",
        "--storage-root", "s3://ml-bucket/flywheel",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (service,) = yaml.safe_load_all(result.stdout)
    assert (service["kind"], service["metadata"]["name"]) == ("RayService", "vision-serving")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert [a["name"] for a in config["applications"]] == ["flywheel", "model-digits"]
    assert config["applications"][1]["args"]["storage_root"] == "s3://ml-bucket/flywheel"
    (group,) = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert (group["minReplicas"], group["maxReplicas"]) == (1, 3)


def test_render_serving_reads_the_platform_s_document_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path))
    (tmp_path / "storage" / "serving").mkdir(parents=True)
    _serving_document(tmp_path / "storage" / "serving" / "document.json")
    result = _main(monkeypatch, capsys, "k8s", "render-serving")
    assert result.returncode == 0, result.stderr
    (service,) = yaml.safe_load_all(result.stdout)
    assert service["metadata"]["name"] == "flywheel-serving"
    assert "model-digits" in service["spec"]["serveConfigV2"]


def test_render_serving_names_a_missing_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing.json"
    result = _main(monkeypatch, capsys, "k8s", "render-serving", str(missing))
    assert result.returncode == 1
    assert f"cannot read the serving document {missing}" in result.stderr
    assert result.stdout == ""
