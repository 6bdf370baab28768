"""The control plane API on a real SQLite file: tokens, access, submissions, bundles."""

from __future__ import annotations

import io
import sqlite3
import tarfile
from pathlib import Path

import httpx
from sqlalchemy import text

from flywheel.server.auth import token_sha256

from .helpers import SPEC, ControlPlane, bearer, experiment_folder, folder_tar_gz, submit, tar_gz


def _post_bundle(
    control: ControlPlane, data: bytes, headers: dict[str, str], spec: str = "train.yaml"
) -> httpx.Response:
    return control.http.post(
        "/api/v1/experiments",
        headers=headers,
        data={"spec_file": spec},
        files={"bundle": ("bundle.tar.gz", data, "application/gzip")},
    )


def _nothing_stored(control: ControlPlane) -> bool:
    bundles = Path(control.settings.storage_root) / "bundles"
    listed = control.http.get("/api/v1/experiments", headers=control.admin).json()
    return listed == [] and not (bundles.exists() and any(bundles.iterdir()))


def test_every_route_needs_a_token(control: ControlPlane) -> None:
    for method, path in [
        ("GET", "/api/v1/experiments"), ("GET", "/api/v1/experiments/x"),
        ("POST", "/api/v1/experiments/x/stop"), ("GET", "/api/v1/experiments/x/logs"),
        ("GET", "/api/v1/experiments/x/explain"), ("GET", "/api/v1/queue"),
        ("GET", "/api/v1/teams"), ("GET", "/api/v1/teams/vision"),
        ("POST", "/api/v1/teams/vision/tokens"), ("GET", "/api/v1/whoami"),
    ]:  # fmt: skip
        for headers in ({}, bearer("fw_not-a-token"), {"Authorization": "Basic abc"}):
            response = control.http.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "fw_not-a-token" not in response.text


def test_tokens_are_stored_as_hashes_only(control: ControlPlane) -> None:
    created = control.http.post("/api/v1/teams/vision/tokens", headers=control.admin)
    assert created.status_code == 201
    token = created.json()["token"]
    assert control.http.get("/api/v1/whoami", headers=bearer(token)).json() == {
        "team": "vision",
        "admin": False,
    }
    with control.app.state.context.sessions() as session:
        rows = session.execute(text("SELECT * FROM tokens")).all()
    stored = [str(value) for row in rows for value in row]
    assert token_sha256(token) in stored and not any(token in value for value in stored)
    if control.settings.database_url is None:  # SQLite: the file, its WAL and shared memory
        database = control.settings.home / "control" / "control.db"
        for path in database.parent.iterdir():
            assert token.encode() not in path.read_bytes()
        with sqlite3.connect(database) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_the_admin_token_file_is_private(control: ControlPlane) -> None:
    path = control.settings.admin_token_path
    assert "admin" in path.name
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_only_the_admin_creates_tokens(control: ControlPlane) -> None:
    refused = control.http.post("/api/v1/teams/language/tokens", headers=control.vision)
    assert refused.status_code == 403
    assert refused.json()["kind"] == "PermissionDeniedError"
    unknown = control.http.post("/api/v1/teams/nope/tokens", headers=control.admin)
    assert unknown.status_code == 404 and "known teams: vision, language" in unknown.text


def test_a_submission_is_queued_for_the_tokens_team(control: ControlPlane, tmp_path: Path) -> None:
    body = submit(control, experiment_folder(tmp_path), control.vision)
    assert body["state"] == "QUEUED" and body["team"] == "vision"
    assert [t["to_state"] for t in body["transitions"]] == ["QUEUED"]  # type: ignore[index, union-attr]
    kept = Path(control.settings.storage_root) / "bundles" / str(body["id"])
    assert (kept / "task.py").is_file() and (kept / ".flywheel" / "plan.json").is_file()


def test_a_spec_of_another_team_is_refused(control: ControlPlane, tmp_path: Path) -> None:
    folder = experiment_folder(tmp_path)
    response = _post_bundle(control, folder_tar_gz(folder), control.language)
    assert response.status_code == 403
    assert "the spec's team" in response.json()["error"] and "'vision'" in response.text
    assert _nothing_stored(control)


def test_path_traversal_is_refused_and_nothing_is_written(
    control: ControlPlane, tmp_path: Path
) -> None:
    victim = control.settings.home / "escaped.py"
    for name in ("../escaped.py", "/tmp/escaped.py", "a/../../escaped.py"):
        data = tar_gz({"train.yaml": SPEC.encode(), name: b"boom"})
        response = _post_bundle(control, data, control.vision)
        assert response.status_code == 400, name
        assert "leaves the experiment folder" in response.json()["error"]
    assert not victim.exists() and not Path("/tmp/escaped.py").exists()
    assert _post_bundle(control, b"x", control.vision, "../train.yaml").status_code == 400
    assert _nothing_stored(control)


def test_links_in_a_bundle_are_refused(control: ControlPlane) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("task.py")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    response = _post_bundle(control, buffer.getvalue(), control.vision)
    assert response.status_code == 400 and "link" in response.json()["error"]
    assert _nothing_stored(control)


def test_a_bundle_over_the_size_limit_gets_413(control: ControlPlane) -> None:
    too_big = b"\0" * (control.settings.max_bundle_bytes + 1)
    response = _post_bundle(control, too_big, control.vision)
    assert response.status_code == 413
    assert "FLYWHEEL_MAX_BUNDLE_BYTES" in response.json()["error"]
    assert _nothing_stored(control)


def test_an_invalid_spec_reports_file_and_line(control: ControlPlane, tmp_path: Path) -> None:
    folder = experiment_folder(tmp_path, SPEC + "trian: {}\n")
    response = _post_bundle(control, folder_tar_gz(folder), control.vision)
    assert response.status_code == 400
    assert response.json()["problems"] == [
        {"file": "train.yaml", "line": 5, "path": "trian",
         "message": "unknown field; did you mean 'train'?"}
    ]  # fmt: skip
    assert _nothing_stored(control)


def test_other_teams_experiments_are_forbidden(control: ControlPlane, tmp_path: Path) -> None:
    experiment = submit(control, experiment_folder(tmp_path), control.vision)["id"]
    calls = [
        ("GET", f"/api/v1/experiments/{experiment}"),
        ("GET", f"/api/v1/experiments/{experiment}/logs"),
        ("GET", f"/api/v1/experiments/{experiment}/explain"),
        ("GET", "/api/v1/teams/vision"),
        ("POST", f"/api/v1/experiments/{experiment}/stop"),
    ]
    for method, path in calls:
        response = control.http.request(method, path, headers=control.language)
        assert response.status_code == 403, (method, path)
        assert "belongs to team 'vision'" in response.json()["error"]
    assert control.http.get("/api/v1/experiments", headers=control.language).json() == []
    own = control.http.get(f"/api/v1/experiments/{experiment}", headers=control.vision).json()
    assert own["state"] == "QUEUED"  # the refused stop changed nothing
    for method, path in calls:
        assert control.http.request(method, path, headers=control.vision).status_code == 200


def test_unknown_experiment_is_404(control: ControlPlane) -> None:
    response = control.http.get("/api/v1/experiments/nope", headers=control.vision)
    assert response.status_code == 404 and response.json()["kind"] == "JobNotFoundError"


def test_the_openapi_document_covers_the_api(control: ControlPlane) -> None:
    document = control.http.get("/openapi.json").json()
    paths = set(document["paths"])
    assert {"/api/v1/experiments", "/api/v1/experiments/{experiment_id}/logs", "/api/v1/queue",
            "/api/v1/teams", "/api/v1/teams/{team}/tokens"} <= paths  # fmt: skip
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
