"""Frame isolation: a bad envelope inside a batched frame costs only itself; the others are
delivered, and whoever waits on the bad one is answered at once."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

import msgpack
import pytest
import zmq
from agents import Echo

import macp
from macp import Envelope, Kind, Settings
from macp.transport.router import SYSTEM

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp import Node

pytestmark = pytest.mark.fault

DEFAULTS: Final = Settings(strict=False)
BATCH: Final = 601
BAD: Final = 300  # the one envelope of the batch whose body has an int map key


def _batch(envelopes: list[list[Any]]) -> bytes:
    """One frame holding ``envelopes``, packed as a sender that checks nothing would."""
    frame: bytes = msgpack.packb(envelopes)
    return frame


def _received(sock: zmq.Socket[bytes], count: int, kind: int | None) -> list[list[Any]]:
    """The first ``count`` envelopes (of ``kind``, if given) to arrive on ``sock`` (in 10 s)."""
    found: list[list[Any]] = []
    deadline = time.monotonic() + 10
    while len(found) < count:
        assert sock.poll(max(0, int((deadline - time.monotonic()) * 1000))), (
            f"{len(found)} of {count} arrived"
        )
        frame = sock.recv_multipart()[-1]
        obj = msgpack.unpackb(frame, raw=False, strict_map_key=False)
        batch = obj if obj and type(obj[0]) is list else [obj]
        # (not the node.info a node asks its peers before it links to them: its name's claim)
        found.extend(e for e in batch if kind in {None, e[2]} and e[3] != "node.info")
    return found


def test_a_bad_reply_in_a_batch_fails_only_its_asker_and_at_once(
    make_node: Callable[..., Node], zmq_socket: Callable[[int], zmq.Socket[bytes]]
) -> None:
    """A peer answers 601 asks in one frame, one reply holding an int map key: the 600 others
    are delivered, and the asker of the bad one gets an EnvelopeError, not a timeout."""
    inbound = zmq_socket(zmq.ROUTER)  # what node "t" sends to the peer "raw"
    inbound.bind("tcp://127.0.0.1:*")
    node = make_node(
        "t",
        listen="tcp://127.0.0.1:0",
        settings=DEFAULTS,
        peers={"raw": inbound.getsockopt_string(zmq.LAST_ENDPOINT)},
    )
    outbound = zmq_socket(zmq.DEALER)  # what the peer "raw" answers through
    outbound.setsockopt(zmq.IDENTITY, b"raw")
    assert node.address is not None
    outbound.connect(node.address)
    heartbeat = Envelope.new(Kind.HEARTBEAT, "heartbeat", f"{SYSTEM}@raw", f"{SYSTEM}@t", {})
    outbound.send(msgpack.packb(heartbeat))

    futures = [node.ask("echo@raw", "echo", i, timeout_s=5) for i in range(BATCH)]
    asks = _received(inbound, BATCH, Kind.ASK)
    replies = [
        list(Envelope.new(Kind.REPLY, "echo", "echo@raw", ask[4], ask[11], corr=ask[1]))
        for ask in asks
    ]
    replies[BAD][11] = {1: "an int key"}  # type: ignore[dict-item]
    start = time.monotonic()
    outbound.send(_batch(replies))

    for i, future in enumerate(futures):
        if i == BAD:
            with pytest.raises(macp.EnvelopeError, match=r"not a msgpack envelope"):
                future.get()
        else:
            assert future.get() == i
    assert time.monotonic() - start < 1.0
    assert node.router is not None
    assert node.router.counters["bad_envelopes"] == 1


def test_a_bad_ask_in_a_batch_is_answered_and_the_others_are_served(
    make_node: Callable[..., Node], zmq_socket: Callable[[int], zmq.Socket[bytes]]
) -> None:
    node = make_node("t", listen="tcp://127.0.0.1:0", settings=DEFAULTS)
    node.spawn(Echo, "echo")
    client = zmq_socket(zmq.DEALER)
    client.setsockopt(zmq.IDENTITY, b"batcher")
    assert node.address is not None
    client.connect(node.address)
    asks = [
        list(Envelope.new(Kind.ASK, "echo", "$client@~batcher", "echo@t", i)) for i in range(BATCH)
    ]
    asks[BAD][11] = {"counts": {7: "seven"}}  # type: ignore[dict-item]
    client.send(_batch(asks))

    answers = _received(client, BATCH, None)
    replies = [a for a in answers if a[2] == Kind.REPLY]
    assert sorted(r[11]["echo"] for r in replies) == [i for i in range(BATCH) if i != BAD]
    (error,) = [a for a in answers if a[2] == Kind.ERROR]
    assert error[6] == asks[BAD][1]
    assert error[11]["error"] == "EnvelopeError"
    assert node.router is not None
    assert node.router.counters["bad_envelopes"] == 1


def test_a_frame_nested_deep_around_a_timestamp_is_refused_and_the_node_goes_on(
    make_node: Callable[..., Node], zmq_socket: Callable[[int], zmq.Socket[bytes]]
) -> None:
    """msgpack reads about 1,000 levels; the search for a timestamp must not recurse that deep
    (a RecursionError there would end the node's I/O thread)."""
    node = make_node("t", listen="tcp://127.0.0.1:0", settings=DEFAULTS)
    node.spawn(Echo, "echo")
    client = zmq_socket(zmq.DEALER)
    client.setsockopt(zmq.IDENTITY, b"deep")
    assert node.address is not None
    client.connect(node.address)
    ask = list(Envelope.new(Kind.ASK, "echo", "$client@~deep", "echo@t", None))
    head = b"\x9c" + b"".join(msgpack.packb(field) for field in ask[:11])
    client.send(head + b"\x91" * 1000 + b"\xd6\xff" + bytes(4))  # a timestamp, 1,000 down

    (refused,) = _received(client, 1, Kind.ERROR)
    assert refused[6] == ask[1]
    assert refused[11]["message"] == "extension type -1 (a timestamp) is not allowed in an envelope"
    probe = Envelope.new(Kind.ASK, "echo", "$client@~deep", "echo@t", "still there?")
    client.send(msgpack.packb(probe))
    (reply,) = _received(client, 1, Kind.REPLY)
    assert reply[11]["echo"] == "still there?"
