"""The Markdown spec reference: generated from the models, and kept up to date."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from flywheel.specs import ExperimentSpec
from flywheel.specs.reference import experiment_schema, schema_to_markdown

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "spec-reference.md"


def sections(markdown: str) -> dict[str, str]:
    """Each ``## Title`` section's text, by title."""
    parts = markdown.split("\n## ")[1:]
    return {part.split("\n", 1)[0]: part for part in parts}


def models(root: type[BaseModel] = ExperimentSpec) -> list[type[BaseModel]]:
    """``root`` and its nested section models, as the reference orders them (depth first).

    A field's models are found through ``| None``, unions, lists and maps too.
    """
    found = [root]
    for info in root.model_fields.values():
        for model in models_in(info.annotation):
            found += [m for m in models(model) if m not in found]
    return found


def models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in models_in(arg)]


def test_committed_reference_is_up_to_date() -> None:
    expected = schema_to_markdown(experiment_schema())
    actual = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    assert actual == expected, "docs/spec-reference.md is out of date: run `make docs`"


def test_reference_is_deterministic() -> None:
    assert schema_to_markdown(experiment_schema()) == schema_to_markdown(experiment_schema())


def test_reference_says_it_is_generated() -> None:
    markdown = schema_to_markdown(experiment_schema())
    assert "`flywheel schema --markdown`" in markdown
    assert "do not edit it by hand" in markdown


def test_sections_follow_the_fields_depth_first() -> None:
    titles = list(sections(schema_to_markdown(experiment_schema())))
    assert titles == [model.__name__ for model in models()]


@pytest.mark.parametrize("model", models(), ids=lambda model: model.__name__)
def test_every_field_has_a_row_in_its_section(model: type[BaseModel]) -> None:
    section = sections(schema_to_markdown(experiment_schema()))[model.__name__]
    rows = [row.split(" | ")[0].strip("| `") for row in section.splitlines() if row[:3] == "| `"]
    assert rows == list(model.model_fields)


def test_rendering_of_types_defaults_constraints_and_links() -> None:
    schema = {
        "title": "RootSpec",
        "description": "The ``root``.",
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": "^(a|b)$", "description": "A or B."},
            "mode": {"enum": ["x", "y"], "default": "x", "description": "Mode."},
            "rate": {
                "anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}],
                "default": None,
                "description": "Rate; null: off.",
            },
            "limits": {
                "type": "object",
                "additionalProperties": {"type": "integer", "minimum": 1},
                "description": "Limits.",
            },
            "child": {"$ref": "#/$defs/ChildSpec", "description": "The child."},
        },
        "$defs": {
            "ChildSpec": {
                "title": "ChildSpec",
                "description": "A child.",
                "type": "object",
                "properties": {
                    "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags."}
                },
            }
        },
    }
    assert sections(schema_to_markdown(schema)) == {
        "RootSpec": "\n".join(
            [
                "RootSpec",
                "",
                "The `root`.",
                "",
                "| Field | Type | Default | Constraints | Description |",
                "|---|---|---|---|---|",
                "| `name` | string | **required** | matches `^(a\\|b)$` | A or B. |",
                '| `mode` | one of `"x"`, `"y"` | `"x"` |  | Mode. |',
                "| `rate` | number or null | `null` | > 0 | Rate; null: off. |",
                "| `limits` | map of string to integer | `{}` | each value ≥ 1 | Limits. |",
                "| `child` | [ChildSpec](#childspec) | see its section |  | The child. |",
                "",
            ]
        ),
        "ChildSpec": "\n".join(
            [
                "ChildSpec",
                "",
                "Key: `child`.",
                "",
                "A child.",
                "",
                "| Field | Type | Default | Constraints | Description |",
                "|---|---|---|---|---|",
                "| `tags` | list of string | `[]` |  | Tags. |",
                "",
            ]
        ),
    }


def test_discriminated_unions_list_items_and_map_values_say_where_they_go() -> None:
    markdown = schema_to_markdown(experiment_schema())
    found = sections(markdown)
    assert "Key: `search.space.<name>`, with `type: loguniform`." in found["LogUniformParam"]
    assert "Key: `search.stages[i]`." in found["Stage"]
    assert "Key: `search.stages[i].scheduler`, with `type: asha`." in found["AshaScheduler"]
    assert "Key: `search.stages[i].narrow`." in found["Narrowing"]
    scheduler = (
        "| `scheduler` | [FifoScheduler](#fifoscheduler) or [AshaScheduler](#ashascheduler) "
        '| `{"type": "fifo"}` |  | When trials stop early. |'
    )
    assert scheduler in found["Stage"].splitlines()
    space = next(row for row in found["SearchSpec"].splitlines() if row.startswith("| `space`"))
    assert space.startswith(
        "| `space` | map of string to [UniformParam](#uniformparam), "
        "[LogUniformParam](#loguniformparam), [IntParam](#intparam) or "
        "[ChoiceParam](#choiceparam) | **required** |"
    )
