"""Load specs from YAML, reporting every problem as ``FILE:LINE: field.path: message``.

The YAML is composed into nodes first so that each value keeps the line it came from; pydantic's
errors are then mapped back to those lines. Every problem found is reported at once, sorted by
line. Nothing here raises anything but :class:`SpecError`.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from flywheel.errors import SpecError, SpecProblem
from flywheel.specs.base import IMPORT_PATH_PATTERN, SLUG_PATTERN, NestedValueError
from flywheel.specs.experiment import REGISTRY_NAME_PATTERN, ExperimentSpec

ModelT = TypeVar("ModelT", bound=BaseModel)
Location = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"

#: What each type pydantic tries in a ``bool | int | float | str`` union is called in messages.
_SCALAR_NAMES = {"bool": "boolean", "int": "number", "float": "number", "str": "string"}

#: The errors of a discriminated union whose ``type`` (its discriminator) is missing or unknown.
_TAG_ERRORS = ("union_tag_not_found", "union_tag_invalid")

#: Plain words for the patterns of the spec models, instead of the regular expression.
_PATTERN_RULES = {
    SLUG_PATTERN: "must be lower case letters, digits and dashes, start and end with a letter "
    "or digit, and be at most 63 characters",
    IMPORT_PATH_PATTERN: "must be a dotted Python import path such as 'task' or 'models.digits', "
    "without '.py' or dashes",
    REGISTRY_NAME_PATTERN: "must start with a letter or digit and hold only letters, digits, "
    "'_', '.' and '-'",
}

#: What usually causes PyYAML's terser syntax errors.
_SYNTAX_HINTS = {
    "mapping values are not allowed here": "check the indentation, or quote a value that "
    "contains ': '",
    "expected <block end>": "check the indentation",
    "found character '\\t'": "indent with spaces, not tabs",
}


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate an experiment spec file."""
    return load_model(Path(path), ExperimentSpec)


def load_model(path: Path, model: type[ModelT]) -> ModelT:
    """Read ``path`` as YAML and validate it as ``model``; raise :class:`SpecError` if invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        reason = e.strerror or str(e)
        raise SpecError(
            [SpecProblem(str(path), None, "", f"cannot read the file: {reason}")]
        ) from e
    except UnicodeDecodeError as e:
        problem = SpecProblem(str(path), None, "", "cannot read the file: it is not UTF-8 text")
        raise SpecError([problem]) from e
    return parse_model(text, str(path), model)


def parse_model(text: str, file: str, model: type[ModelT]) -> ModelT:
    """Validate YAML ``text`` (named ``file`` in messages) as ``model``."""
    data, lines, problems = _compose(text, file)
    if not isinstance(data, dict):
        problems.append(SpecProblem(file, lines.get((), 1), "", _not_a_mapping(data)))
        raise SpecError(_by_line(problems))
    try:
        spec = model.model_validate(data)
    except ValidationError as e:
        problems += _validation_problems(e.errors(), file, lines, model)
        raise SpecError(_by_line(problems)) from e
    if problems:
        raise SpecError(_by_line(problems))
    return spec


def _compose(text: str, file: str) -> tuple[Any, dict[Location, int], list[SpecProblem]]:
    """Parse YAML into plain data, a map from each location to its 1-based line, and problems."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise SpecError(
            [SpecProblem(file, line, "", f"YAML syntax error: {_syntax_reason(e)}")]
        ) from e
    except yaml.YAMLError as e:
        raise SpecError([SpecProblem(file, None, "", f"YAML syntax error: {e}")]) from e
    if node is None:
        return None, {}, []
    builder = _Builder(file)
    builder.lines[()] = node.start_mark.line + 1
    data = builder.construct(node, (), frozenset())
    return data, builder.lines, builder.problems


def _syntax_reason(e: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem, with where an unclosed bracket or quote opened and a hint when known.

    Block contexts are left out: they name the enclosing mapping, not the mistake.
    """
    reason = e.problem or e.context or "invalid YAML"
    opened, failed = e.context_mark, e.problem_mark
    if e.problem and e.context:
        if e.problem.startswith("but "):
            reason = f"{e.context}, {e.problem}"
        elif "block" not in e.context and opened and failed and opened.line != failed.line:
            reason = f"{e.problem} ({e.context} that starts on line {opened.line + 1})"
    hints = [hint for start, hint in _SYNTAX_HINTS.items() if reason.startswith(start)]
    return f"{reason}; {hints[0]}" if hints else reason


@dataclass
class _Builder:
    """Turns YAML nodes into data, recording each location's line and every problem met."""

    file: str
    lines: dict[Location, int] = field(default_factory=dict)
    problems: list[SpecProblem] = field(default_factory=list)

    def construct(self, node: yaml.Node, loc: Location, ancestors: frozenset[int]) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc, ancestors | {id(node)})
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.lines[(*loc, i)] = item.start_mark.line + 1
                if self._is_recursive(item, (*loc, i), ancestors | {id(node)}):
                    continue
                items.append(self.construct(item, (*loc, i), ancestors | {id(node)}))
            return items
        return self._scalar(node, loc)

    def _mapping(self, node: yaml.MappingNode, loc: Location, ancestors: frozenset[int]) -> Any:
        """Keys are taken as written (``on`` stays "on"): every key in a spec is a name."""
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(line, loc, "a key must be a plain name, not a mapping or a list")
                continue
            key = key_node.value
            if key_node.tag == _MERGE_TAG:
                self._problem(line, (*loc, key), "YAML merge keys are not supported; write it out")
                continue
            if key in out:
                self._problem(line, (*loc, key), "duplicate key")
                continue
            self.lines[(*loc, key)] = line
            if not self._is_recursive(value_node, (*loc, key), ancestors):
                out[key] = self.construct(value_node, (*loc, key), ancestors)
        return out

    def _is_recursive(self, node: yaml.Node, loc: Location, ancestors: frozenset[int]) -> bool:
        """An alias to a node that contains it (``a: &x {b: *x}``) would never end."""
        if id(node) not in ancestors:
            return False
        self._problem(self.lines[loc], loc, "recursive YAML alias: a value cannot contain itself")
        return True

    def _scalar(self, node: yaml.Node, loc: Location) -> Any:
        """The typed value (int, float, bool, None, str); on an unreadable one, its text."""
        line = node.start_mark.line + 1
        try:
            return yaml.SafeLoader("").construct_object(node)
        except yaml.MarkedYAMLError as e:
            self._problem(line, loc, f"cannot read this value: {e.problem}")
        except ValueError as e:
            message = f"cannot read {node.value!r} ({e}); quote it to make it a string"
            self._problem(line, loc, message)
        return node.value

    def _problem(self, line: int, loc: Location, message: str) -> None:
        self.problems.append(SpecProblem(self.file, line, _dotted(loc), message))


def _not_a_mapping(data: Any) -> str:
    if data is None:
        return "the spec is empty; write a YAML mapping of field: value"
    kind = {list: "a list", str: "a string", bool: "a boolean"}.get(type(data), "a number")
    return f"the spec must be a YAML mapping of field: value, not {kind}"


def _validation_problems(
    errors: list[ErrorDetails], file: str, lines: dict[Location, int], model: type[BaseModel]
) -> list[SpecProblem]:
    """One problem per error; the errors of each member of a scalar union become one problem."""
    problems: list[SpecProblem] = []
    unions: dict[Location, list[ErrorDetails]] = {}
    for err in errors:
        raw = (*err["loc"], *_nested_loc(err))
        loc, found = _resolve(model, raw)
        if _is_union_member(loc, lines):
            unions.setdefault(loc[:-1], []).append(err)
            continue
        if isinstance(found, _Tagged) and err["type"] in _TAG_ERRORS:
            loc = (*loc, found.discriminator)
        message = _message(err, raw, found, model)
        problems.append(SpecProblem(file, _line_of(loc, lines), _dotted(loc), message))
    for loc, errs in unions.items():
        names = list(dict.fromkeys(_SCALAR_NAMES[str(err["loc"][-1])] for err in errs))
        expected = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
        message = _with_input(f"input should be a {expected}", errs[0])
        problems.append(SpecProblem(file, _line_of(loc, lines), _dotted(loc), message))
    return problems


def _nested_loc(err: ErrorDetails) -> Location:
    """Where inside the failing model a cross-field rule puts the mistake, if it says."""
    error = err.get("ctx", {}).get("error")
    return error.loc if isinstance(error, NestedValueError) else ()


@dataclass(frozen=True)
class _Tagged:
    """A discriminated union: the member is picked by the value of the ``discriminator`` key."""

    discriminator: str
    members: dict[str, Any]


def _resolve(model: type[BaseModel], raw: Location) -> tuple[Location, Any]:
    """``raw`` as the user wrote it, and the type expected there (None where not known).

    Pydantic adds parts that are not in the file: the tag of the member of a discriminated union
    it validated (``uniform``), and ``[key]`` at the end for a mapping key that failed.
    """
    loc: list[str | int] = []
    current: Any = model
    for i, part in enumerate(raw):
        if isinstance(current, _Tagged) and part in current.members:
            current = current.members[part]
        elif part == "[key]" and i == len(raw) - 1:
            current = None
        else:
            loc.append(part)
            current = _child(current, part)
    return tuple(loc), current


def _child(current: Any, part: str | int) -> Any:
    """The type one step down from ``current``: a model's field, a mapping's value, a list item."""
    if isinstance(current, type) and issubclass(current, BaseModel):
        info = current.model_fields.get(str(part))
        return None if info is None else _unwrap(info.annotation, info.discriminator)
    args = typing.get_args(current)
    if typing.get_origin(current) is dict:
        return _unwrap(args[1])
    if typing.get_origin(current) is list:
        return _unwrap(args[0])
    return None


def _unwrap(annotation: Any, discriminator: Any = None) -> Any:
    """``annotation`` without ``Annotated`` and ``| None``; a discriminated union as _Tagged."""
    if typing.get_origin(annotation) is Annotated:
        base, *metadata = typing.get_args(annotation)
        tags = [m.discriminator for m in metadata if isinstance(m, FieldInfo) and m.discriminator]
        return _unwrap(base, tags[0] if tags else discriminator)
    if typing.get_origin(annotation) not in (Union, types.UnionType):
        return annotation
    members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if isinstance(discriminator, str):
        return _Tagged(discriminator, {_tag(m, discriminator): m for m in members})
    return _unwrap(members[0]) if len(members) == 1 else annotation


def _tag(member: type[BaseModel], discriminator: str) -> str:
    """The value of ``discriminator`` that selects ``member`` (a one-value Literal)."""
    return str(typing.get_args(member.model_fields[discriminator].annotation)[0])


def _is_union_member(loc: Location, lines: dict[Location, int]) -> bool:
    """Pydantic ends the location of an error inside a union with the member type (``float``).

    A key of that name that is in the file is a real key, not a union member.
    """
    return len(loc) > 1 and loc[-1] in _SCALAR_NAMES and loc not in lines


def _line_of(loc: Location, lines: dict[Location, int]) -> int | None:
    """The line of ``loc``, or of its nearest parent present in the file."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _message(err: ErrorDetails, raw: Location, found: Any, model: type[BaseModel]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _fields_at(model, raw[:-1])
        close = difflib.get_close_matches(str(raw[-1]), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known fields: {', '.join(known)}"
        return f"unknown field{hint}"
    if kind == "missing":
        return "field required"
    if kind in _TAG_ERRORS and isinstance(found, _Tagged):
        return _tag_message(err, found)
    if kind in ("model_type", "model_attributes_type"):
        return _with_input("input should be a mapping of field: value", err)
    if kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") in _PATTERN_RULES:
        return _with_input(_PATTERN_RULES[err["ctx"]["pattern"]], err)
    message = err["msg"].removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    return message if raw[-1:] == ("[key]",) else _with_input(message, err)


def _tag_message(err: ErrorDetails, union: _Tagged) -> str:
    """A missing or unknown ``type`` of a discriminated union, with the types there are."""
    tags = [repr(tag) for tag in union.members]
    expected = f"{', '.join(tags[:-1])} or {tags[-1]}" if len(tags) > 1 else tags[0]
    if err["type"] == "union_tag_not_found":
        return f"field required; one of {expected}"
    return f"input should be {expected} (got {err['input'].get(union.discriminator)!r})"


def _with_input(message: str, err: ErrorDetails) -> str:
    """Append the offending value, unless it is a whole mapping or list."""
    if "input" not in err or isinstance(err["input"], dict | list):
        return message
    return f"{message} (got {err['input']!r})"


def _fields_at(model: type[BaseModel], raw: Location) -> list[str]:
    """Field names of the nested model at ``raw``, for "did you mean" hints."""
    _, found = _resolve(model, raw)
    is_model = isinstance(found, type) and issubclass(found, BaseModel)
    return sorted(found.model_fields) if is_model else []


def _dotted(loc: Location) -> str:
    """``train.optimizer.lr``, ``search.stages[1]``; a key with a dot: ``space['hparams.lr']``."""
    parts = [f"[{p}]" if isinstance(p, int) else f"[{p!r}]" if "." in p else p for p in loc]
    return ".".join(parts).replace(".[", "[")


def _by_line(problems: list[SpecProblem]) -> list[SpecProblem]:
    return sorted(problems, key=lambda p: (p.line or 0, p.path))
