"""Checking message bodies: one sentence naming the field and the fix, as InvalidParams."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TypeGuard

from macp.errors import InvalidParams

if TYPE_CHECKING:
    from macp.envelope import Wire

__all__ = ["body_map", "is_number", "text", "ttl_s"]


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float (not a bool)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def body_map(type_: str, body: Wire, example: str) -> dict[str, Wire]:
    """``body`` if it is a map; ``example`` shows one in the error."""
    if not isinstance(body, dict):
        raise InvalidParams(f"{type_} takes a map body, not {body!r:.60}; send e.g. {example}")
    return body


def text(type_: str, body: dict[str, Wire], field: str, *, empty: bool = False) -> str:
    """The string ``body[field]`` (non-empty unless ``empty``)."""
    value = body.get(field)
    if not isinstance(value, str) or (not value and not empty):
        got = "nothing" if field not in body else f"{value!r:.60}"
        kind = "a string" if empty else "a non-empty string"
        raise InvalidParams(f"{type_} needs {field!r} as {kind}, got {got}; set it in the body")
    return value


def ttl_s(type_: str, body: dict[str, Wire], forever: str) -> float | None:
    """``body["ttl_s"]``: a positive number of seconds, or ``None`` for ``forever``."""
    ttl = body.get("ttl_s")
    if ttl is None:
        return None
    if not is_number(ttl) or ttl <= 0:
        raise InvalidParams(
            f"{type_} needs 'ttl_s' as a positive number of seconds or null, got {ttl!r:.60}; "
            f"{forever}"
        )
    return float(ttl)
