"""The teams file: strict, with FILE:LINE errors like experiment specs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flywheel.errors import SpecError
from flywheel.specs import load_spec
from flywheel.specs.teams import Resources, TeamsSpec, load_teams

REPO = Path(__file__).resolve().parents[3]

VALID = """\
teams:
  - name: vision
    quota: {cpu: 2}
  - name: language
    priority: high
    quota: {cpu: 2, gpu: 1, memory_gib: 4}
    borrowing_limit: {cpu: 1}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "teams.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_teams(path)
    return [str(problem) for problem in caught.value.problems]


def test_the_shipped_teams_file_is_valid_and_owns_every_example() -> None:
    teams = load_teams(REPO / "cluster" / "teams.yaml")
    names = {team.name for team in teams.teams}
    assert "vision" in names and len(names) >= 2
    for spec_path in sorted((REPO / "experiments").glob("*/*.yaml")):
        assert load_spec(spec_path).team in names, spec_path


def test_defaults_fill_priority_classes_and_limits(tmp_path: Path) -> None:
    teams = load_teams(write(tmp_path, VALID))
    vision = teams.team("vision")
    assert vision.priority == "normal" and vision.cohort == "shared"
    assert vision.borrowing_limit == Resources()
    assert vision.lending_limit is None
    assert teams.priority_value(teams.team("language").priority) == 1000
    assert [t.name for t in teams.cohort_members("shared")] == ["vision", "language"]


def test_unknown_field_names_its_line(tmp_path: Path) -> None:
    typo = VALID.replace("    quota: {cpu: 2}\n", "    quota: {cpu: 2}\n    qouta: 1\n")
    path = write(tmp_path, typo)
    found = problems(path)
    assert len(found) == 1
    assert found[0].startswith(f"{path}:4: teams[0].qouta")


def test_unknown_priority_class_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("priority: high", "priority: urgent"))
    (found,) = problems(path)
    assert found.startswith(f"{path}:5: teams[1].priority")
    assert "unknown priority class 'urgent'" in found


def test_duplicate_team_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("name: language", "name: vision"))
    (found,) = problems(path)
    assert "teams[1].name" in found and "appears twice" in found


def test_reserved_name_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("name: language", "name: admin"))
    (found,) = problems(path)
    assert "'admin' is reserved" in found


def test_lending_more_than_quota_is_refused(tmp_path: Path) -> None:
    text = VALID.replace("    borrowing_limit: {cpu: 1}\n", "    lending_limit: {cpu: 3}\n")
    (found,) = problems(write(tmp_path, text))
    assert "teams[1].lending_limit" in found and "cannot lend more than its quota" in found


def test_negative_quota_is_refused(tmp_path: Path) -> None:
    (found,) = problems(write(tmp_path, VALID.replace("quota: {cpu: 2}", "quota: {cpu: -1}")))
    assert "teams[0].quota.cpu" in found


def test_fits_within_compares_every_resource() -> None:
    assert Resources(cpu=1, gpu=1).fits_within(Resources(cpu=1, gpu=1, memory_gib=1))
    assert not Resources(gpu=2).fits_within(Resources(cpu=8, gpu=1))
    assert TeamsSpec.model_json_schema()["required"] == ["teams"]
