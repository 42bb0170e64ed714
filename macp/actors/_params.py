"""Checking message bodies: one sentence naming the field and the fix, as InvalidParams."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from macp._storable import is_number
from macp.errors import InvalidParams

if TYPE_CHECKING:
    from macp.envelope import Wire

__all__ = ["MAX_TTL_S", "body_map", "is_number", "text", "ttl_s"]

MAX_TTL_S: Final = 3_155_760_000  # 100 years: an expiry (epoch ms) must fit SQLite's integer


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
    if ttl > MAX_TTL_S:
        raise InvalidParams(
            f"{type_} needs 'ttl_s' of at most {MAX_TTL_S} seconds (100 years), got {ttl:.4g}; "
            f"{forever}"
        )
    return float(ttl)
