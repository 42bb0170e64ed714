"""The messages nodes exchange about themselves, handled on the I/O thread.

They are addressed to ``$node@NODE`` (``$node@*`` means "the node that receives this"):

===============  =====  ========================================================================
node.hello       tell   ``{name, address, incarnation}``: I exist, reach me there (sent first
                        on every new link, and again whenever the peer comes up)
node.heartbeat   beat   ``{incarnation}``: still alive (only when nothing else was sent)
node.join        ask    ``{name, address, incarnation}``: answered with ``{members: {name: addr},
                        head}`` (the node hosting the control plane, if the member knows it)
node.bye         tell   a clean shutdown: the peer is down at once
===============  =====  ========================================================================

Any other ask to ``$node`` (``node.info``) is the node's to answer: the transport hands it to
the ``node_ask`` callback.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from macp.envelope import VERSION, Envelope, Kind, Priority, new_id, now_ms
from macp.errors import ConfigError, InvalidParams, MacpError
from macp.transport.callbacks import Later
from macp.transport.liveness import PeerState

if TYPE_CHECKING:
    import threading
    from collections import Counter

    import structlog

    from macp.transport._outbound import Outbound
    from macp.transport.callbacks import Callbacks
    from macp.transport.frames import Link
    from macp.transport.peers import PeerTable

__all__ = ["ANY_NODE", "BYE", "HEARTBEAT", "HELLO", "INFO", "JOIN", "SYSTEM", "System"]

SYSTEM: Final = "$node"
ANY_NODE: Final = "*"
HELLO: Final = "node.hello"
HEARTBEAT: Final = "node.heartbeat"
JOIN: Final = "node.join"
BYE: Final = "node.bye"
INFO: Final = "node.info"
JOIN_PREFIX: Final = "$join:"


def _announcement(body: Any) -> tuple[str, str, str | None]:
    if not isinstance(body, dict):
        raise InvalidParams("a node announcement is a map with name and address")
    name, address, incarnation = body.get("name"), body.get("address"), body.get("incarnation")
    if not isinstance(name, str) or not isinstance(address, str):
        raise InvalidParams("a node announcement needs a string name and address")
    return name, address, incarnation if isinstance(incarnation, str) else None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


class System:
    """This node's side of the node-to-node messages (the I/O thread only).

    Args:
        name: the node's name.
        incarnation: this process's id as that node.
        frame_limit: the largest frame this node accepts (told to its peers).
        peers: the peer table.
        out: how to send.
        callbacks: the node above (asks to it, its head).
        counters: the transport's counters.
        log: the transport's logger.
        joined: set once the member joined answered.
    """

    def __init__(
        self,
        name: str,
        incarnation: str,
        frame_limit: int,
        *,
        peers: PeerTable,
        out: Outbound,
        callbacks: Callbacks,
        counters: Counter[str],
        log: structlog.stdlib.BoundLogger,
        joined: threading.Event,
    ) -> None:
        self._name = name
        self._src = f"{SYSTEM}@{name}"
        self._incarnation = incarnation
        self._frame_limit = frame_limit
        self._peers = peers
        self._out = out
        self._callbacks = callbacks
        self._counters = counters
        self._log = log
        self._joined = joined
        self._join_id: str | None = None
        self.address: str | None = None  # where this node listens, once bound

    def handle(self, env: Envelope, peer: str) -> None:
        """Handle one system message from ``peer``."""
        try:
            self._handle(env, peer)
        except (InvalidParams, ConfigError) as e:  # e.g. an announcement with a bad address
            self._counters["bad_system"] += 1
            self._log.warning(
                "transport.bad_system_message", peer=peer, type=env.type, error=str(e)
            )
            if env.answered:
                self._answer(env, e)

    def _handle(self, env: Envelope, peer: str) -> None:
        now = time.monotonic()
        body = env.body
        if env.kind == Kind.HEARTBEAT:
            self._heartbeat(env, peer, now)
        elif env.kind == Kind.REPLY and env.corr == self._join_id:
            self._joined_by(body, peer)
        elif env.type == HELLO:
            self._announced(body, peer, now)
        elif env.type == JOIN:
            self._announced(body, peer, now)
            members = self._peers.members()
            members[self._name] = self.address or ""
            self._answer(env, {"members": members, "head": self._callbacks.head()})
        elif env.type == BYE:
            self._peers.left(peer)
        elif env.answered:
            try:
                answer = self._callbacks.node_ask(env.type, body)
            except MacpError as e:
                self._answer(env, e)
            else:
                if isinstance(answer, Later):  # settled later, on another thread
                    answer.add_done_callback(partial(self._answer_later, env))
                else:
                    self._answer(env, answer)

    def _heartbeat(self, env: Envelope, peer: str, now: float) -> None:
        """A heartbeat: from a peer, it is heard; from a client of this node, it is answered
        with this node's incarnation, so that the client knows this node lives (and which)."""
        body = env.body
        self._counters["heartbeats_in"] += 1
        if peer in self._peers:  # a stranger's heartbeat makes it no peer: hello does
            incarnation = body.get("incarnation") if isinstance(body, dict) else None
            self._peers.heard(peer, now, _str_or_none(incarnation))
        client = env.src.partition("@")[2]
        if client.startswith("~") and self._peers.via(client) is not None:  # our client
            answer = {"incarnation": self._incarnation}
            self._out.route(client, [self.envelope(Kind.HEARTBEAT, HEARTBEAT, client, answer)])

    def _announced(self, body: Any, peer: str, now: float) -> None:
        """A peer said who and where it is: link to it (at that address), count it as heard."""
        name, address, incarnation = _announcement(body)
        if name != peer:  # a peer may announce itself only, never another node
            raise InvalidParams(f"peer {peer!r} announced itself as {name!r}")
        if name == self._name:
            return
        if self._reachable(name, address):
            self._link(name, address)
        limit = body.get("frame_limit")
        if type(limit) is int and limit > 0:  # an older peer says nothing: it is not limited
            self._peers.frame_limits[name] = limit
        if name in self._peers:
            self._peers.heard(name, now, incarnation)

    def _reachable(self, name: str, address: str) -> bool:
        """Whether to (re)connect to ``address``: a peer bound on every interface announces a
        wildcard host, which only the address this node was given for it can replace."""
        host = address.partition("://")[2].rpartition(":")[0].strip("[]")
        if host in {"0.0.0.0", "::", "*"}:  # noqa: S104 - comparing, not binding
            if name not in self._peers:
                self._log.warning("transport.unreachable_peer", peer=name, address=address)
            return False
        return True

    def _link(self, name: str, address: str) -> None:
        """Link to peer ``name`` at ``address``, and say hello on a new link."""
        link = self._peers.connect(name, address)
        if link is not None:
            self.say_hello(link)

    def link_to(self, members: dict[str, str]) -> None:
        """Link to each of ``members`` (``name -> address``), saying hello on each new link."""
        for name, address in members.items():
            self._link(name, address)

    def envelope(self, kind: Kind, type: str, node: str, body: Any) -> Envelope:
        """A system message from this node to node ``node``."""
        return Envelope(
            VERSION, new_id(), kind, type, self._src, f"{SYSTEM}@{node}", None,
            Priority.CRITICAL, now_ms(), None, (), body,
        )  # fmt: skip

    def _hello_body(self) -> dict[str, Any]:
        return {
            "name": self._name,
            "address": self.address,
            "incarnation": self._incarnation,
            "frame_limit": self._frame_limit,  # the largest frame it accepts: senders respect it
        }

    def say_hello(self, link: Link) -> None:
        """Tell the peer at the end of ``link`` who and where this node is."""
        self._out.emit(link, [self.envelope(Kind.TELL, HELLO, link.name, self._hello_body())])

    def heartbeat(self, link: Link, to: str | None = None) -> None:
        """Tell the node at the end of ``link`` (``to``: ``*`` for a client's member, which
        answers with its own) that this node is alive."""
        body = {"incarnation": self._incarnation}
        node = link.name if to is None else to
        self._out.emit(link, [self.envelope(Kind.HEARTBEAT, HEARTBEAT, node, body)])

    def start_join(self, spec: str, *, keys: bool) -> None:
        """Ask the member at ``spec`` (``ADDRESS`` or ``NAME=ADDRESS``) for the members."""
        name, sep, address = spec.partition("=")
        if not sep:
            if keys:
                raise ConfigError(
                    f"--join {spec}: with keys, name the member (NAME=ADDRESS) so its key is known"
                )
            name, address = f"{JOIN_PREFIX}{spec}", spec
        link = self._peers.connect(name, address) or self._peers.get(name)
        assert link is not None
        if name.startswith(JOIN_PREFIX):
            self._peers.untrack(name)
        join = self.envelope(Kind.ASK, JOIN, ANY_NODE, self._hello_body())
        self._join_id = join.id
        self._out.emit(link, [join])

    def goodbye(self) -> None:
        """Tell every peer that is up that this node is leaving."""
        for link in self._peers.links():
            if self._peers.state(link.name) is PeerState.UP:
                self._out.emit(link, [self.envelope(Kind.TELL, BYE, link.name, None)])

    def _answer(self, env: Envelope, result: Any) -> None:
        answer = (
            env.error(result, self._src)
            if isinstance(result, Exception)
            else env.reply(result, self._src)
        )
        self._out.route(env.src.partition("@")[2], [answer])

    def _answer_later(self, env: Envelope, later: Later) -> None:
        """Send the answer of an ask to the node that settled after it (any thread)."""
        error = later.exception()
        answer = env.error(error, self._src) if error else env.reply(later.result(), self._src)
        try:
            self._callbacks.send(answer)
        except MacpError as e:  # a reply that cannot cross: its asker learns why
            self._callbacks.send(env.error(e, self._src))

    def _joined_by(self, body: Any, via: str) -> None:
        members = body.get("members") if isinstance(body, dict) else None
        if not isinstance(members, dict):
            raise InvalidParams("a join answer needs a map of members")
        self.link_to({n: a for n, a in members.items() if n != self._name and isinstance(a, str)})
        for temp in [p for p in self._peers.links() if p.name.startswith(JOIN_PREFIX)]:
            self._peers.disconnect(temp)
        head = body.get("head")
        if isinstance(head, str):  # the node takes it if it has none (a bad name: ConfigError)
            self._callbacks.learn_head(head)
        self._log.info("node.joined", via=via, members=sorted(members), head=head)
        self._joined.set()
