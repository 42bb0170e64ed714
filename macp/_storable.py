"""What the control plane may store: what could cross nodes unchanged (the payload rule).

:func:`storable` is the one check the coordinator, the workflow engine, the memory store and
the resource manager make before they persist or act on a value that came from outside (a
body, a result, an error, a definition), and the journal before it writes: the payload rule's
own thorough check (:func:`macp.payload.packed`), so what is stored is exactly what an
envelope can carry, and a refusal names the part at fault in the same words
(``result['tags']: set is not msgpack-native; ...``).
"""

from __future__ import annotations

import math
from typing import Any, Final, TypeGuard

import msgpack

from macp.errors import InvalidParams
from macp.payload import MAX_DEPTH, UNUSUAL, bound, explain, packed

__all__ = ["MAX_DEPTH", "READABLE_DEPTH", "check", "is_number", "scrub", "storable"]

READABLE_DEPTH: Final = 1024
"""How deep a record holding values may nest: what msgpack's unpacker reads."""
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1
_SCALARS: Final = (int, str, bytes, bytearray, memoryview, float, type(None))  # bool is an int


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float (not a bool; not an int too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def storable(
    value: object, what: str, field: str = "value", *, max_depth: int = MAX_DEPTH
) -> bytes:
    """Check that ``value`` can be stored and can cross nodes; its packed bytes.

    Args:
        value: the data.
        what: what it is, for the message (``"task field 'body'"``, ``"memory value"``).
        field: its name at the root of the path to the part at fault (``body['when']``).
        max_depth: how many maps and lists it may nest; at most 1024 (what msgpack can read).

    Raises:
        InvalidParams: one sentence naming the part at fault, its type, and the fix.
    """
    try:
        return packed(value, field, min(max_depth, READABLE_DEPTH))
    except InvalidParams as e:
        raise InvalidParams(f"{what} cannot be stored: {e.message}") from None


def check(value: object, what: str, field: str = "value") -> None:
    """Check that ``value`` could be stored and cross nodes, without packing it (as
    :func:`storable`, for a value that is only checked, not written).

    Raises:
        InvalidParams: one sentence naming the part at fault, its type, and the fix.
    """
    try:
        bound(value)
    except UNUSUAL:
        try:
            explain(value, field)
        except InvalidParams as e:
            raise InvalidParams(f"{what} cannot be stored: {e.message}") from None


def scrub(value: object, depth: int = 0) -> Any:
    """``value`` with every part :func:`storable` would refuse replaced by ``None`` (a map
    entry whose key is not a string dropped): for data that must be kept in some form."""
    if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
        return None
    if isinstance(value, _SCALARS):
        return value
    if depth >= MAX_DEPTH or isinstance(value, msgpack.ExtType | msgpack.Timestamp):
        return None
    if isinstance(value, dict):
        return {k: scrub(v, depth + 1) for k, v in value.items() if isinstance(k, str | bytes)}
    if isinstance(value, list | tuple):
        return [scrub(v, depth + 1) for v in value]
    return None
