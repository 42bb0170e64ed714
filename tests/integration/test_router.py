"""Two transports with no Node: real sockets on 127.0.0.1, and what each hands up to its
callbacks (deliver, peer events, asks to the node itself)."""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING

import pytest

from macp import Envelope, Kind, Settings, UnknownMessageType, Wire
from macp.errors import error_from_body
from macp.transport.callbacks import Callbacks
from macp.transport.liveness import PeerEvent
from macp.transport.router import SYSTEM, Router

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

SETTINGS = Settings(strict=True, heartbeat_interval_s=0.2, acceptable_pause_s=0.4)
WAIT_S = 10.0


class Upstairs:
    """What a node would be to its transport: it records what is handed up, and answers asks
    to its actors (``echo``) through its router, as a node's actor would."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.router: Router | None = None
        self.delivered: queue.Queue[tuple[Envelope, str]] = queue.Queue()
        self.events: queue.Queue[PeerEvent] = queue.Queue()
        self.sent: queue.Queue[Envelope] = queue.Queue()

    def callbacks(self) -> Callbacks:
        return Callbacks(
            deliver=self.deliver,
            send=self.sent.put,
            peer_event=self.events.put,
            node_ask=self.node_ask,
        )

    def deliver(self, env: Envelope, name: str) -> None:
        self.delivered.put((env, name))
        if env.kind == Kind.ASK and name == "echo":
            assert self.router is not None
            answer = env.reply({"echo": env.body, "by": env.dst}, env.dst)
            self.router.send(answer, env.src.partition("@")[2])

    def node_ask(self, type: str, body: Wire) -> Wire:
        if type == "node.info":
            return {"name": self.name, "asked": body}
        raise UnknownMessageType(f"nodes do not handle {type!r}")

    def next_delivered(self) -> tuple[Envelope, str]:
        return self.delivered.get(timeout=WAIT_S)

    def next_event(self) -> PeerEvent:
        return self.events.get(timeout=WAIT_S)


def _router(up: Upstairs, **transport: object) -> Router:
    router = Router(
        up.name,
        "tcp://127.0.0.1:0",
        up.callbacks(),
        settings=SETTINGS,
        **transport,  # type: ignore[arg-type]
    )
    up.router = router
    return router


@pytest.fixture
def pair() -> Iterator[tuple[Upstairs, Upstairs]]:
    """Routers "a" and "b", each up at the other (b was given a's address: hello did the rest)."""
    a, b = Upstairs("a"), Upstairs("b")
    started: list[Router] = []
    try:
        ra = _router(a)
        ra.start()
        started.append(ra)
        assert ra.address is not None
        rb = _router(b, peers={"a": ra.address})
        rb.start()
        started.append(rb)
        assert a.next_event() == PeerEvent("node.up", "b", "heard")
        assert b.next_event() == PeerEvent("node.up", "a", "heard")
        yield a, b
    finally:
        for router in reversed(started):
            router.stop()


def _tell(src: str, dst: str, body: Wire) -> Envelope:
    return Envelope.new(Kind.TELL, "note", src, dst, body)


def test_two_routers_say_hello_and_see_each_other_up(pair: tuple[Upstairs, Upstairs]) -> None:
    a, b = pair
    assert a.router is not None
    assert b.router is not None
    assert a.router.peers()["b"]["state"] == "up"
    assert b.router.peers()["a"]["state"] == "up"
    assert a.router.peers()["b"]["address"] == b.router.address


def test_a_tell_each_way_is_delivered_to_the_named_actor(pair: tuple[Upstairs, Upstairs]) -> None:
    a, b = pair
    assert a.router is not None
    assert b.router is not None
    a.router.send(_tell("x@a", "y@b", {"n": 1}), "b")
    env, name = b.next_delivered()
    assert (name, env.src, env.dst, env.body) == ("y", "x@a", "y@b", {"n": 1})
    b.router.send(_tell("y@b", "x@a", [2, "two"]), "a")
    env, name = a.next_delivered()
    assert (name, env.src, env.body) == ("x", "y@b", [2, "two"])


def test_an_ask_is_answered_through_the_callbacks(pair: tuple[Upstairs, Upstairs]) -> None:
    a, b = pair
    assert a.router is not None
    ask = Envelope.new(Kind.ASK, "echo", "caller@a", "echo@b", "hi")
    a.router.send(ask, "b")
    asked, name = b.next_delivered()
    assert (name, asked.id) == ("echo", ask.id)
    reply, name = a.next_delivered()  # b's actor answered through b's router
    assert (reply.kind, reply.corr, name) == (Kind.REPLY, ask.id, "caller")
    assert reply.body == {"echo": "hi", "by": "echo@b"}


def test_an_ask_to_the_node_itself_is_answered_by_the_node_ask_callback(
    pair: tuple[Upstairs, Upstairs],
) -> None:
    a, _ = pair
    assert a.router is not None
    for type_, body in (("node.info", {"q": 1}), ("node.nonsense", None)):
        ask = Envelope.new(Kind.ASK, type_, "caller@a", f"{SYSTEM}@b", body)
        a.router.send(ask, "b")
        answer, name = a.next_delivered()
        assert (answer.corr, answer.src, name) == (ask.id, f"{SYSTEM}@b", "caller")
        if type_ == "node.info":
            assert (answer.kind, answer.body) == (Kind.REPLY, {"name": "b", "asked": {"q": 1}})
        else:
            assert answer.kind == Kind.ERROR
            error = error_from_body(answer.body)
            assert isinstance(error, UnknownMessageType)
            assert error.message == "nodes do not handle 'node.nonsense'"


def test_a_peer_goes_down_when_its_router_stops(pair: tuple[Upstairs, Upstairs]) -> None:
    a, b = pair
    assert a.router is not None
    assert b.router is not None
    b.router.stop()
    assert a.next_event() == PeerEvent("node.down", "b", "left")
    assert a.router.peers()["b"]["state"] == "down"
    ask = Envelope.new(Kind.ASK, "echo", "caller@a", "echo@b", "late")
    a.router.send(ask, "b")
    refused = a.sent.get(timeout=WAIT_S)  # the asker's answer, handed to the node's send
    assert (refused.kind, refused.corr, refused.dst) == (Kind.ERROR, ask.id, "caller@a")
    assert error_from_body(refused.body).message == "node 'b' is down"
    assert a.delivered.empty()
