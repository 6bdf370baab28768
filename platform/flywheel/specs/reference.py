"""Render the experiment spec's JSON Schema as a Markdown reference.

The schema is generated from the pydantic models, so the models stay the one source of truth:
``docs/spec-reference.md`` is this module's output, and a test checks that it is up to date.
"""

from __future__ import annotations

import json
from typing import Any

from flywheel.specs.experiment import ExperimentSpec

__all__ = ["experiment_schema", "schema_to_markdown"]

_REF_PREFIX = "#/$defs/"

#: JSON Schema constraint keywords, as the reference shows them.
_CONSTRAINTS = {
    "minimum": "≥ {}",
    "exclusiveMinimum": "> {}",
    "maximum": "≤ {}",
    "exclusiveMaximum": "< {}",
    "minLength": "length ≥ {}",
    "maxLength": "length ≤ {}",
    "pattern": "matches `{}`",
}


def experiment_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`ExperimentSpec`, generated from the models."""
    return ExperimentSpec.model_json_schema()


def schema_to_markdown(schema: dict[str, Any]) -> str:
    """A Markdown reference of ``schema``: the root model first, then each model it refers to.

    Models follow in the order their fields first appear (depth first), so a section comes right
    after the section that introduces it. The output depends only on ``schema``.
    """
    defs = schema.get("$defs", {})
    title = schema.get("title", "Spec")
    lines = [
        f"# {title} reference",
        "",
        f"Generated from the `{title}` models by `flywheel schema --markdown`;",
        "do not edit it by hand: run `make docs` after changing a model.",
        "",
        "A field that is a model has its own section; leave it out to take every default there.",
    ]
    for name, model, key in _models_in_order(schema, defs):
        lines += ["", *_section(name, model, key)]
    return "\n".join(lines) + "\n"


def _models_in_order(
    schema: dict[str, Any], defs: dict[str, Any]
) -> list[tuple[str, dict[str, Any], str]]:
    """(name, model schema, first YAML key) of the root, then of each model it uses, depth first."""
    ordered: list[tuple[str, dict[str, Any], str]] = []
    seen: set[str] = set()

    def visit(name: str, model: dict[str, Any], key: str) -> None:
        seen.add(name)
        ordered.append((name, model, key))
        for field, prop in model.get("properties", {}).items():
            for ref in _refs(prop):
                if ref not in seen and ref in defs:
                    visit(ref, defs[ref], f"{key}.{field}" if key else field)

    visit(schema.get("title", "Spec"), schema, "")
    for name in sorted(set(defs) - seen):
        visit(name, defs[name], "")
    return ordered


def _refs(prop: dict[str, Any]) -> list[str]:
    """Names of the models ``prop`` refers to, in the order they appear."""
    found = [prop["$ref"].removeprefix(_REF_PREFIX)] if "$ref" in prop else []
    for member in prop.get("anyOf", []) + prop.get("allOf", []):
        found += _refs(member)
    for nested in ("items", "additionalProperties"):
        if isinstance(prop.get(nested), dict):
            found += _refs(prop[nested])
    return found


def _section(name: str, model: dict[str, Any], key: str) -> list[str]:
    lines = [f"## {name}", ""]
    if key:
        lines += [f"Key: `{key}`.", ""]
    if model.get("description"):
        lines += [_text(model["description"]), ""]
    lines += ["| Field | Type | Default | Constraints | Description |", "|---|---|---|---|---|"]
    required = set(model.get("required", []))
    for field, prop in model.get("properties", {}).items():
        cells = [
            f"`{field}`",
            _type(prop),
            "**required**" if field in required else _default(prop),
            ", ".join(_constraints(prop)),
            _text(prop.get("description", "")),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _type(prop: dict[str, Any]) -> str:
    """A short type: ``integer``, ``string or null``, ``map of string to number``, a link."""
    if "$ref" in prop:
        name = prop["$ref"].removeprefix(_REF_PREFIX)
        return f"[{name}](#{name.lower()})"
    if "const" in prop:
        return f"`{_json(prop['const'])}`"
    if "enum" in prop:
        return "one of " + ", ".join(f"`{_json(v)}`" for v in prop["enum"])
    if "anyOf" in prop or "allOf" in prop:
        members = [_type(member) for member in prop.get("anyOf", []) + prop.get("allOf", [])]
        return _or(list(dict.fromkeys(members)))
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map of string to {_type(prop['additionalProperties'])}"
    return _or(kind) if isinstance(kind, list) else str(kind)


def _constraints(prop: dict[str, Any], prefix: str = "") -> list[str]:
    """The constraints of ``prop`` and of its union members; a map's apply to each value."""
    found = [prefix + text.format(prop[k]) for k, text in _CONSTRAINTS.items() if k in prop]
    for member in prop.get("anyOf", []) + prop.get("allOf", []):
        found += _constraints(member, prefix)
    if isinstance(prop.get("items"), dict):
        found += _constraints(prop["items"], "each item ")
    if isinstance(prop.get("additionalProperties"), dict):
        found += _constraints(prop["additionalProperties"], "each value ")
    return found


def _default(prop: dict[str, Any]) -> str:
    if "default" in prop:
        return f"`{_json(prop['default'])}`"
    if "$ref" in prop:
        return "see its section"
    if prop.get("type") == "object":
        return "`{}`"
    if prop.get("type") == "array":
        return "`[]`"
    return ""


def _or(items: list[str]) -> str:
    return f"{', '.join(items[:-1])} or {items[-1]}" if len(items) > 1 else "".join(items)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _text(text: str) -> str:
    """Docstring text as one Markdown line: reST ``code`` becomes `code`."""
    return " ".join(text.replace("``", "`").split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
