"""Frames on the wire, and the links that carry them to one peer.

A frame is one msgpack object: an envelope, or an array of envelopes. The I/O thread packs
everything queued for one peer into as few frames as it can (batching), and unpacks every
envelope of a frame it receives; a frame that is not one whole msgpack object (truncated, or
followed by more bytes) is refused whole.

A :class:`Link` is the DEALER to one peer, with a backlog for when ZeroMQ's queue to that peer
is full: frames wait there (in order) until the socket is writable again, so a slow peer slows
its senders' I/O thread down instead of losing messages.

Only the I/O thread uses these.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import TYPE_CHECKING, Any, Final

import zmq

from macp.envelope import VERSION, Envelope, Kind, Priority, from_wire, new_id, now_ms, unpack
from macp.errors import EnvelopeError, error_body

if TYPE_CHECKING:
    import msgpack

__all__ = ["BATCH_BYTES", "GATEWAY", "Link", "pack_frames", "refusal", "unpack_frame"]

BATCH_BYTES: Final = 256 * 1024
GATEWAY: Final = "$gateway"  # a client's one link: to the node that carries all its traffic
_BACKLOG_FRAMES: Final = 10_000


def pack_frames(
    envs: list[Envelope], packer: msgpack.Packer, batch_bytes: int = BATCH_BYTES
) -> tuple[list[bytes], list[tuple[Envelope, EnvelopeError]]]:
    """Pack ``envs`` into frames of about ``batch_bytes``; also the envelopes refused, and why.

    A frame of one envelope is that envelope; a frame of several is a msgpack array of them
    (an array header, then the envelopes as packed). ``packer`` must belong to the calling
    thread (packers are not thread-safe).
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

    An invalid envelope that still names its id and sender has them in its error's ``data``
    (``id``, ``src``), so the sender can be answered.

    Raises:
        EnvelopeError: the frame as a whole is bad: empty, too large, not one msgpack object
            (truncated, or with bytes after it), or holding an extension type.
    """
    if not payload:
        raise EnvelopeError("empty frame")
    obj = unpack(payload, max_bytes)
    batch = obj if type(obj) is list and obj and type(obj[0]) is list else [obj]
    envelopes: list[Envelope] = []
    errors: list[EnvelopeError] = []
    for item in batch:
        try:
            envelopes.append(from_wire(item))
        except EnvelopeError as e:
            errors.append(EnvelopeError(e.message, data=_reply_to(item)))
    return envelopes, errors


def refusal(error: EnvelopeError, src: str) -> Envelope | None:
    """The ``error`` envelope answering a bad envelope that still named its id and sender."""
    msg_id, dst = error.data.get("id"), error.data.get("src")
    if not isinstance(msg_id, str) or not isinstance(dst, str):
        return None
    body = error_body(EnvelopeError(error.message))
    return Envelope(
        VERSION, new_id(), Kind.ERROR, "error", src, dst, msg_id, Priority.HIGH, now_ms(), None,
        (), body,
    )  # fmt: skip


def _reply_to(obj: object) -> dict[str, Any] | None:
    if type(obj) is list and len(obj) > 4 and type(obj[1]) is str and type(obj[4]) is str:  # noqa: PLR2004
        return {"id": obj[1][:128], "src": obj[4][:512]}
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
