"""Every example spec under experiments/ validates, task code and strategy hooks included."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.specs.validate import validate_experiment

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((REPO / "experiments").glob("*/*.yaml"))


def test_the_examples_are_found() -> None:
    names = {f"{p.parent.name}/{p.name}" for p in EXAMPLES}
    assert {"digits/train.yaml", "charlm/train-fsdp-tp.yaml", "charlm/train-tp.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_spec_validates(path: Path) -> None:
    validate_experiment(path)
