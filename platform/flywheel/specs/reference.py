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
    "minItems": "length ≥ {}",
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
    """(name, model schema, where it goes) of the root, then of each model it uses, depth first.

    Where it goes is its YAML key, with ``[i]`` for a list item, ``.<name>`` for a map value and
    the ``type`` that selects it when it is a member of a discriminated union.
    """
    ordered: list[tuple[str, dict[str, Any], str]] = []
    seen: set[str] = set()

    def visit(name: str, model: dict[str, Any], key: str, tag: str | None) -> None:
        seen.add(name)
        where = f"`{key}`, with `{tag}`" if key and tag else f"`{key}`" if key else ""
        ordered.append((name, model, where))
        for field, prop in model.get("properties", {}).items():
            for ref, suffix, ref_tag in _refs(prop):
                if ref not in seen and ref in defs:
                    visit(ref, defs[ref], f"{key}.{field}{suffix}".lstrip("."), ref_tag)

    visit(schema.get("title", "Spec"), schema, "", None)
    for name in sorted(set(defs) - seen):
        visit(name, defs[name], "", None)
    return ordered


def _refs(prop: dict[str, Any], suffix: str = "") -> list[tuple[str, str, str | None]]:
    """(model name, key suffix, selecting tag) of each model ``prop`` refers to, in order."""
    found: list[tuple[str, str, str | None]] = []
    if "$ref" in prop:
        found.append((prop["$ref"].removeprefix(_REF_PREFIX), suffix, None))
    tags = _tags(prop)
    for member in _members(prop):
        found += [(ref, end, tags.get(ref, tag)) for ref, end, tag in _refs(member, suffix)]
    if isinstance(prop.get("items"), dict):
        found += _refs(prop["items"], f"{suffix}[i]")
    if isinstance(prop.get("additionalProperties"), dict):
        found += _refs(prop["additionalProperties"], f"{suffix}.<name>")
    return found


def _members(prop: dict[str, Any]) -> list[dict[str, Any]]:
    """The members of a union (``anyOf``, ``oneOf``) or of an ``allOf``."""
    return [*prop.get("anyOf", []), *prop.get("oneOf", []), *prop.get("allOf", [])]


def _tags(prop: dict[str, Any]) -> dict[str, str]:
    """For a discriminated union, ``type: asha`` (the key and value that select it) by model."""
    discriminator = prop.get("discriminator", {})
    key = discriminator.get("propertyName")
    mapping = discriminator.get("mapping", {})
    return {ref.removeprefix(_REF_PREFIX): f"{key}: {tag}" for tag, ref in mapping.items()}


def _section(name: str, model: dict[str, Any], where: str) -> list[str]:
    lines = [f"## {name}", ""]
    if where:
        lines += [f"Key: {where}.", ""]
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
    if _members(prop):
        return _or(list(dict.fromkeys(_type(member) for member in _members(prop))))
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map of string to {_type(prop['additionalProperties'])}"
    return _or(kind) if isinstance(kind, list) else str(kind)


def _constraints(prop: dict[str, Any], prefix: str = "") -> list[str]:
    """The constraints of ``prop`` and of its union members; a map's apply to each value."""
    found = [prefix + text.format(prop[k]) for k, text in _CONSTRAINTS.items() if k in prop]
    for member in _members(prop):
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
