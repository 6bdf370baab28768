"""Reads and writes under a storage root, on a local folder and on moto's S3 server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.s3_server import SECRET_ACCESS_KEY, S3Server

from flywheel.errors import StorageError
from flywheel.storage import (
    create_bytes,
    download_tree,
    join,
    list_names,
    read_bytes,
    read_texts,
    upload_tree,
    write_bytes,
    write_text,
)
from flywheel.storage.objects import MANIFEST, filesystem, is_complete_tree, redact


def test_write_then_read(root: str) -> None:
    url = join(root, "a", "b.txt")
    assert read_bytes(url) is None
    write_text(url, "one")
    write_text(url, "two")  # replaces
    assert read_bytes(url) == b"two"
    assert list_names(join(root, "a")) == ["b.txt"]


def test_create_only_refuses_what_exists(root: str) -> None:
    url = join(root, "entry.json")
    assert create_bytes(url, b"first")
    assert not create_bytes(url, b"second")
    assert read_bytes(url) == b"first"
    assert list_names(root) == ["entry.json"], "a lost create leaves nothing behind"


def test_read_texts_reads_a_folder_in_name_order(root: str) -> None:
    for name in ("b.json", "a.json", "c.txt"):
        write_text(join(root, "f", name), name)
    assert read_texts(join(root, "f"), "*.json") == ["a.json", "b.json"]
    assert read_texts(join(root, "missing")) == []


def test_list_names_of_a_missing_folder_is_empty(root: str) -> None:
    assert list_names(join(root, "nothing-here")) == []


def test_a_local_write_never_shows_a_partial_file(tmp_path: Path) -> None:
    url = str(tmp_path / "f" / "data.bin")
    write_bytes(url, b"x" * 1000)
    write_bytes(url, b"y" * 10)
    assert sorted(os.listdir(tmp_path / "f")) == ["data.bin"], "no temporary file is left"
    assert Path(url).read_bytes() == b"y" * 10


def test_a_tree_round_trips_with_its_manifest(root: str, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "train.yaml").write_text("name: x\n")
    (source / "pkg" / "task.py").write_bytes(b"print(1)\n")
    url = join(root, "bundles", "job-1")

    upload_tree(source, url)

    manifest = json.loads(read_bytes(join(url, MANIFEST)) or b"")
    assert sorted(manifest["files"]) == ["pkg/task.py", "train.yaml"]
    assert is_complete_tree(url)
    copy = download_tree(url, tmp_path / "copy")
    assert (copy / "pkg" / "task.py").read_bytes() == b"print(1)\n"
    assert not (copy / MANIFEST).exists(), "the manifest stays in the store"


def test_a_tree_without_its_manifest_is_refused(root: str, tmp_path: Path) -> None:
    url = join(root, "bundles", "half")
    write_text(join(url, "train.yaml"), "name: x\n")  # an upload that died before its manifest
    assert not is_complete_tree(url)
    with pytest.raises(StorageError, match="incomplete"):
        download_tree(url, tmp_path / "copy")


def test_a_tree_whose_file_changed_is_refused(root: str, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("a")
    url = upload_tree(source, join(root, "t"))
    write_text(join(url, "a.txt"), "tampered")
    assert not is_complete_tree(url)
    with pytest.raises(StorageError, match=r"a\.txt does not match the manifest"):
        download_tree(url, tmp_path / "copy")


def test_uploading_again_replaces_the_tree(root: str, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "old.txt").write_text("old")
    (second / "new.txt").write_text("new")
    url = join(root, "t")
    upload_tree(first, url)
    upload_tree(second, url)
    assert list_names(url) == [MANIFEST, "new.txt"]


def test_an_unreachable_s3_server_fails_cleanly_naming_bucket_and_operation(
    s3_server: S3Server, s3_bucket: str
) -> None:
    url = f"s3://{s3_bucket}/fw/x.json"
    write_text(url, "{}")
    s3_server.stop()
    try:
        with pytest.raises(StorageError) as caught:
            read_bytes(url)
    finally:
        s3_server.start()
    message = str(caught.value)
    assert message.startswith(f"cannot read {url} in bucket '{s3_bucket}'")
    assert "EndpointConnectionError" in message
    assert SECRET_ACCESS_KEY not in message and os.environ["AWS_ACCESS_KEY_ID"] not in message
    assert caught.value.bucket == s3_bucket and caught.value.operation == "read"
    assert read_bytes(url) == b"{}", "nothing was lost: the server is back with the object"


def test_a_missing_bucket_is_a_storage_error(s3_bucket: str) -> None:
    with pytest.raises(StorageError, match="cannot write s3://no-such-bucket-fw/a in bucket"):
        write_text("s3://no-such-bucket-fw/a", "x")


def test_redact_removes_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    assert redact("denied for AKIAEXAMPLE with s3cr3t-value") == "denied for *** with ***"


def test_the_s3_filesystem_retries_with_the_configured_attempts(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "7")
    fs, path = filesystem(f"s3://{s3_bucket}/p")
    assert path == f"{s3_bucket}/p"
    retries = fs.config_kwargs["retries"]  # type: ignore[attr-defined]
    assert retries == {"mode": "standard", "max_attempts": 7}


def test_an_upload_that_cannot_reach_s3_leaves_the_kept_tree_as_it_was(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "a.txt").write_text("kept")
    (second / "a.txt").write_text("new")
    url = upload_tree(first, f"s3://{s3_bucket}/fw/bundles/job-1")
    s3_server.stop()
    try:
        with pytest.raises(StorageError, match="cannot upload"):
            upload_tree(second, url)
    finally:
        s3_server.start()
    assert is_complete_tree(url)
    assert download_tree(url, tmp_path / "copy").joinpath("a.txt").read_text() == "kept"
