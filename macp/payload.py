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

from macp.envelope import Kind
from macp.errors import InvalidParams

if TYPE_CHECKING:
    from collections.abc import Callable, Sized

    from macp.envelope import Envelope, Wire

__all__ = [
    "HEADER_ROOM",
    "MAX_DEPTH",
    "NATIVE",
    "UNUSUAL",
    "bound",
    "describe",
    "explain",
    "fit",
    "fit_envelope",
    "packed",
]

MAX_DEPTH: Final = 256
"""The deepest nesting of maps and lists a payload may have: enough for any real data, and
shallow enough for the recursive code that handles payloads (comparisons, templates, a
handler's own) to stay within Python's recursion limit."""

HEADER_ROOM: Final = 64 * 1024
"""What a frame may hold beyond ``max_message_bytes``: the envelope's other fields (at most
about 34 KiB, with the longest ids, addresses and ask chain the decoder accepts)."""

NATIVE: Final = "dict (str keys)/list/str/bytes/int/float/bool/None"

_KEYS: dict[str, int] = {}  # map keys seen, and their size bound: keys repeat across messages
_KEYS_MAX: Final = 4096
_PATH_SHOWN: Final = 80
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1


class _Unusual(Exception):  # a private signal, not an error users see
    """The fast walk met a value it does not size itself: take the slow way."""


UNUSUAL: Final = (_Unusual, UnicodeEncodeError, RecursionError)
"""What :func:`bound` raises when it cannot vouch for a value."""


def bound(  # noqa: C901, PLR0912, PLR0915, PLR0917 - written out flat: it runs per message
    obj: object,
    depth: int = 0,
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
            elif t is list and depth < MAX_DEPTH - 1:  # a list in a map, in place: one call less
                total += n + 5
                for item in v:
                    t = type(item)
                    if t is str:
                        total += 5 + (len(item) if isascii(item) else len(item.encode()))
                    elif t is int:
                        if not -0x8000000000000000 <= item <= 0xFFFFFFFFFFFFFFFF:  # noqa: PLR2004
                            raise _Unusual
                        total += 9
                    elif t is float or t is bool or item is None:
                        total += 9
                    else:
                        total += bound(item, depth + 2)
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


def fit(body: Wire, where: str, max_depth: int = MAX_DEPTH) -> tuple[Wire, int]:
    """Check ``body`` against the payload rule, the slow and thorough way (what :func:`bound`
    could not vouch for): what to send in its place, and its exact packed size.

    Args:
        body: the payload.
        where: how an error names the payload (``body``, ``result``).
        max_depth: how many maps and lists it may nest (a record holding payloads, a little
            more than :data:`MAX_DEPTH`).

    Returns:
        ``body`` itself, or, if it holds values msgpack reads back as another type (tuples,
        subclasses), the value the receiver would read; and its packed size.

    Raises:
        InvalidParams: ``body`` holds a value that cannot cross nodes; the message starts with
            its path and type (``result['when']: datetime is not msgpack-native``).
    """
    data = packed(body, where, max_depth)
    if _bound_or_none(body) is not None:
        return body, len(data)  # plain, only large
    return msgpack.unpackb(data, strict_map_key=True, raw=False), len(data)


def fit_envelope(env: Envelope, limit: int) -> Envelope:
    """``env`` as it may be sent (its body as :func:`fit` makes it), or why not.

    Raises:
        InvalidParams: its body breaks the payload rule, or is over ``limit`` bytes packed;
            the message names the message too (``the reply of a@n1 to 'sum' for b@n2``).
    """
    try:
        body, size = fit(env.body, "result" if env.kind == Kind.REPLY else "body")
    except InvalidParams as e:
        raise InvalidParams(f"{e.message} ({describe(env)})") from None
    if size > limit:
        raise InvalidParams(
            f"{describe(env)} is {size:,} bytes packed, over max_message_bytes ({limit:,}); send "
            "less (e.g. a reference to the data) or raise settings.max_message_bytes on every node"
        )
    return env if body is env.body else env._replace(body=body)


def describe(env: Envelope) -> str:
    """How an error names the message ``env`` (``the reply of a@n1 to 'sum' for b@n2``)."""
    if env.kind == Kind.REPLY:
        return f"the reply of {env.src} to {env.type!r} for {env.dst}"
    if env.kind == Kind.ERROR:
        return f"the error of {env.src} answering {env.type!r} for {env.dst}"
    return f"{env.type!r} from {env.src} to {env.dst}"


def packed(body: object, where: str, max_depth: int = MAX_DEPTH) -> bytes:
    """``body`` packed, once the payload rule vouches for it (:func:`bound`, else
    :func:`explain`).

    Raises:
        InvalidParams: as :func:`fit`.
    """
    try:
        bound(body)
    except UNUSUAL:
        explain(body, where, max_depth)
    try:
        data: bytes = msgpack.packb(body)
    except Exception as e:  # whatever msgpack still refuses, the sender is told
        raise InvalidParams(
            f"{where}: cannot be encoded ({type(e).__name__}: {e}); use only {NATIVE}"
        ) from e
    return data


def _bound_or_none(body: object) -> int | None:
    try:
        return bound(body)
    except UNUSUAL:
        return None


def explain(obj: object, where: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise InvalidParams for the first part of ``obj`` (depth first) that cannot cross nodes,
    naming its path from ``where``; return if there is none. Iterative: any depth."""
    pending: list[tuple[str, int, object]] = [(where, 0, obj)]
    while pending:
        path, depth, item = pending.pop()
        problem = _problem(item)
        if problem is not None:
            raise InvalidParams(f"{_short(path)}: {problem}")
        if not isinstance(item, dict | list | tuple) or isinstance(item, msgpack.ExtType):
            continue
        if depth >= max_depth:
            raise InvalidParams(
                f"{_short(path)}: nested deeper than {max_depth} maps and lists; flatten it"
            )
        if isinstance(item, dict):
            for key in item:
                _check_key(key, path)
            parts: list[tuple[object, object]] = list(item.items())
        else:
            parts = list(enumerate(item))
        # Only the parts worth a look get a path (containers, and values that are wrong).
        for key, value in reversed(parts):
            if isinstance(value, dict | list | tuple) or _problem(value) is not None:
                where_ = f"{path}[{key!r:.40}]" if isinstance(item, dict) else f"{path}[{key}]"
                pending.append((where_, depth + 1, value))


def _check_key(key: object, path: str) -> None:
    if not isinstance(key, str | bytes):
        raise InvalidParams(
            f"{_short(f'{path}[{key!r:.40}]')}: a map key of type {type(key).__name__} is not "
            f"allowed; use str keys, e.g. str({key!r:.40})"
        )
    if isinstance(key, str) and (fault := _problem(key)) is not None:
        raise InvalidParams(f"{_short(f'{path}[{key!r:.40}]')}: the key {fault}")


_HINTS: Final = {
    "set": "sorted(...) as a list",
    "frozenset": "sorted(...) as a list",
    "datetime": ".isoformat() or a timestamp",
    "date": ".isoformat()",
    "time": ".isoformat()",
    "Decimal": "str(...)",
    "UUID": "str(...)",
}


def _problem(item: object) -> str | None:  # noqa: PLR0911 - one answer per kind of value
    """What is wrong with ``item`` itself (not its parts), in words; ``None`` if nothing."""
    if item is None or isinstance(item, bool | float | bytes | bytearray | memoryview):
        return None
    if isinstance(item, int):
        if _INT_MIN <= item <= _INT_MAX:
            return None
        return (
            f"an int of {item.bit_length()} bits is out of msgpack's 64-bit range; send it as a "
            "str, e.g. str(...)"
        )
    if isinstance(item, str):
        try:
            item.encode()
        except UnicodeEncodeError as e:
            return (
                f"str holds {item[e.start]!r}, which UTF-8 cannot encode; use only valid text "
                "(e.g. .encode(errors='replace').decode()) or bytes"
            )
        return None
    if isinstance(item, msgpack.ExtType | msgpack.Timestamp):
        return f"{type(item).__name__} (a msgpack extension) is not allowed; use only {NATIVE}"
    if isinstance(item, dict | list | tuple):
        return None
    name = type(item).__name__
    hint = _HINTS.get(name, "a dict of its fields")
    return f"{name} is not msgpack-native; use only {NATIVE}, e.g. {hint}"


def _short(path: str) -> str:
    """``path`` shortened in its middle, between brackets, if it is long."""
    if len(path) <= _PATH_SHOWN:
        return path
    head, tail = path[:40], path[-36:]
    head = head[: head.rfind("]") + 1] or head
    tail = tail[tail.find("[") :] if "[" in tail else tail
    return f"{head}...{tail}"
