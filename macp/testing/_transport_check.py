"""The contract a transport between two nodes keeps, as a check any transport can be put to
(trio.testing's ``check_*_stream`` in spirit): :func:`check_transport`."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgpack
import zmq

from macp.envelope import Envelope, Kind, Wire
from macp.errors import MacpError, UnknownMessageType, error_from_body
from macp.settings import Settings
from macp.transport.callbacks import Callbacks
from macp.transport.router import SYSTEM, Router

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp.transport.liveness import PeerEvent

__all__ = ["MakeTransport", "Transport", "check_transport", "router_transport"]

_ORDERED: Final = 1_000  # tells sent in one burst to check order and loss
_LIMIT: Final = 64 * 1024  # b's max_message_bytes: a must not send it more
_FREEZE: Final = "check.freeze"  # a tell whose delivery holds b's transport thread


class Transport(Protocol):
    """A node's transport as :func:`check_transport` uses it (what :class:`Router` offers)."""

    @property
    def address(self) -> str | None: ...
    def start(self, timeout_s: float = ...) -> None: ...
    def stop(self, timeout_s: float = ...) -> None: ...
    def send(self, env: Envelope, node: str) -> None: ...


class MakeTransport(Protocol):
    """Builds (does not start) node ``name``'s transport, listening on a free local port,
    handing what it receives to ``callbacks``, knowing ``peers`` (``name -> address``)."""

    def __call__(
        self, name: str, callbacks: Callbacks, *, settings: Settings, peers: Mapping[str, str]
    ) -> Transport: ...


def router_transport(
    name: str, callbacks: Callbacks, *, settings: Settings, peers: Mapping[str, str]
) -> Router:
    """macp's transport (:class:`~macp.transport.router.Router`) on 127.0.0.1, port 0."""
    return Router(name, "tcp://127.0.0.1:0", callbacks, settings=settings, peers=peers)


def _fail(prop: str, detail: str) -> AssertionError:
    return AssertionError(f"{prop}: {detail}")


class _Node:
    """What a node is to its transport, played by the check: it keeps what is handed up, and
    answers asks to ``echo`` (through its transport, as an actor would)."""

    def __init__(self, name: str, timeout_s: float) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.transport: Transport | None = None
        self.delivered: queue.Queue[tuple[Envelope, str]] = queue.Queue()
        self.events: queue.Queue[PeerEvent] = queue.Queue()
        self.thaw = threading.Event()

    def callbacks(self) -> Callbacks:
        return Callbacks(
            deliver=self._deliver, send=self._send, peer_event=self.events.put, node_ask=self._ask
        )

    def _deliver(self, env: Envelope, name: str) -> None:
        if env.type == _FREEZE:
            self.thaw.wait(self.timeout_s)  # the transport's thread is held: a frozen process
            return
        self.delivered.put((env, name))
        if env.kind == Kind.ASK and name == "echo" and self.transport is not None:
            reply = env.reply({"echo": env.body, "by": env.dst}, env.dst)
            self.transport.send(reply, env.src.partition("@")[2])

    def _send(self, env: Envelope) -> None:
        # What the transport hands back to route (a refusal to a local asker): kept as delivered.
        node = env.dst.partition("@")[2]
        if node == self.name:
            self.delivered.put((env, env.dst.partition("@")[0]))

    def _ask(self, type: str, body: Wire) -> Wire:
        if type == "node.info":
            return {"name": self.name, "asked": body}
        raise UnknownMessageType(f"nodes do not handle {type!r}")

    def next(self, prop: str, what: str) -> tuple[Envelope, str]:
        try:
            return self.delivered.get(timeout=self.timeout_s)
        except queue.Empty:
            raise _fail(prop, f"{self.name} got no {what} within {self.timeout_s:g} s") from None

    def event(self, prop: str, kind: str, peer: str, within_s: float) -> PeerEvent:
        """The next peer event of ``kind`` about ``peer`` (others on the way are passed over)."""
        deadline = time.monotonic() + within_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            if (event.kind, event.node) == (kind, peer):
                return event
        raise _fail(prop, f"{self.name} saw no {kind} of {peer} within {within_s:g} s")


def _tell(src: str, dst: str, body: Wire, type: str = "note") -> Envelope:
    return Envelope.new(Kind.TELL, type, src, dst, body)


def check_transport(
    make: MakeTransport = router_transport,
    *,
    settings: Settings | None = None,
    timeout_s: float = 10.0,
) -> None:
    """Put two transports made by ``make`` ("a", and "b" told a's address) through the
    contract every transport keeps, one property after another:

    - *peer up on connect*: each sees a ``node.up`` of the other;
    - *tell delivery*: a tell each way reaches the actor it names;
    - *ask and reply*: an ask is delivered, and the reply sent back reaches the asker;
    - *asks to the node itself*: ``node.info`` to ``$node@b`` is answered by b's ``node_ask``
      callback, an unknown type with ``UnknownMessageType``;
    - *delivery of every message* and *order per sender*: 1,000 tells from a reach b, all of
      them, in the order sent;
    - *a bad frame costs only itself*: a frame (macp's wire: msgpack envelopes over ZeroMQ) of
      three asks, the middle one malformed, sent to a's address: the two good ones are
      delivered and answered, the bad one gets an error, and a goes on;
    - *the peer's frame limit*: b accepts smaller messages than a; an ask over b's limit is
      refused to its asker at a, and b never sees it;
    - *peer down on silence* and *peer up again*: b's transport thread is held (a callback
      that does not return, as a frozen process): a finds b down within its heartbeat window,
      and up again once b is released;
    - *stop*: b stops; a sees it down, an ask to it is refused to its asker, and every thread
      b's transport started has ended; then a stops, its threads ended too.

    Raises:
        AssertionError: a property does not hold; the message starts with its name.
    """
    s = settings or Settings(strict=False, heartbeat_interval_s=0.2, acceptable_pause_s=0.5)
    small = dataclasses.replace(s, max_message_bytes=_LIMIT)
    window_s = 3 * s.heartbeat_interval_s + s.acceptable_pause_s
    a, b = _Node("a", timeout_s), _Node("b", timeout_s)
    started: list[tuple[Transport, set[threading.Thread]]] = []
    try:
        ta = _start(make, a, s, {}, started)
        assert ta.address is not None
        _start(make, b, small, {"a": ta.address}, started)
        a.event("peer up on connect", "node.up", "b", timeout_s)
        b.event("peer up on connect", "node.up", "a", timeout_s)
        _messages(a, b)
        _bad_frame(a, b, timeout_s)
        _frame_limit(a, b)
        b.thaw.clear()
        ta.send(_tell("x@a", "y@b", None, _FREEZE), "b")
        a.event("peer down on silence", "node.down", "b", window_s + timeout_s)
        b.thaw.set()
        a.event("peer up again", "node.up", "b", timeout_s)
        _stop(a, started, timeout_s)
    finally:
        b.thaw.set()
        while started:
            transport, _ = started.pop()
            transport.stop()


def _start(
    make: MakeTransport,
    node: _Node,
    settings: Settings,
    peers: dict[str, str],
    started: list[tuple[Transport, set[threading.Thread]]],
) -> Transport:
    before = set(threading.enumerate())
    transport = make(node.name, node.callbacks(), settings=settings, peers=peers)
    node.transport = transport
    transport.start()
    started.append((transport, set(threading.enumerate()) - before))
    return transport


def _messages(a: _Node, b: _Node) -> None:
    _tells(a, b)
    _asks(a, b)
    _node_asks(a)
    _order(a, b)


def _tells(a: _Node, b: _Node) -> None:
    ta, tb = a.transport, b.transport
    assert ta is not None
    assert tb is not None
    prop = "tell delivery"
    ta.send(_tell("x@a", "y@b", {"n": 1}), "b")
    env, name = b.next(prop, "tell from a")
    if (name, env.kind, env.src, env.dst, env.body) != ("y", Kind.TELL, "x@a", "y@b", {"n": 1}):
        raise _fail(prop, f"b got {env!r} for actor {name!r}, not a's tell to y@b")
    tb.send(_tell("y@b", "x@a", [2, "two"]), "a")
    env, name = a.next(prop, "tell from b")
    if (name, env.src, env.body) != ("x", "y@b", [2, "two"]):
        raise _fail(prop, f"a got {env!r} for actor {name!r}, not b's tell to x@a")


def _asks(a: _Node, b: _Node) -> None:
    ta = a.transport
    assert ta is not None
    prop = "ask and reply"
    ask = Envelope.new(Kind.ASK, "echo", "caller@a", "echo@b", "hi")
    ta.send(ask, "b")
    asked, name = b.next(prop, "ask from a")
    if (name, asked.id, asked.kind) != ("echo", ask.id, Kind.ASK):
        raise _fail(prop, f"b got {asked!r} for actor {name!r}, not a's ask to echo@b")
    reply, name = a.next(prop, "reply from b")
    if (reply.kind, reply.corr, name, reply.body) != (
        Kind.REPLY, ask.id, "caller", {"echo": "hi", "by": "echo@b"}
    ):  # fmt: skip
        raise _fail(prop, f"a got {reply!r} for {name!r}, not b's reply to its ask")


def _node_asks(a: _Node) -> None:
    ta = a.transport
    assert ta is not None
    prop = "asks to the node itself"
    for type_, body in (("node.info", {"q": 1}), ("node.nonsense", None)):
        ask = Envelope.new(Kind.ASK, type_, "caller@a", f"{SYSTEM}@b", body)
        ta.send(ask, "b")
        answer, name = a.next(prop, f"answer to {type_}")
        if (answer.corr, name) != (ask.id, "caller"):
            raise _fail(prop, f"a got {answer!r} for {name!r}, not the answer to {type_}")
        if type_ == "node.info" and answer.body != {"name": "b", "asked": {"q": 1}}:
            raise _fail(prop, f"node.info was answered {answer.body!r}, not by b's node_ask")
        if type_ != "node.info" and not (
            answer.kind == Kind.ERROR
            and isinstance(error_from_body(answer.body), UnknownMessageType)
        ):
            raise _fail(prop, f"an unknown type was answered {answer!r}, not UnknownMessageType")


def _order(a: _Node, b: _Node) -> None:
    ta = a.transport
    assert ta is not None
    for i in range(_ORDERED):
        ta.send(_tell("x@a", "seq@b", i, "seq"), "b")
    got: list[Wire] = []
    while len(got) < _ORDERED:
        try:
            env, _ = b.delivered.get(timeout=a.timeout_s)
        except queue.Empty:
            missing = sorted(set(range(_ORDERED)) - set(got))
            raise _fail(
                "delivery of every message",
                f"b got {len(got)} of {_ORDERED} tells a sent on a live link; "
                f"missing: {missing[:10]}",
            ) from None
        got.append(env.body)
    if got != list(range(_ORDERED)):
        at = next(i for i, body in enumerate(got) if body != i)
        raise _fail("order per sender", f"b got a's tells in another order: {got[at : at + 3]} "
                    f"where {list(range(at, at + 3))} was sent")  # fmt: skip


def _bad_frame(a: _Node, b: _Node, timeout_s: float) -> None:
    prop = "a bad frame costs only itself"
    ta = a.transport
    assert ta is not None
    assert ta.address is not None
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = context.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IDENTITY, b"~check")
        sock.connect(ta.address)
        asks = [list(Envelope.new(Kind.ASK, "echo", "$c@~check", "echo@a", i)) for i in range(3)]
        asks[1][11] = {"counts": {7: "seven"}}  # type: ignore[dict-item] # an int map key
        sock.send(msgpack.packb(asks))
        answers: dict[Any, Any] = {}
        deadline = time.monotonic() + timeout_s
        while len(answers) < len(asks):
            if not sock.poll(max(0, int((deadline - time.monotonic()) * 1000))):
                raise _fail(prop, f"{len(answers)} of the 3 asks answered: {answers}")
            frame = msgpack.unpackb(sock.recv(), raw=False, strict_map_key=False)
            for env in frame if frame and type(frame[0]) is list else [frame]:
                answers[env[6]] = env  # by the id it answers
        kinds = [answers.get(ask[1], [None] * 3)[2] for ask in asks]
        if kinds != [Kind.REPLY, Kind.ERROR, Kind.REPLY]:
            raise _fail(prop, f"the asks were answered {kinds}, not reply, error, reply")
    finally:
        sock.close(0)
        context.term()
    for _ in range(2):
        a.next(prop, "good ask of the frame")  # both delivered (and answered, seen above)
    tb = b.transport
    assert tb is not None
    tb.send(_tell("y@b", "x@a", "after"), "a")
    env, _ = a.next(prop, "tell from b after the bad frame")
    if env.body != "after":
        raise _fail(prop, f"after the bad frame a got {env!r}, not b's tell")


def _frame_limit(a: _Node, b: _Node) -> None:
    prop = "the peer's frame limit"
    ta = a.transport
    assert ta is not None
    big = Envelope.new(Kind.ASK, "echo", "caller@a", "echo@b", "x" * (2 * _LIMIT))
    ta.send(big, "b")
    ta.send(_tell("x@a", "y@b", "small"), "b")
    refused, name = a.next(prop, "refusal of an ask over b's limit")
    if (refused.kind, refused.corr, name) != (Kind.ERROR, big.id, "caller") or not isinstance(
        error_from_body(refused.body), MacpError
    ):
        raise _fail(prop, f"a's asker got {refused!r}, not an error answering its ask")
    env, _ = b.next(prop, "small tell after the big ask")
    if env.body != "small":
        raise _fail(prop, f"b got {env.type!r} from a, over the limit it told a")


def _stop(
    a: _Node, started: list[tuple[Transport, set[threading.Thread]]], timeout_s: float
) -> None:
    prop = "stop"
    (tb, threads_b) = started.pop()
    (ta, threads_a) = started[0]
    tb.stop()
    a.event(prop, "node.down", "b", timeout_s)
    ask = Envelope.new(Kind.ASK, "echo", "caller@a", "echo@b", "late")
    ta.send(ask, "b")
    refused, name = a.next(prop, "refusal of an ask to the stopped b")
    if (refused.kind, refused.corr, name) != (Kind.ERROR, ask.id, "caller"):
        raise _fail(prop, f"an ask to the stopped b was answered {refused!r}, not refused")
    started.pop()
    ta.stop()
    for who, threads in (("b", threads_b), ("a", threads_a)):
        for thread in threads:
            thread.join(timeout_s)
        alive = sorted(t.name for t in threads if t.is_alive())
        if alive:
            raise _fail(prop, f"{who} stopped, but its threads {alive} still run")
