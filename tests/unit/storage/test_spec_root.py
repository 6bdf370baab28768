"""A spec's storage.root is checked where the spec is loaded, with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.errors import SpecError
from flywheel.specs import load_spec

SPEC = "name: digits\nteam: vision\ntask: {module: task}\nstorage:\n  root: {root}\n"


@pytest.mark.parametrize("root", ["/data/fw", "s3://bucket/prefix", "file:///data/fw"])
def test_local_and_s3_roots_load(tmp_path: Path, root: str) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(SPEC.replace("{root}", root))
    assert load_spec(path).storage.root == root


def test_another_scheme_is_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(SPEC.replace("{root}", "gs://bucket/prefix"))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}:5: storage.root: ")
    assert "use a local directory or s3://bucket/prefix" in str(caught.value)
