"""The envelope: the one record actors exchange, locally and across nodes.

On the wire an envelope is a msgpack array whose fields follow the order of :class:`Envelope`,
starting with the format version. :func:`decode` never trusts its input: it checks the size,
the shape, every field's type, the kind and the version, and raises :class:`EnvelopeError`
(never anything else) with a one-line reason.

The record is a ``NamedTuple`` rather than a frozen dataclass: it is immutable all the same,
costs a quarter of the time to build (the local hot path builds one per message), and is
already the positional array msgpack writes.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from enum import IntEnum
from typing import Final, NamedTuple

import msgpack

from macp.errors import EnvelopeError, InvalidParams, error_body
from macp.wire import DEFAULT_MAX_BYTES, Wire

__all__ = [
    "DEFAULT_MAX_BYTES",
    "VERSION",
    "Envelope",
    "Kind",
    "Priority",
    "Wire",
    "decode",
    "encode",
    "new_id",
    "now_ms",
    "round_trip",
    "unpack",
]

VERSION: Final = 1
_FIELDS: Final = 12
_MAX_ID: Final = 128
_MAX_TYPE: Final = 256
_MAX_ADDRESS: Final = 512
_MAX_CHAIN: Final = 64


class Kind(IntEnum):
    """What an envelope is for; travels as a small integer."""

    TELL = 0
    ASK = 1
    REPLY = 2
    ERROR = 3
    CONTROL = 4
    EVENT = 5
    HEARTBEAT = 6


class Priority(IntEnum):
    """Inbox priority; a higher one overtakes queued lower ones, FIFO within one priority."""

    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3


_KINDS: Final = frozenset(int(k) for k in Kind)
_REPLY: Final = Kind.REPLY
_tuple_new = tuple.__new__
_time_ns = time.time_ns
_ANSWERED: Final = frozenset({Kind.ASK, Kind.CONTROL})


class Envelope(NamedTuple):
    """One message. Build with :meth:`new`; answer with :meth:`reply` or :meth:`error`.

    Attributes:
        v: wire format version.
        id: unique message id.
        kind: a :class:`Kind` (an ``int`` once decoded; they compare equal).
        type: message type name, e.g. ``"summarize"`` or ``"control.pause"``.
        src: the sender's address ``name@node``.
        dst: the receiver's address, ``name@node`` or a bare ``name``.
        corr: for replies and errors, the id of the message answered.
        prio: a :class:`Priority`.
        ts: send time, epoch milliseconds.
        deadline: epoch milliseconds after which the message is dropped, or ``None``.
        chain: for asks, the addresses already waiting on this call.
        body: the payload, msgpack-native data only.
    """

    v: int
    id: str
    kind: int
    type: str
    src: str
    dst: str
    corr: str | None
    prio: int
    ts: int
    deadline: int | None
    chain: tuple[str, ...]
    body: Wire

    @classmethod
    def new(  # noqa: PLR0917 - positional defaults are filled in faster than keyword-only ones
        cls,
        kind: Kind,
        type: str,
        src: str,
        dst: str,
        body: Wire = None,
        prio: int = Priority.MEDIUM,
        corr: str | None = None,
        deadline: int | None = None,
        chain: tuple[str, ...] = (),
    ) -> Envelope:
        """Build an envelope with a fresh id and the current time."""
        # tuple.__new__ rather than the generated __new__, the id and time inline, and no
        # keyword-only parameters (their defaults cost more to fill in): this runs per message.
        return _tuple_new(cls, (
            VERSION, f"{_prefix}{next(_counter):x}", kind, type, src, dst, corr, prio,
            _time_ns() // 1_000_000, deadline, chain, body,
        ))  # fmt: skip

    @property
    def answered(self) -> bool:
        """Whether the sender waits for a ``reply`` or ``error`` (asks and control commands)."""
        return self.kind in _ANSWERED

    def reply(self, body: Wire, src: str | None = None) -> Envelope:
        """The ``reply`` envelope that answers this one with ``body``."""
        return _tuple_new(Envelope, (
            VERSION, f"{_prefix}{next(_counter):x}", _REPLY, self.type, src or self.dst,
            self.src, self.id, self.prio, _time_ns() // 1_000_000, None, (), body,
        ))  # fmt: skip

    def error(self, exc: BaseException, src: str | None = None) -> Envelope:
        """The ``error`` envelope that answers this one with ``exc`` (see :func:`error_body`)."""
        return Envelope(
            VERSION, new_id(), Kind.ERROR, self.type, src or self.dst, self.src, self.id,
            self.prio, now_ms(), None, (), error_body(exc),
        )  # fmt: skip

    def expired(self, at_ms: int | None = None) -> bool:
        """Whether the deadline, if any, has passed."""
        return self.deadline is not None and (at_ms or now_ms()) > self.deadline


# Ids are a per-process random prefix plus a counter: unique across processes, cheap to make.
_counter = itertools.count()
_prefix = secrets.token_hex(5)


def _reset_ids_after_fork() -> None:
    global _counter, _prefix  # noqa: PLW0603
    _counter = itertools.count()
    _prefix = secrets.token_hex(5)


os.register_at_fork(after_in_child=_reset_ids_after_fork)


def new_id() -> str:
    """A message id unique across processes and hosts."""
    return f"{_prefix}{next(_counter):x}"


def now_ms() -> int:
    """The current time, epoch milliseconds."""
    return int(time.time() * 1000)


def encode(env: Envelope, packer: msgpack.Packer | None = None) -> bytes:
    """Encode ``env`` as a msgpack array.

    Args:
        env: the envelope.
        packer: a packer to reuse (one per thread; packers are not thread-safe).

    Raises:
        InvalidParams: the body holds data msgpack cannot write (a set, an object, ...).
    """
    try:
        data: bytes = packer.pack(env) if packer is not None else msgpack.packb(env)
    except (TypeError, ValueError, OverflowError) as e:
        if packer is not None:
            packer.reset()
        raise InvalidParams(
            f"the body of {env.type!r} is not msgpack-native data ({e}); send only "
            "dict/list/str/bytes/int/float/bool/None"
        ) from e
    return data


def _refuse_ext(code: int, _data: bytes) -> object:
    raise EnvelopeError(f"extension type {code} is not allowed in an envelope")


def _check(ok: bool, field: str, value: object) -> None:
    if not ok:
        raise EnvelopeError(f"field {field!r} has an invalid value {value!r:.80}")


def _is_int(x: object) -> bool:
    return type(x) is int


def _is_str(x: object, limit: int) -> bool:
    return type(x) is str and len(x) <= limit


def _is_opt_str(x: object, limit: int) -> bool:
    return x is None or _is_str(x, limit)


def from_wire(obj: object) -> Envelope:
    """Validate an unpacked msgpack object and build the envelope it describes.

    Raises:
        EnvelopeError: ``obj`` is not a valid envelope.
    """
    # The common case first, in one expression (this runs for every envelope received);
    # anything it does not accept goes through the checks below, which say what is wrong.
    if type(obj) is list and len(obj) == _FIELDS:
        v, id_, kind, type_, src, dst, corr, prio, ts, deadline, chain, _ = obj
        if (
            v == VERSION and type(v) is int
            and type(id_) is str and 0 < len(id_) <= _MAX_ID
            and type(kind) is int and kind in _KINDS
            and type(type_) is str and 0 < len(type_) <= _MAX_TYPE
            and type(src) is str and len(src) <= _MAX_ADDRESS
            and type(dst) is str and len(dst) <= _MAX_ADDRESS
            and (corr is None or (type(corr) is str and len(corr) <= _MAX_ID))
            and type(prio) is int and 0 <= prio <= 3  # noqa: PLR2004 - Priority.CRITICAL
            and type(ts) is int
            and (deadline is None or type(deadline) is int)
            and type(chain) is list and not chain
        ):  # fmt: skip
            obj[10] = ()
            return _tuple_new(Envelope, obj)
    return _checked(obj)


def _checked(obj: object) -> Envelope:
    if type(obj) is not list:
        raise EnvelopeError(f"an envelope is a msgpack array, not {type(obj).__name__}")
    if not obj or obj[0] != VERSION or not _is_int(obj[0]):
        version = obj[0] if obj else None
        raise EnvelopeError(
            f"unsupported wire version {version!r:.40} (this node speaks {VERSION})"
        )
    if len(obj) != _FIELDS:
        raise EnvelopeError(f"an envelope has {_FIELDS} fields, this one has {len(obj)}")
    _, id_, kind, type_, src, dst, corr, prio, ts, deadline, chain, _body = obj
    _check(_is_str(id_, _MAX_ID) and bool(id_), "id", id_)
    _check(_is_int(kind) and kind in _KINDS, "kind", kind)
    _check(_is_str(type_, _MAX_TYPE) and bool(type_), "type", type_)
    _check(_is_str(src, _MAX_ADDRESS), "src", src)
    _check(_is_str(dst, _MAX_ADDRESS), "dst", dst)
    _check(_is_opt_str(corr, _MAX_ID), "corr", corr)
    _check(_is_int(prio) and Priority.LOW <= prio <= Priority.CRITICAL, "prio", prio)
    _check(_is_int(ts), "ts", ts)
    _check(deadline is None or _is_int(deadline), "deadline", deadline)
    _check(
        type(chain) is list
        and len(chain) <= _MAX_CHAIN
        and all(_is_str(a, _MAX_ADDRESS) for a in chain),
        "chain",
        chain,
    )
    obj[10] = tuple(chain) if chain else ()
    return Envelope._make(obj)


# Ext type -1 (a timestamp) never reaches ext_hook: msgpack decodes it itself. These byte
# sequences are its three encodings; only a frame holding one of them is searched for one.
_TIMESTAMP_MARKS: Final = (b"\xd6\xff", b"\xd7\xff", b"\xc7\x0c\xff")


def _holds_timestamp(obj: object) -> bool:
    """Whether a timestamp sits anywhere in ``obj`` (iterative: a peer chooses the depth)."""
    pending = [obj]
    while pending:
        item = pending.pop()
        if isinstance(item, msgpack.Timestamp):
            return True
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
    return False


def unpack(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> object:
    """Unpack one msgpack object of at most ``max_bytes``, refusing extension types.

    Raises:
        EnvelopeError: ``data`` is too large, not exactly one msgpack object (truncated, or
            followed by more bytes), or holds an extension type.
    """
    if len(data) > max_bytes:
        raise EnvelopeError(f"frame of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_refuse_ext)
    except EnvelopeError:
        raise
    except Exception as e:
        raise EnvelopeError(f"not a msgpack envelope ({type(e).__name__}: {e})") from e
    if b"\xff" in data and any(m in data for m in _TIMESTAMP_MARKS) and _holds_timestamp(obj):
        raise EnvelopeError("extension type -1 (a timestamp) is not allowed in an envelope")
    return obj


def decode(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Envelope:
    """Decode one envelope from ``data``.

    Raises:
        EnvelopeError: ``data`` is too large, not msgpack, or not a valid envelope.
    """
    return from_wire(unpack(data, max_bytes))


def round_trip(env: Envelope) -> Envelope:
    """Encode and decode ``env``: what the strict setting does to every local message (its
    size was the sender's to check: any ``max_message_bytes`` goes)."""
    data = encode(env)
    return decode(data, max_bytes=len(data))
