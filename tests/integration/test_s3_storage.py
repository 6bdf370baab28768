"""An embedded platform whose storage root is a bucket of moto's S3 server.

The platform of this module is its own (its Ray and MLflow must start with the AWS variables
that point at the S3 server): about 20 s to start on 2 cores, 3 s to stop. On the shared,
heavily loaded 2-core machine the search test took 11.5 minutes and the outage test 9.5.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from optuna.storages import JournalStorage
from tests.s3_server import S3Server, environment

from flywheel.client import Client
from flywheel.local import EmbeddedPlatform
from flywheel.settings import Settings
from flywheel.storage.journal import ObjectJournalBackend
from flywheel.storage.objects import MANIFEST, is_complete_tree

from .helpers import (
    EXPERIMENTS,
    copy_experiment,
    finished_trials,
    mlflow_admin,
    run_cli,
    run_of_job,
    search_spec,
)

pytestmark = pytest.mark.integration

#: Attempts per S3 request in the platform: enough to ride out the outage the test plays.
MAX_ATTEMPTS = 10
#: How long the S3 server is away in the outage test.
OUTAGE_S = 5.0


@dataclass(frozen=True)
class S3Platform:
    settings: Settings
    server: S3Server
    bucket: str
    root: str


@pytest.fixture(scope="module")
def s3_platform(
    s3_server: S3Server, free_port_settings: Callable[..., Settings]
) -> Iterator[S3Platform]:
    """A platform with ``FLYWHEEL_STORAGE_ROOT=s3://<new bucket>/fw``; stopped after."""
    bucket = s3_server.new_bucket()
    root = f"s3://{bucket}/fw"
    env = {**s3_server.env(MAX_ATTEMPTS), "AWS_RETRY_MODE": "standard"}
    home = Path(tempfile.mkdtemp(prefix="fw-s3-"))
    settings = free_port_settings(home, storage_root=root)
    platform = EmbeddedPlatform(settings)
    try:
        with environment(env):  # Ray and MLflow inherit the variables
            platform.up()
            with mlflow_admin(settings):
                yield S3Platform(settings, s3_server, bucket, root)
    finally:
        platform.down()
        if not s3_server.running:
            s3_server.start()
        s3_server.delete_bucket(bucket)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.timeout(900)
def test_a_search_on_s3_is_stopped_resumed_and_keeps_everything_in_the_bucket(
    s3_platform: S3Platform, tmp_path: Path
) -> None:
    spec = copy_experiment(
        EXPERIMENTS / "slow_digits", tmp_path / "slow", search_spec("s3-resume", trials=5)
    )
    client = Client(s3_platform.settings)
    first = client.submit(spec)
    for update in client.follow(first, poll_s=0.5):
        if any(e.stage == "search" and (e.epoch or 0) >= 2 for e in update.events):
            break
    client.stop(first)
    assert list(client.follow(first, poll_s=0.5))[-1].job.state == "STOPPED"
    journal = f"{s3_platform.root}/search/testing/s3-resume/journal"
    before = _finished(journal, f"{first}:coarse")
    assert 2 <= len(before) < 5

    result = run_cli(s3_platform.settings, "resume", "s3-resume", "--team", "testing", "--follow")

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = _finished(journal, f"{first}:coarse")
    assert len(after) == 5, "the budget of the stage is met exactly"
    assert before.items() <= after.items(), "finished trials were kept, not run again"
    keys = s3_platform.server.keys(s3_platform.bucket)
    second = next(j.id for j in client.jobs() if j.name == "s3-resume")
    for job_id in (first, second):
        assert is_complete_tree(f"{s3_platform.root}/bundles/{job_id}")
    assert any(k.startswith("fw/search/testing/s3-resume/tune/") for k in keys)
    assert any(k.startswith(f"fw/checkpoints/testing/s3-resume/{second}/") for k in keys)
    assert any(k.endswith("/checkpoint.pt") for k in keys), "the final model's checkpoint"
    parent = run_of_job(s3_platform.settings.tracking_uri, first)
    spec_key = f"{parent.info.run_id}/artifacts/spec/train.yaml"
    assert any(k.startswith("fw/mlflow-artifacts/") and k.endswith(spec_key) for k in keys)
    _assert_nothing_half_written(s3_platform, keys)


@pytest.mark.timeout(900)
def test_an_s3_outage_mid_run_is_ridden_out_or_fails_cleanly_and_resumes(
    s3_platform: S3Platform, tmp_path: Path
) -> None:
    spec = copy_experiment(
        EXPERIMENTS / "slow_digits", tmp_path / "slow", search_spec("s3-outage", trials=3)
    )
    client = Client(s3_platform.settings)
    job_id = client.submit(spec)
    for update in client.follow(job_id, poll_s=0.5):
        if any(e.stage == "search" and (e.epoch or 0) >= 1 for e in update.events):
            break
    assert not update.job.finished, "the outage must fall in the middle of the run"
    s3_platform.server.stop()
    try:
        time.sleep(OUTAGE_S)  # not a timing assertion: how long S3 stays away
    finally:
        s3_platform.server.start()
    final = list(client.follow(job_id, poll_s=0.5))[-1].job

    if final.state != "SUCCEEDED":  # failed cleanly: then it must resume
        result = run_cli(s3_platform.settings, "resume", "s3-outage", "--team", "testing")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        resumed = next(j.id for j in client.jobs() if j.name == "s3-outage")
        final = list(client.follow(resumed, poll_s=1))[-1].job
    assert final.state == "SUCCEEDED", final.message
    journal = f"{s3_platform.root}/search/testing/s3-outage/journal"
    assert len(_finished(journal, f"{job_id}:coarse")) == 3
    _assert_nothing_half_written(s3_platform, s3_platform.server.keys(s3_platform.bucket))


def _assert_nothing_half_written(platform: S3Platform, keys: list[str]) -> None:
    """Every bundle is complete, every journal entry is whole JSON, no temporary names."""
    assert keys
    bundles = {k.split("/")[2] for k in keys if k.startswith("fw/bundles/")}
    for job_id in bundles:
        assert is_complete_tree(f"{platform.root}/bundles/{job_id}"), job_id
        assert f"fw/bundles/{job_id}/{MANIFEST}" in keys
    entries = [k for k in keys if "/journal/" in k]
    assert entries
    body = platform.server.client()
    for key in entries:
        text = body.get_object(Bucket=platform.bucket, Key=key)["Body"].read()  # type: ignore[attr-defined]
        assert isinstance(json.loads(text), dict), key
    assert not [k for k in keys if k.endswith(".tmp")]


def _finished(journal_url: str, study_name: str) -> dict[int, dict[str, object]]:
    """Trials that finished in the study (not copied in, not interrupted): number -> params."""
    return finished_trials(JournalStorage(ObjectJournalBackend(journal_url)), study_name)
