"""The status page in real headless Chromium (Debian's `chromium`, driven by Playwright).

A control plane (SQLite, the in-memory experiment backend, the real serving service over an
in-memory Serve backend, a SQLite MLflow registry) runs under uvicorn on 127.0.0.1. The page is
read with a team token and with the admin token; what it shows is asserted against the API read
with the same token. A screenshot is kept in ``test-artifacts/`` (``FLYWHEEL_TEST_ARTIFACTS``).

Cost: about 15 s (Chromium's start, three page loads, a few refreshes).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from mlflow import MlflowClient
from playwright.sync_api import Browser, Page, expect, sync_playwright

from flywheel.server.app import create_app
from flywheel.settings import Settings
from flywheel.tracking import TAG_JOB_ID

from .helpers import SPEC, TEAMS, MemoryBackend, experiment_folder, folder_tar_gz, team_tokens
from .serving_helpers import serving_plane, stats_server

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = Path(os.environ.get("FLYWHEEL_TEST_ARTIFACTS", REPO / "test-artifacts"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class Live:
    url: str
    http: httpx.Client
    settings: Settings
    tokens: dict[str, str]
    step: object

    def headers(self, team: str | None) -> dict[str, str]:
        token = self.tokens[team] if team else self.settings.admin_token_path.read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    def api(self, path: str, team: str | None) -> object:
        response = self.http.get(f"/api/v1{path}", headers=self.headers(team))
        assert response.status_code == 200, response.text
        return response.json()

    def submit(self, team: str, folder: Path) -> str:
        spec = SPEC.replace("team: vision", f"team: {team}")
        response = self.http.post(
            "/api/v1/experiments", headers=self.headers(team), data={"spec_file": "train.yaml"},
            files={"bundle": ("b.tar.gz", folder_tar_gz(experiment_folder(folder, spec)),
                              "application/gzip")},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """The control plane on a real port, with two teams' work and one served model."""
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=f"sqlite:///{tmp_path}/m.db")
    with stats_server() as stats_port:
        serving = serving_plane(tmp_path, stats_port)
        app = create_app(settings, TEAMS, MemoryBackend(capacity_cpu=2.0), run_queue=False,
                         serving=serving)  # fmt: skip
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the control plane did not start"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{server.config.port}"
        try:
            with httpx.Client(base_url=url, timeout=30, trust_env=False) as http:
                tokens = team_tokens(http, settings, TEAMS)
                yield Live(url, http, settings, tokens, app.state.driver.step)
        finally:
            server.should_exit = True
            thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def _open(browser: Browser, live: Live, team: str | None) -> Page:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{live.url}/status")
    page.fill("#token", live.headers(team)["Authorization"].removeprefix("Bearer "))
    page.click("button[type=submit]")
    page.wait_for_selector("#experiments tbody tr.experiment")
    return page


def _column(page: Page, table: str, attribute: str) -> list[str]:
    cells = page.eval_on_selector_all(
        f"#{table} tbody tr[{attribute}]", f"rows => rows.map(r => r.getAttribute('{attribute}'))"
    )
    return [str(c) for c in cells]


def _work(live: Live, tmp_path: Path) -> dict[str, list[str]]:
    """vision: one experiment; language: three (two admitted, one waits); vision's model served
    with a 20 % canary."""
    ids = {
        "vision": [live.submit("vision", tmp_path / "v0")],
        "language": [live.submit("language", tmp_path / f"l{i}") for i in range(3)],
    }
    live.step()  # type: ignore[operator]
    for path, body in (
        ("deploy", {"version": "1"}), ("rollout", {"version": "2", "mode": "canary",
                                                   "canary_percent": 20}),
    ):  # fmt: skip
        done = live.http.post(f"/api/v1/models/digits-vision/{path}", json=body,
                              headers=live.headers("vision"))  # fmt: skip
        assert done.status_code == 200, done.text
    return ids


def test_a_team_sees_its_own_work_as_the_api_shows_it_and_the_page_updates_itself(
    live: Live, browser: Browser, tmp_path: Path
) -> None:
    ids = _work(live, tmp_path)
    run = MlflowClient(live.settings.tracking_uri).create_run(
        MlflowClient(live.settings.tracking_uri).create_experiment("vision/digits"),
        tags={TAG_JOB_ID: ids["vision"][0]},
    )
    page = _open(browser, live, "vision")
    page.evaluate("window.loadedOnce = true")

    shown = _column(page, "experiments", "data-experiment")
    api = [e["id"] for e in live.api("/experiments", "vision")]  # type: ignore[attr-defined]
    assert shown == api == ids["vision"]
    assert not set(ids["language"]) & set(page.inner_text("main").split())
    assert page.inner_text("#who") == "team vision"
    usage = {t["name"]: t for t in live.api("/teams", "vision")}  # type: ignore[attr-defined]
    assert _column(page, "teams", "data-team") == list(usage)
    models = [(m["version"], m["role"], m["traffic_percent"])
              for m in live.api("/models", "vision")]  # type: ignore[attr-defined]  # fmt: skip
    rows = page.eval_on_selector_all(
        "#models tbody tr[data-model]",
        "rows => rows.map(r => [...r.cells].slice(1, 4).map(c => c.textContent))",
    )
    assert [(v, role, f"{traffic:g} %") for v, role, traffic in models] == [tuple(r) for r in rows]
    assert ("1", "champion", "80 %") in [tuple(r) for r in rows]

    later = live.submit("vision", tmp_path / "v1")
    page.wait_for_selector(f"#experiments tr[data-experiment='{later}']", timeout=15_000)
    assert page.evaluate("window.loadedOnce") is True  # updated in place, not reloaded

    page.click(f"#experiments tr[data-experiment='{ids['vision'][0]}']")
    page.wait_for_selector("#history tbody tr")
    assert "QUEUED" in page.inner_text("#history") and "submitted" in page.inner_text("#history")
    # expect() polls from Playwright's own script: wait_for_function would evaluate a string in
    # the page, which the page's Content-Security-Policy (no 'unsafe-eval') may refuse.
    expect(page.locator("#runs")).to_contain_text(run.info.run_id, timeout=15_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "status-page-team.png"), full_page=True)


def test_the_admin_sees_every_team_and_the_queue_says_why_work_waits(
    live: Live, browser: Browser, tmp_path: Path
) -> None:
    ids = _work(live, tmp_path)
    page = _open(browser, live, None)

    assert sorted(_column(page, "experiments", "data-experiment")) == sorted(
        ids["vision"] + ids["language"]
    )
    queue = live.api("/queue", None)
    waiting = [w["experiment"] for w in queue["waiting"]]  # type: ignore[index]
    assert waiting and _column(page, "queue", "data-experiment") == waiting
    bars = page.eval_on_selector_all(
        "#teams tbody tr[data-team] td:nth-child(2) .bar",
        "bars => bars.map(b => [b.dataset.used, b.dataset.quota])",
    )
    expected = [[f"{t['usage']['cpu']:g}", f"{t['quota']['cpu']:g}"]
                for t in queue["teams"]]  # type: ignore[index]  # fmt: skip
    assert bars == expected
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "status-page-admin.png"), full_page=True)


def test_a_refused_token_shows_the_login_again_and_no_data(live: Live, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(f"{live.url}/status")
    page.fill("#token", "fw_not-a-token")
    page.click("button[type=submit]")

    expect(page.locator("#login-error")).to_contain_text("refused", timeout=15_000)
    assert page.is_hidden("#status") and "refused" in page.inner_text("#login-error")
    assert page.evaluate("sessionStorage.getItem('flywheel-token')") is None
    headers = httpx.get(f"{live.url}/status", trust_env=False).headers
    assert "default-src 'none'" in headers["content-security-policy"]
