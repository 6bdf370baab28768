"""Storage paths: built in one place, the same for local and s3:// roots."""

from __future__ import annotations

import pytest

from flywheel.errors import FlywheelError
from flywheel.storage_layout import StorageLayout, bucket_of, join, parse_root


@pytest.mark.parametrize(
    ("root", "scheme", "bucket", "prefix"),
    [
        ("/data/flywheel", "", None, "/data/flywheel"),
        ("/data/flywheel/", "", None, "/data/flywheel"),
        ("relative/root", "", None, "relative/root"),
        ("file:///data/fw", "file", None, "/data/fw"),
        ("s3://bucket", "s3", "bucket", ""),
        ("s3://bucket/team/prefix/", "s3", "bucket", "team/prefix"),
    ],
)
def test_roots_are_taken_apart(root: str, scheme: str, bucket: str | None, prefix: str) -> None:
    parsed = parse_root(root)
    assert (parsed.scheme, parsed.bucket, parsed.prefix) == (scheme, bucket, prefix)
    assert parsed.is_s3 == (scheme == "s3")


@pytest.mark.parametrize(
    ("root", "message"),
    [("gs://bucket/x", "scheme 'gs'"), ("s3:///no-bucket", "names no bucket")],
)
def test_unknown_roots_say_what_is_accepted(root: str, message: str) -> None:
    with pytest.raises(FlywheelError, match=message):
        parse_root(root)


def test_join_ignores_stray_slashes_and_empty_parts() -> None:
    assert join("s3://b/p/", "/a/", "", "b") == "s3://b/p/a/b"
    assert join("/root", "x") == "/root/x"


def test_bucket_of() -> None:
    assert bucket_of("s3://models/a/b") == "models"
    assert bucket_of("/local/a") is None


def test_every_path_of_an_s3_root() -> None:
    layout = StorageLayout("s3://bkt/fw")
    assert layout.bundle("job-1") == "s3://bkt/fw/bundles/job-1"
    assert layout.checkpoints("vision", "digits") == "s3://bkt/fw/checkpoints/vision/digits"
    assert layout.search_journal("vision", "digits") == "s3://bkt/fw/search/vision/digits/journal"
    assert layout.tune("vision", "digits") == "s3://bkt/fw/search/vision/digits/tune"
    assert layout.serving_routes() == "s3://bkt/fw/serving/routes.json"
    assert layout.feedback("m") == "s3://bkt/fw/serving/feedback/m"
    assert layout.mlflow_artifacts() == "s3://bkt/fw/mlflow-artifacts"


def test_a_local_root_keeps_the_journal_in_one_file() -> None:
    layout = StorageLayout("/srv/fw")
    assert layout.search_journal("t", "e") == "/srv/fw/search/t/e/journal.log"
    assert not layout.is_s3
