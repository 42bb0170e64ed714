"""Frames on the wire, and the links that carry them to one peer.

A frame is one msgpack object: an envelope, or an array of envelopes. The I/O thread packs
everything queued for one peer into as few frames as it can (batching), and unpacks every
envelope of a frame it receives; a frame that is not one whole msgpack object (truncated, or
followed by more bytes) is refused whole, but a bad envelope inside a whole batch costs only
itself.

A :class:`Link` is the DEALER to one peer, with a backlog for when ZeroMQ's queue to that peer
is full: frames wait there (in order) until the socket is writable again, so a slow peer slows
its senders' I/O thread down instead of losing messages.

Only the I/O thread uses these.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any, Final

import msgpack
import zmq

from macp.envelope import VERSION, Envelope, Kind, Priority, from_wire, new_id, now_ms, unpack
from macp.errors import EnvelopeError, error_body

__all__ = [
    "BATCH_BYTES",
    "GATEWAY",
    "Link",
    "addresses_of",
    "answers_asker",
    "pack_frames",
    "refusal",
    "unpack_frame",
]

BATCH_BYTES: Final = 256 * 1024
GATEWAY: Final = "$gateway"  # a client's one link: to the node that carries all its traffic
_BACKLOG_FRAMES: Final = 10_000
_ARRAY_HEADS: Final = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])  # an envelope starts a batch
_FIELDS_BEFORE_BODY: Final = 7
_ANSWERS: Final = frozenset({Kind.REPLY, Kind.ERROR})
_UNANSWERED: Final = frozenset({Kind.TELL, Kind.EVENT, Kind.HEARTBEAT})


def pack_frames(
    envs: list[Envelope],
    packer: msgpack.Packer,
    batch_bytes: int = BATCH_BYTES,
    limit: int | None = None,
) -> tuple[list[bytes], list[tuple[Envelope, EnvelopeError]]]:
    """Pack ``envs`` into frames of about ``batch_bytes``; also the envelopes refused, and why.

    A frame of one envelope is that envelope; a frame of several is a msgpack array of them
    (an array header, then the envelopes as packed). An envelope over ``limit`` bytes (the
    largest frame the receiver takes) is refused rather than sent to be dropped on the way.
    ``packer`` must belong to the calling thread (packers are not thread-safe).
    """
    frames: list[bytes] = []
    refused: list[tuple[Envelope, EnvelopeError]] = []
    parts: list[bytes] = []
    size = 0
    for env in envs:
        try:
            data = packer.pack(env)
        except (TypeError, ValueError, OverflowError) as e:
            packer.reset()
            refused.append((env, EnvelopeError(f"cannot encode {env.type!r}: {e}")))
            continue
        if limit is not None and len(data) > limit:
            refused.append((env, EnvelopeError(
                f"{env.type!r} to {env.dst} is a frame of {len(data):,} bytes, over the "
                f"{limit:,} its node accepts (a smaller max_message_bytes than this node's); "
                "send less, or give every node the same max_message_bytes"
            )))  # fmt: skip
            continue
        if size + len(data) > batch_bytes and parts:
            frames.append(_frame(parts, packer))
            parts, size = [], 0
        parts.append(data)
        size += len(data)
    if parts:
        frames.append(_frame(parts, packer))
    return frames, refused


def _frame(parts: list[bytes], packer: msgpack.Packer) -> bytes:
    if len(parts) == 1:
        return parts[0]
    header: bytes = packer.pack_array_header(len(parts))
    return header + b"".join(parts)


def unpack_frame(payload: bytes, max_bytes: int) -> tuple[list[Envelope], list[EnvelopeError]]:
    """The valid envelopes of one frame, in order, and an error for each invalid one.

    A bad envelope inside a batch costs only itself: when the frame does not unpack as a whole
    (an envelope holding an int map key, an extension type, ...), each envelope of the batch is
    unpacked on its own. An invalid envelope that still names its id, kind and addresses has
    them in its error's ``data`` (``id``, ``kind``, ``src``, ``dst``, ``corr``), so whoever
    waits on it can be answered.

    Raises:
        EnvelopeError: the frame as a whole is bad: empty, too large, not one msgpack object
            (truncated, or with bytes after it), or one envelope that is bad (then its
            ``data`` names whom to answer, as above, where the envelope says).
    """
    if not payload:
        raise EnvelopeError("empty frame")
    try:
        obj = unpack(payload, max_bytes)
    except EnvelopeError as e:
        parts = _split(payload, max_bytes)
        if parts is None:  # one whole envelope with a bad field or body: answer its sender
            header = _header_of(payload) if _whole(payload, max_bytes) else None
            raise EnvelopeError(e.message, data=header) from None
        return _unpack_each(parts, max_bytes)
    batch = obj if type(obj) is list and obj and type(obj[0]) is list else [obj]
    envelopes: list[Envelope] = []
    errors: list[EnvelopeError] = []
    for item in batch:
        try:
            envelopes.append(from_wire(item))
        except EnvelopeError as e:
            errors.append(EnvelopeError(e.message, data=addresses_of(item)))
    return envelopes, errors


def _split(payload: bytes, max_bytes: int) -> list[bytes] | None:
    """The envelopes of a batch frame, as bytes each; ``None`` if it is not a whole batch."""
    if len(payload) > max_bytes:
        return None
    unpacker = msgpack.Unpacker(max_buffer_size=len(payload))
    unpacker.feed(payload)
    try:
        count = unpacker.read_array_header()
        start = unpacker.tell()
        if not count or payload[start] not in _ARRAY_HEADS:
            return None  # one envelope, not a batch: refused whole
        parts: list[bytes] = []
        for _ in range(count):
            unpacker.skip()
            end = unpacker.tell()
            parts.append(payload[start:end])
            start = end
    except Exception:  # noqa: BLE001 - truncated or malformed: the frame is refused whole
        return None
    return parts if start == len(payload) else None


def _whole(payload: bytes, max_bytes: int) -> bool:
    """Whether ``payload`` is exactly one msgpack object (else its bytes are not its sender's
    to be blamed for: cut short, or followed by garbage)."""
    if len(payload) > max_bytes:
        return False
    unpacker = msgpack.Unpacker(max_buffer_size=len(payload))
    unpacker.feed(payload)
    try:
        unpacker.skip()
    except Exception:  # noqa: BLE001 - not one whole object
        return False
    return bool(unpacker.tell() == len(payload))


def _unpack_each(parts: list[bytes], max_bytes: int) -> tuple[list[Envelope], list[EnvelopeError]]:
    envelopes: list[Envelope] = []
    errors: list[EnvelopeError] = []
    for part in parts:
        try:
            envelopes.append(from_wire(unpack(part, max_bytes)))
        except EnvelopeError as e:
            errors.append(EnvelopeError(e.message, data=_header_of(part)))
    return envelopes, errors


def _header_of(part: bytes) -> dict[str, Any] | None:
    """The id, kind and addresses of an envelope whose body (or another field) is bad."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(part))
    unpacker.feed(part)
    try:
        if unpacker.read_array_header() < _FIELDS_BEFORE_BODY:
            return None
        fields = [unpacker.unpack() for _ in range(7)]  # v, id, kind, type, src, dst, corr
    except Exception:  # noqa: BLE001 - a header too broken to answer
        return None
    return addresses_of(fields)


def refusal(error: EnvelopeError, src: str) -> Envelope | None:
    """The ``error`` envelope answering a bad envelope whose sender waits for an answer (an
    ask or a control command that still named its id and sender), or whose addressee waits
    for it (a reply or error: then the waiting asker gets the error instead)."""
    data = error.data
    msg_id, kind, sender = data.get("id"), data.get("kind"), data.get("src")
    body = error_body(EnvelopeError(error.message))
    if kind in _ANSWERS:
        dst, corr = data.get("dst"), data.get("corr")
        if not isinstance(dst, str) or not isinstance(corr, str):
            return None
        return Envelope(
            VERSION, new_id(), Kind.ERROR, "error", src, dst, corr, Priority.HIGH, now_ms(),
            None, (), body,
        )  # fmt: skip
    if not isinstance(msg_id, str) or not isinstance(sender, str) or kind in _UNANSWERED:
        return None
    return Envelope(
        VERSION, new_id(), Kind.ERROR, "error", src, sender, msg_id, Priority.HIGH, now_ms(),
        None, (), body,
    )  # fmt: skip


def answers_asker(error: EnvelopeError) -> bool:
    """Whether the refusal of this bad envelope goes to an asker (it was a reply or error)."""
    return error.data.get("kind") in _ANSWERS


def addresses_of(obj: object) -> dict[str, Any] | None:
    """What a (possibly bad) envelope as a list says of who sent it and who waits on it."""
    if type(obj) is list and len(obj) > 4 and type(obj[1]) is str and type(obj[4]) is str:  # noqa: PLR2004
        found: dict[str, Any] = {"id": obj[1][:128], "src": obj[4][:512]}
        if len(obj) > 6 and type(obj[2]) is int:  # noqa: PLR2004
            found["kind"] = obj[2]
            if type(obj[3]) is str:
                found["type"] = obj[3][:256]
            if type(obj[5]) is str and (obj[6] is None or type(obj[6]) is str):
                found["dst"], found["corr"] = obj[5][:512], obj[6] and obj[6][:128]
        return found
    return None


class Link:
    """The DEALER to one peer, and the frames waiting for it."""

    __slots__ = (
        "address",
        "backlog",
        "failures",
        "last_sent",
        "monitor",
        "name",
        "redial_at",
        "socket",
    )

    def __init__(self, name: str, address: str, socket: zmq.Socket[bytes]) -> None:
        self.name = name
        self.address = address
        self.socket = socket
        self.monitor: zmq.Socket[bytes] | None = None  # connection events of ``socket``
        self.backlog: deque[bytes] = deque()
        self.last_sent = 0.0
        self.failures = 0  # handshakes failed in a row
        self.redial_at: float | None = None  # when to dial again after a failed handshake

    def send(self, frames: list[bytes], poller: zmq.Poller, counters: Counter[str]) -> None:
        """Send ``frames`` in order, keeping what the socket cannot take yet."""
        for frame in frames:
            if not self.backlog:
                try:
                    self.socket.send(frame, zmq.NOBLOCK)
                except zmq.Again:
                    pass
                else:
                    counters["frames_out"] += 1
                    continue
            if len(self.backlog) >= _BACKLOG_FRAMES:
                counters["dropped_backlog"] += 1
                continue
            if not self.backlog:
                poller.modify(self.socket, zmq.POLLIN | zmq.POLLOUT)
            self.backlog.append(frame)

    def flush(self, poller: zmq.Poller, counters: Counter[str]) -> None:
        """Send the backlog while the socket takes it (when the poller said writable)."""
        while self.backlog:
            try:
                self.socket.send(self.backlog[0], zmq.NOBLOCK)
            except zmq.Again:
                return
            self.backlog.popleft()
            counters["frames_out"] += 1
        poller.modify(self.socket, zmq.POLLIN)
