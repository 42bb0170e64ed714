"""What the control plane may store: msgpack-native data that could cross nodes unchanged.

:func:`storable` is the one check the coordinator, the workflow engine, the memory store and
the resource manager make before they persist or act on a value that came from outside (a
body, a result, an error, a definition): the journal's own :func:`pack`, then the envelope's
own :func:`~macp.envelope.unpack` (map keys that are strings or bytes, no extension types), so
what is stored is exactly what an envelope can carry. Only a value that fails is walked, to
name the part at fault (``result['tags'] is a set``) in an :class:`InvalidParams`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, TypeGuard

import msgpack

from macp.envelope import unpack as unpack_envelope_data
from macp.errors import EnvelopeError, InvalidParams

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["MAX_DEPTH", "NATIVE", "READABLE_DEPTH", "is_number", "pack", "scrub", "storable"]

NATIVE: Final = "dict/list/str/bytes/int/float/bool/None"
MAX_DEPTH: Final = 256
# msgpack's unpacker reads at most READABLE_DEPTH maps and lists inside one another (its packer
# writes one more: a value it packed may not unpack). A value is stored inside a record and
# sent inside an envelope, and code walks it recursively (gather's votes, workflow templates,
# the envelope's search for timestamps: two Python frames a level, under a limit of 1000), so
# it may nest a quarter of that: checked by skipping over it behind one-element arrays (a skip
# builds nothing: about a microsecond). A record holding values is checked against
# READABLE_DEPTH itself.
READABLE_DEPTH: Final = 1024
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1
_SCALARS: Final = (int, str, bytes, bytearray, memoryview, float, type(None))  # bool is an int
_PATH_SHOWN: Final = 80


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float (not a bool; not an int too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def pack(value: object, what: str, field: str = "value", max_depth: int = MAX_DEPTH) -> bytes:
    """``value`` as the msgpack bytes the journal stores.

    Raises:
        InvalidParams: msgpack cannot write it; the message names the part at fault.
    """
    try:
        data: bytes = msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidParams(_refusal(value, what, field, str(e), max_depth)) from e
    return data


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
    max_depth = min(max_depth, READABLE_DEPTH)
    data = pack(value, what, field, max_depth)
    # Shorter data cannot nest that deep; the unpacking below checks READABLE_DEPTH itself.
    if max_depth < READABLE_DEPTH and len(data) > max_depth and not _shallow(data, max_depth):
        raise InvalidParams(_refusal(value, what, field, "", max_depth))
    try:
        unpack_envelope_data(data, max_bytes=len(data))
    except EnvelopeError as e:
        raise InvalidParams(_refusal(value, what, field, e.message, max_depth)) from e
    except RecursionError:  # only past MAX_DEPTH: the search for timestamps recurses
        raise InvalidParams(_refusal(value, what, field, "nested too deep", max_depth)) from None
    return data


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


def _shallow(data: bytes, max_depth: int) -> bool:
    """Whether ``data`` nests at most ``max_depth`` maps and lists."""
    margin = b"\x91" * (READABLE_DEPTH - max_depth)
    unpacker = msgpack.Unpacker(max_buffer_size=len(margin) + len(data))
    unpacker.feed(margin)
    unpacker.feed(data)
    try:
        unpacker.skip()
    except msgpack.StackError:
        return False
    return True


def _refusal(value: object, what: str, field: str, detail: str, max_depth: int) -> str:
    found = _first_fault(value, field, max_depth)
    fault = found if found is not None else f"{field} is not msgpack-native data ({detail})"
    return (
        f"{what} cannot be stored: {fault}; use only {NATIVE} "
        "(e.g. a set as a sorted list, a datetime as an ISO 8601 string)"
    )


def _first_fault(value: object, field: str, max_depth: int) -> str | None:
    """The first part of ``value`` an envelope cannot carry, in words; ``None`` if none is."""
    for path, depth, item in _walk(value, max_depth):
        fault = _fault(item, depth, max_depth)
        if fault is not None:
            return f"{_short(field + path)} {fault}"
    return None


def _fault(item: object, depth: int, max_depth: int) -> str | None:
    if isinstance(item, int) and not _INT_MIN <= item <= _INT_MAX:
        return f"is an integer of {item.bit_length()} bits (at most 64 fit)"
    if isinstance(item, _SCALARS):
        return None
    # An ExtType is a tuple, and msgpack writes it and a Timestamp; an envelope refuses both.
    if isinstance(item, msgpack.ExtType | msgpack.Timestamp) or not isinstance(
        item, dict | list | tuple
    ):
        return f"is {_a(type(item).__qualname__)}"
    if depth >= max_depth:
        return f"is nested more than {max_depth} maps and lists deep"
    keys = [k for k in item if not isinstance(k, str | bytes)] if isinstance(item, dict) else []
    if keys:
        return (
            f"has the key {keys[0]!r:.40} ({_a(type(keys[0]).__qualname__)}); keys must be strings"
        )
    return None


def _a(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _walk(value: object, max_depth: int) -> Iterator[tuple[str, int, object]]:
    """Every part of ``value``, depth first, with its path and depth (iterative: any depth)."""
    stack: list[tuple[str, int, object]] = [("", 0, value)]
    while stack:
        path, depth, item = stack.pop()
        yield path, depth, item
        if depth >= max_depth:
            continue
        if isinstance(item, dict):
            children = [(f"{path}[{k!r:.40}]", depth + 1, v) for k, v in item.items()]
        elif isinstance(item, list | tuple):
            children = [(f"{path}[{i}]", depth + 1, v) for i, v in enumerate(item)]
        else:
            continue
        stack.extend(reversed(children))


def _short(path: str) -> str:
    """``path`` shortened in its middle, between brackets, if it is long."""
    if len(path) <= _PATH_SHOWN:
        return path
    head, tail = path[:40], path[-36:]
    head = head[: head.rfind("]") + 1] or head
    tail = tail[tail.find("[") :] if "[" in tail else tail
    return f"{head}...{tail}"
