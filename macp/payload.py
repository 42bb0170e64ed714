"""The payload rule: what a body, a reply or a task result may hold, checked at the sender.

A payload crosses nodes as msgpack, and the receiver takes only what msgpack writes natively
with string keys: ``dict`` (``str`` or ``bytes`` keys), ``list``, ``str``, ``bytes``, ``int``
(64 bits), ``float``, ``bool`` and ``None``. Every envelope a node sends, to a local actor or
to another node, is checked against that rule by :func:`check` in the sending thread, so a
value that could not cross nodes fails in the same way on one node, at once, with
:class:`~macp.errors.InvalidParams` naming the type and where it sits
(``result['when']: datetime is not msgpack-native``), and a payload larger than
``max_message_bytes`` (packed) is refused by its sender instead of being dropped on the way.
Nesting deeper than :data:`MAX_DEPTH` is refused too.

Values msgpack writes but reads back as another type (a ``tuple`` read as a ``list``, a
``bytearray`` as ``bytes``, an ``IntEnum`` as an ``int``, an ``OrderedDict`` as a ``dict``)
are sent as what the receiver will read, locally too, so a handler sees the same value
wherever its sender runs.

The check is a walk of the value that computes its packed size as it goes (nothing is copied):
about 1 µs for a five-field map. Only a value holding something unusual takes the slow way,
which finds the culprit's path or normalizes the value through msgpack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgpack

from macp.errors import InvalidParams

if TYPE_CHECKING:
    from macp.envelope import Wire

__all__ = ["HEADER_ROOM", "MAX_DEPTH", "NATIVE", "check", "packed_size"]

MAX_DEPTH: Final = 512
"""The deepest nesting of maps and lists a payload may have."""

HEADER_ROOM: Final = 64 * 1024
"""What a frame may hold beyond ``max_message_bytes``: the envelope's other fields (at most
about 34 KiB, with the longest ids, addresses and ask chain the decoder accepts)."""

NATIVE: Final = "dict (str keys)/list/str/bytes/int/float/bool/None"

_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1


class _Unusual(Exception):  # a private signal, not an error users see
    """The fast walk met a value it does not size itself: take the slow way."""


def _str_size(s: str) -> int:
    n = len(s) if s.isascii() else len(s.encode())
    return n + (1 if n < 32 else 2 if n < 256 else 3 if n < 65536 else 5)  # noqa: PLR2004


def _int_size(n: int) -> int:
    if 0 <= n < 128 or -32 <= n < 0:  # noqa: PLR2004
        return 1
    if not _INT_MIN <= n <= _INT_MAX:
        raise _Unusual
    if n > 0:
        return 2 if n < 256 else 3 if n < 65536 else 5 if n < 2**32 else 9  # noqa: PLR2004
    return 2 if n >= -128 else 3 if n >= -32768 else 5 if n >= -(2**31) else 9  # noqa: PLR2004


def _header(n: int, small: int) -> int:
    return 1 if n < small else 3 if n < 65536 else 5  # noqa: PLR2004


def _size(obj: object, depth: int) -> int:  # noqa: C901, PLR0911, PLR0912
    """The packed size of ``obj`` if it holds only exact native types with str keys; else
    raise _Unusual (or UnicodeEncodeError). Written out flat: it runs for every message."""
    t = type(obj)
    if t is dict:
        if depth >= MAX_DEPTH:
            raise _Unusual
        n = len(obj)  # type: ignore[arg-type]
        total = 1 if n < 16 else 3 if n < 65536 else 5  # noqa: PLR2004
        for k, v in obj.items():  # type: ignore[attr-defined]
            if type(k) is not str:
                raise _Unusual
            n = len(k) if k.isascii() else len(k.encode())
            total += n + (1 if n < 32 else 2 if n < 256 else 3 if n < 65536 else 5)  # noqa: PLR2004
            t = type(v)
            if t is str:
                n = len(v) if v.isascii() else len(v.encode())
                total += n + (1 if n < 32 else 2 if n < 256 else 3 if n < 65536 else 5)  # noqa: PLR2004
            elif t is int:
                total += 1 if -32 <= v < 128 else _int_size(v)  # noqa: PLR2004
            elif t is float:
                total += 9
            elif v is None or t is bool:
                total += 1
            else:
                total += _size(v, depth + 1)
        return total
    if t is list:
        if depth >= MAX_DEPTH:
            raise _Unusual
        n = len(obj)  # type: ignore[arg-type]
        total = 1 if n < 16 else 3 if n < 65536 else 5  # noqa: PLR2004
        for v in obj:  # type: ignore[attr-defined]
            t = type(v)
            if t is str:
                n = len(v) if v.isascii() else len(v.encode())
                total += n + (1 if n < 32 else 2 if n < 256 else 3 if n < 65536 else 5)  # noqa: PLR2004
            elif t is int:
                total += 1 if -32 <= v < 128 else _int_size(v)  # noqa: PLR2004
            elif t is float:
                total += 9
            elif v is None or t is bool:
                total += 1
            else:
                total += _size(v, depth + 1)
        return total
    if t is str:
        return _str_size(obj)  # type: ignore[arg-type]
    if t is int:
        return _int_size(obj)  # type: ignore[arg-type]
    if t is bytes:
        n = len(obj)  # type: ignore[arg-type]
        return n + (2 if n < 256 else 3 if n < 65536 else 5)  # noqa: PLR2004
    if t is float:
        return 9
    if obj is None or t is bool:
        return 1
    raise _Unusual


def packed_size(obj: object) -> int | None:
    """The size msgpack writes ``obj`` in, if it holds only exact native types, else ``None``."""
    try:
        return _size(obj, 0)
    except (_Unusual, UnicodeEncodeError, RecursionError):
        return None


def check(body: Wire, where: str) -> tuple[Wire, int]:
    """Check ``body`` against the payload rule: what to send in its place, and its packed size.

    Args:
        body: the payload.
        where: how an error names the payload (``body``, ``result``).

    Returns:
        ``body`` itself, or, if it holds values msgpack reads back as another type (tuples,
        subclasses), the value the receiver would read; and the size msgpack packs it in.

    Raises:
        InvalidParams: ``body`` holds a value that cannot cross nodes; the message starts with
            its path and type (``result['when']: datetime is not msgpack-native``).
    """
    try:
        return body, _size(body, 0)
    except (_Unusual, UnicodeEncodeError, RecursionError):
        pass
    _explain(body, where, 0)  # raises, if anything is wrong
    try:
        data = msgpack.packb(body)
        normalized = msgpack.unpackb(data, strict_map_key=True, raw=False)
    except Exception as e:  # whatever msgpack refuses, the sender is told
        raise InvalidParams(
            f"{where}: cannot be encoded ({type(e).__name__}: {e}); send only {NATIVE}"
        ) from e
    return normalized, len(data)


def _refuse(path: str, problem: str, fix: str) -> InvalidParams:
    return InvalidParams(f"{path}: {problem}; send only {NATIVE}{fix}")


def _explain(obj: object, path: str, depth: int) -> None:  # noqa: C901, PLR0912
    """Raise InvalidParams for the first value in ``obj`` that cannot cross nodes, if any."""
    if depth > MAX_DEPTH:
        raise _refuse(path, f"nesting deeper than {MAX_DEPTH} levels is not allowed", ", flatter")
    if obj is None or isinstance(obj, bool | float):
        return
    if isinstance(obj, int):
        if not _INT_MIN <= obj <= _INT_MAX:
            raise _refuse(
                path, "int out of the 64-bit range is not msgpack-native", ", e.g. str(...)"
            )
        return
    if isinstance(obj, str):
        try:
            obj.encode()
        except UnicodeEncodeError as e:
            raise _refuse(
                path, f"str holds {obj[e.start]!r}, which UTF-8 cannot encode", ""
            ) from None
        return
    if isinstance(obj, bytes | bytearray | memoryview):
        return
    if isinstance(obj, msgpack.ExtType | msgpack.Timestamp):
        raise _refuse(path, f"{type(obj).__name__} (a msgpack extension) is not allowed", "")
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str | bytes):
                raise _refuse(
                    f"{path}[{key!r:.40}]", f"map key of type {type(key).__name__} is not allowed",
                    "; map keys must be str, e.g. str(key)",
                )  # fmt: skip
            _explain(key, f"{path}[{key!r:.40}]", depth + 1)
            _explain(value, f"{path}[{key!r:.40}]", depth + 1)
        return
    if isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            _explain(value, f"{path}[{i}]", depth + 1)
        return
    name = type(obj).__name__
    hint = {
        "set": ", e.g. sorted(...) as a list",
        "frozenset": ", e.g. sorted(...) as a list",
        "datetime": ", e.g. .isoformat() or a timestamp",
        "date": ", e.g. .isoformat()",
        "Decimal": ", e.g. str(...)",
    }.get(name, ", e.g. a dict of its fields")
    raise _refuse(path, f"{name} is not msgpack-native", hint)
