"""The payload rule: what a body, a reply or a task result may hold, checked at the sender.

A payload crosses nodes as msgpack, and the receiver takes only what msgpack writes natively
with string keys: ``dict`` (``str`` or ``bytes`` keys), ``list``, ``str``, ``bytes``, ``int``
(64 bits), ``float``, ``bool`` and ``None``. Every envelope a node sends, to a local actor or
to another node, is checked against that rule in the sending thread (:func:`bound`, then
:func:`fit` for what it cannot vouch for), so a
value that could not cross nodes fails in the same way on one node, at once, with
:class:`~macp.errors.InvalidParams` naming the type and where it sits
(``result['when']: datetime is not msgpack-native``), and a payload larger than
``max_message_bytes`` (packed) is refused by its sender instead of being dropped on the way.
Nesting deeper than :data:`MAX_DEPTH` is refused too.

Values msgpack writes but reads back as another type (a ``tuple`` read as a ``list``, a
``bytearray`` as ``bytes``, an ``IntEnum`` as an ``int``, an ``OrderedDict`` as a ``dict``)
are sent as what the receiver will read, locally too, so a handler sees the same value
wherever its sender runs.

The check is a walk of the value that bounds its packed size as it goes (nothing is copied;
the exact size is computed only when the bound is over the limit): under 1 µs for a
five-field map. Only a value holding something unusual takes the slow way, which finds the
culprit's path or normalizes the value through msgpack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgpack

from macp.errors import InvalidParams

if TYPE_CHECKING:
    from collections.abc import Callable, Sized

    from macp.envelope import Wire

__all__ = ["HEADER_ROOM", "MAX_DEPTH", "NATIVE", "UNUSUAL", "bound", "fit"]

MAX_DEPTH: Final = 512
"""The deepest nesting of maps and lists a payload may have."""

HEADER_ROOM: Final = 64 * 1024
"""What a frame may hold beyond ``max_message_bytes``: the envelope's other fields (at most
about 34 KiB, with the longest ids, addresses and ask chain the decoder accepts)."""

NATIVE: Final = "dict (str keys)/list/str/bytes/int/float/bool/None"

_KEYS: dict[str, int] = {}  # map keys seen, and their size bound: keys repeat across messages
_KEYS_MAX: Final = 4096
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1


class _Unusual(Exception):  # a private signal, not an error users see
    """The fast walk met a value it does not size itself: take the slow way."""


UNUSUAL: Final = (_Unusual, UnicodeEncodeError, RecursionError)
"""What :func:`bound` raises when it cannot vouch for a value."""


def bound(  # noqa: C901, PLR0912
    obj: object,
    depth: int = 0,
    *,
    str: type[str] = str,
    int: type[int] = int,
    float: type[float] = float,
    bool: type[bool] = bool,
    dict: type[dict[object, object]] = dict,
    list: type[list[object]] = list,
    type: type[type] = type,
    len: Callable[[Sized], int] = len,
    isascii: Callable[[str], bool] = str.isascii,
    keys: dict[str, int] = _KEYS,
) -> int:
    """An upper bound of the packed size of ``obj`` (exact to within 5 bytes an item), if it
    holds only exact native types with str keys: the fast check, for every message.

    Raises:
        Exception: one of :data:`UNUSUAL` if it cannot vouch for ``obj`` (it holds another
            type, a key that is not a str, text UTF-8 cannot encode, an int over 64 bits, or
            nests too deep): then :func:`fit` decides, and says why.
    """
    # Written out flat, with the builtins as locals and known keys cached.
    t = type(obj)
    if t is dict:
        if depth >= MAX_DEPTH:
            raise _Unusual
        total = 5
        for k, v in obj.items():  # type: ignore[attr-defined]
            n = keys.get(k)
            if n is None:
                n = _key(k)
            t = type(v)
            if t is str:
                total += n + (len(v) if isascii(v) else len(v.encode()))
            elif t is int:
                if not -0x8000000000000000 <= v <= 0xFFFFFFFFFFFFFFFF:  # noqa: PLR2004
                    raise _Unusual
                total += n + 4
            elif t is float or t is bool or v is None:
                total += n + 4
            else:
                total += n + bound(v, depth + 1)
        return total
    if t is list:
        if depth >= MAX_DEPTH:
            raise _Unusual
        total = 5
        for v in obj:  # type: ignore[attr-defined]
            t = type(v)
            if t is str:
                total += 5 + (len(v) if isascii(v) else len(v.encode()))
            elif t is int:
                if not -0x8000000000000000 <= v <= 0xFFFFFFFFFFFFFFFF:  # noqa: PLR2004
                    raise _Unusual
                total += 9
            elif t is float or t is bool or v is None:
                total += 9
            else:
                total += bound(v, depth + 1)
        return total
    if t is str:
        return 5 + (len(obj) if isascii(obj) else len(obj.encode()))  # type: ignore[arg-type,attr-defined]
    if t is bytes:
        return 5 + len(obj)  # type: ignore[arg-type]
    if t is int:
        if not -0x8000000000000000 <= obj <= 0xFFFFFFFFFFFFFFFF:  # type: ignore[operator]  # noqa: PLR2004
            raise _Unusual
        return 9
    if t is float or t is bool or obj is None:
        return 9
    raise _Unusual


def _key(k: object) -> int:
    """A bound of the packed size of map key ``k`` plus 5 (its value's header), cached;
    _Unusual for any key but a str (the slow way checks and sizes the others)."""
    if type(k) is not str:
        raise _Unusual
    n = (len(k) if k.isascii() else len(k.encode())) + 10  # 5 for each header, at most
    if len(_KEYS) >= _KEYS_MAX:
        _KEYS.clear()
    _KEYS[k] = n
    return n


def fit(body: Wire, where: str) -> tuple[Wire, int]:
    """Check ``body`` against the payload rule, the slow and thorough way (what :func:`bound`
    could not vouch for): what to send in its place, and its exact packed size.

    Args:
        body: the payload.
        where: how an error names the payload (``body``, ``result``).

    Returns:
        ``body`` itself, or, if it holds values msgpack reads back as another type (tuples,
        subclasses), the value the receiver would read; and its packed size.

    Raises:
        InvalidParams: ``body`` holds a value that cannot cross nodes; the message starts with
            its path and type (``result['when']: datetime is not msgpack-native``).
    """
    _explain(body, where, 0)  # raises, if anything is wrong
    try:
        data = msgpack.packb(body)
        if _bound_or_none(body) is not None:
            return body, len(data)  # plain, only large
        normalized = msgpack.unpackb(data, strict_map_key=True, raw=False)
    except Exception as e:  # whatever msgpack refuses, the sender is told
        raise InvalidParams(
            f"{where}: cannot be encoded ({type(e).__name__}: {e}); send only {NATIVE}"
        ) from e
    return normalized, len(data)


def _bound_or_none(body: object) -> int | None:
    try:
        return bound(body)
    except UNUSUAL:
        return None


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
