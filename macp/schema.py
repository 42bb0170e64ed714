"""Checked records: the pydantic base of every section of a topology file and of the bodies
checked with the same models (alert rules, workflow definitions), and the one place that turns
pydantic's errors into sentences naming the field and what it must be.

A topology file reports each problem as ``FILE:LINE: FIELD: sentence``
(:mod:`macp.topologies.spec`); a message body as ``WHERE: 'FIELD' sentence`` (:func:`check`).
"""

from __future__ import annotations

import re
import types
import typing
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

if typing.TYPE_CHECKING:
    from macp.errors import MacpError

__all__ = ["Location", "Schema", "check", "explain", "field_path", "keys", "problems"]

Location = tuple[str | int, ...]
"""Where in a document: map keys and list indexes, outermost first."""

M = TypeVar("M", bound=BaseModel)

_RANGE_WORDS = {"greater_than": "greater than", "greater_than_equal": "greater than or equal to",
                "less_than": "less than", "less_than_equal": "less than or equal to"}  # fmt: skip
_KINDS = {
    "float_type": "a number",
    "int_type": "an integer",
    "dict_type": "a map",
    "model_type": "a map",
    "model_attributes_type": "a map",
    "tuple_type": "a list",
}


class Schema(BaseModel):
    """A record whose unknown keys are refused (a typo is an error, never ignored); a field's
    docstring is its description."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_attribute_docstrings=True)


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _members(annotation: Any) -> list[Any] | None:
    """The members of a union other than None, or None if ``annotation`` is no union."""
    if get_origin(annotation) in (Union, types.UnionType):
        return [_unwrap(a) for a in get_args(annotation) if a is not type(None)]
    return None


def _flat(annotation: Any) -> list[Any]:
    """The members of a (possibly nested, possibly optional) union; ``[annotation]`` else."""
    members = _members(_unwrap(annotation))
    if members is None:
        return [_unwrap(annotation)]
    return [m for member in members for m in _flat(member)]


def _literals(member: Any) -> list[str]:
    """The literal values of a model's fields: a discriminated union member's tag."""
    if not (isinstance(member, type) and issubclass(member, BaseModel)):
        return []
    found = []
    for field in member.model_fields.values():
        if get_origin(_unwrap(field.annotation)) is typing.Literal:
            found += [str(v) for v in get_args(_unwrap(field.annotation))]
    return found


def _tag_of(member: Any) -> set[str]:
    """The names pydantic puts in a location for a union member: its class name, or its
    discriminated union's tag."""
    return {getattr(member, "__name__", str(member)), *_literals(member)}


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Location, Any]:
    """``loc`` without pydantic's union tags, and the annotation found at its end (None past
    what the models describe)."""
    kept: list[str | int] = []
    current: Any = model
    for part in loc:
        tag = False
        members = _members(current)
        while members is not None:  # an optional value, or a union: step into the member
            if len(members) == 1:
                current = members[0]
            else:
                current = next((m for m in members if str(part) in _tag_of(m)), None)
                if current is None:
                    break
                tag = True  # the member's tag is pydantic's, not a key of the document
            members = _members(current)
        if not tag:
            kept.append(part)
            current = _child(current, part)
    return tuple(kept), current


def _child(annotation: Any, part: Any) -> Any:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            if part in (name, field.alias):
                return _unwrap(field.annotation)
        return None
    args = get_args(annotation)
    origin = get_origin(annotation)
    if origin in (list, tuple) and args and isinstance(part, int):
        return _unwrap(args[0])
    if origin is dict and len(args) == 2:  # noqa: PLR2004 - key and value types
        return _unwrap(args[1])
    return None


def keys(model: type[BaseModel], loc: tuple[Any, ...]) -> Location:
    """A pydantic error location as keys of the document (union tags left out)."""
    return _walk(model, loc)[0]


def field_path(loc: Location) -> str:
    """``agents[2].class`` from ``("agents", 2, "class")``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _allowed(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    found = [m for m in _flat(_walk(model, loc)[1]) if isinstance(m, type)]
    models = [m for m in found if issubclass(m, BaseModel)]
    if len(models) != 1:
        return ""
    names = [f.alias or name for name, f in models[0].model_fields.items() if not f.exclude]
    return f"; expected one of: {', '.join(names)}"


def explain(model: type[BaseModel], error: Any) -> str:  # noqa: PLR0911 - a sentence per kind
    """One pydantic error of ``model`` as a sentence: what the field must be."""
    kind, loc, ctx = error["type"], error["loc"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}{_allowed(model, loc[:-1])}"
    if kind == "missing":
        return "is required"
    if kind == "too_short":
        return "must list at least one entry"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = [t for m in _flat(_walk(model, loc)[1]) for t in _literals(m)]
        return f"'{str(ctx.get('discriminator')).strip(chr(39))}' must be one of {', '.join(tags)}"
    if kind == "literal_error":
        allowed = ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        return f"must be one of {allowed}, not {error['input']!r}"
    if kind in _KINDS:
        return f"must be {_KINDS[kind]}"
    if kind in _RANGE_WORDS:
        bound = next(v for k, v in ctx.items() if k in ("gt", "ge", "lt", "le"))
        return f"must be {_RANGE_WORDS[kind]} {bound:g}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return str(error["msg"]).replace("Input should be", "must be")


def problems(model: type[BaseModel], error: ValidationError) -> list[tuple[Location, str]]:
    """Each error of ``error`` (raised validating ``model``): where, and the sentence."""
    return [(keys(model, tuple(e["loc"])), explain(model, e)) for e in error.errors()]


def check(model: type[M], raw: object, where: str, error: type[MacpError]) -> M:
    """``raw`` validated as ``model``.

    Raises:
        error: ``WHERE: 'FIELD' sentence`` for the first problem (``WHERE: sentence`` for one of
            the whole record; ``WHERE: unknown key 'FIELD'; ...`` for a key not expected).
    """
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc, at = _walk(model, tuple(first["loc"]))
        sentence = explain(model, first)
        if first["type"] == "extra_forbidden":
            sentence = f"unknown key {field_path(loc)!r}" + sentence.partition(repr(loc[-1]))[2]
        elif loc and any(isinstance(m, type) and issubclass(m, BaseModel) for m in _flat(at)):
            sentence = f"{field_path(loc)}: {sentence}"  # about a whole record in the body
        elif loc:
            sentence = f"{field_path(loc)!r} {sentence}"
        raise error(f"{where}: {sentence}") from None
