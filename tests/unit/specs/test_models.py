"""The spec models: documented, strict, and the only source of the JSON Schema."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from flywheel.specs import ExperimentSpec
from flywheel.specs.reference import experiment_schema

REPO = Path(__file__).resolve().parents[3]


def spec_models(root: type[BaseModel] = ExperimentSpec) -> list[type[BaseModel]]:
    """``root`` and every model reachable through its fields, in field order."""
    found: list[type[BaseModel]] = []

    def visit(annotation: object) -> None:
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if is_model and annotation not in found:
            found.append(annotation)
            for info in annotation.model_fields.values():
                visit(info.annotation)
        for arg in typing.get_args(annotation):
            visit(arg)

    visit(root)
    return found


MODELS = spec_models()
FIELDS = [(model, name) for model in MODELS for name in model.model_fields]


def test_the_walk_reaches_every_section() -> None:
    names = {model.__name__ for model in MODELS}
    assert names >= {"ExperimentSpec", "TaskSpec", "TrainSpec", "OptimizerSpec", "OverfitSpec"}


@pytest.mark.parametrize(
    ("model", "name"), FIELDS, ids=[f"{model.__name__}.{name}" for model, name in FIELDS]
)
def test_every_field_is_described(model: type[BaseModel], name: str) -> None:
    description = model.model_fields[name].description
    assert description and description.strip(), f"{model.__name__}.{name} needs a description"


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_every_model_is_described(model: type[BaseModel]) -> None:
    assert model.__doc__ and model.__doc__.strip()


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_every_model_rejects_unknown_keys(model: type[BaseModel]) -> None:
    assert model.model_config.get("extra") == "forbid"
    with pytest.raises(ValidationError) as info:
        model.model_validate({"not_a_field": 1})
    unknown = [e for e in info.value.errors() if e["type"] == "extra_forbidden"]
    assert [e["loc"] for e in unknown] == [("not_a_field",)]


def test_json_schema_is_generated_from_the_models() -> None:
    schema = experiment_schema()
    assert schema == ExperimentSpec.model_json_schema()
    sections = {ExperimentSpec.__name__: schema, **schema["$defs"]}
    assert set(sections) == {model.__name__ for model in MODELS}
    for model in MODELS:
        properties = sections[model.__name__]["properties"]
        assert list(properties) == list(model.model_fields)
        for name, info in model.model_fields.items():
            assert properties[name]["description"] == info.description


def test_no_hand_written_schema_in_the_package() -> None:
    package = REPO / "platform" / "flywheel"
    hand_written = [p for p in package.rglob("*.json") if "schema" in p.name.lower()]
    assert hand_written == [], "generate the schema from the pydantic models instead"
