"""What the I/O thread does with what it receives: take frames off a socket (within a
budget), check who sent them, unpack, refuse what is bad (counted, logged, answered where it
can be), and deliver the rest: to a local actor, a waiting ask, the node itself, or onwards."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

import zmq

from macp.envelope import Envelope, Kind
from macp.errors import EnvelopeError, MacpError
from macp.transport._system import ANY_NODE, SYSTEM
from macp.transport.frames import GATEWAY, addresses_of, answers_asker, refusal, unpack_frame

if TYPE_CHECKING:
    from collections import Counter

    import structlog

    from macp.log import Throttle
    from macp.transport._outbound import Outbound
    from macp.transport._system import System
    from macp.transport.callbacks import Callbacks
    from macp.transport.peers import PeerTable

__all__ = ["Inbound"]

_RECV_BUDGET: Final = 5_000  # envelopes per visit to a socket, so that ticks are never starved


class Inbound:
    """The receiving side of one node's I/O thread.

    Args:
        name: the node's name.
        frame_limit: the largest frame accepted.
        secure: whether the node has keys (then the ROUTER checks who sent each frame).
        peers: the peer table.
        system: the node-to-node messages' handler.
        out: how to send (answers, refusals).
        callbacks: the node above (deliver, send).
        counters: the transport's counters.
        throttle: the bound on log lines of bad input, per peer.
        log: the transport's logger.
    """

    def __init__(
        self,
        name: str,
        frame_limit: int,
        *,
        secure: bool,
        peers: PeerTable,
        system: System,
        out: Outbound,
        callbacks: Callbacks,
        counters: Counter[str],
        throttle: Throttle,
        log: structlog.stdlib.BoundLogger,
    ) -> None:
        self._name = name
        self._local = frozenset({"", ANY_NODE, name})  # the node parts of $node addresses here
        self._frame_limit = frame_limit
        self._secure = secure
        self._peers = peers
        self._system = system
        self._out = out
        self._deliver = callbacks.deliver
        self._send = callbacks.send
        self._counters = counters
        self._throttle = throttle
        self._log = log

    def receive(self, sock: zmq.Socket[bytes], peer: str | None) -> None:
        """Take what ``sock`` holds (the ROUTER if ``peer`` is ``None``, else the DEALER to
        ``peer``), up to a budget of envelopes: the rest waits for the next turn of the loop
        (the poller reports it again), after heartbeats and sends."""
        secure = self._secure and peer is None
        budget = _RECV_BUDGET
        while budget > 0:
            if peer is not None and getattr(self._peers.get(peer), "socket", None) is not sock:
                return  # the peer went down and its link was replaced: this socket is closed
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=not secure)
            except zmq.Again:
                return
            budget -= 1
            if peer is not None:  # a DEALER: the answers of a peer's ROUTER, one frame each
                if len(frames) != 1:
                    self.bad(peer, None, EnvelopeError("wrong multipart shape"))
                    continue
                budget -= self._payload(
                    GATEWAY if peer == GATEWAY else peer, _bytes(frames[0]), None
                )
            elif len(frames) != 2:  # noqa: PLR2004 - identity and payload
                shape = EnvelopeError(f"wrong multipart shape ({len(frames)} frames)")
                self.bad(_ident(frames[0]), None, shape)
            else:
                identity = _bytes(frames[0])
                claimed = identity.decode(errors="replace")
                if secure and not self._authentic(claimed, frames[1]):
                    continue
                budget -= self._payload(claimed, _bytes(frames[1]), identity)

    def _authentic(self, claimed: str, frame: Any) -> bool:
        user = frame.get("User-Id")
        if user == claimed or (claimed.startswith("~") and user not in {None, "?"}):
            return True
        self._counters["impersonations"] += 1
        self._throttle.warn(
            self._log, claimed, "transport.impersonation", claimed=claimed, key_of=user
        )
        return False

    def _payload(self, peer: str, payload: bytes, identity: bytes | None) -> int:
        """Deliver a frame's envelopes; how many there were."""
        self._counters["frames_in"] += 1
        if peer in self._peers:  # strangers are not tracked (a client's member is: GATEWAY)
            self._peers.heard(peer, time.monotonic())
        try:
            envelopes, errors = unpack_frame(payload, self._frame_limit)
        except EnvelopeError as e:  # the network boundary: count, log, carry on
            self.bad(peer, identity, e, size=len(payload))
            return 0
        for env in envelopes:
            self._envelope(env, peer, identity)
        if errors:
            self._counters["bad_envelopes"] += len(errors)
            self.bad(peer, identity, *errors, size=len(payload))
        return len(envelopes)

    def bad(self, peer: str, identity: bytes | None, *errors: EnvelopeError, size: int = 0) -> None:
        """Count a bad frame (refused whole, or holding ``errors``, the envelopes refused); log
        each (at a bounded rate per peer) and answer whoever waits on it: the sender of a bad
        ask, the asker of a bad reply."""
        self._counters["bad_frames"] += 1
        for error in errors:
            self._throttle.warn(
                self._log, peer, "envelope.rejected",
                peer=peer, reason=error.message, type=error.data.get("type"), size=size,
            )  # fmt: skip
            answer = refusal(error, f"{SYSTEM}@{self._name}")
            if answer is None:
                continue
            if answers_asker(error):  # a bad reply: its asker (here, or a client) gets the error
                self._send(answer)
            elif identity is not None:  # a bad ask from a client or a peer: back where it came
                self._out.emit_router(identity, [answer])
            else:  # a bad ask through the link of a peer (or the gateway of a client)
                self._out.route(peer, [answer])

    def _envelope(self, env: Envelope, peer: str, identity: bytes | None) -> None:
        self._counters["envelopes_in"] += 1
        src_node = env.src.partition("@")[2]
        # A peer speaks for its own actors (and relays its clients'), never for another's.
        foreign = src_node != peer and not (src_node.startswith("~") and not peer.startswith("~"))
        if foreign and peer != GATEWAY:
            self._counters["refused_src"] += 1
            self._throttle.warn(
                self._log, peer, "envelope.refused", peer=peer, src=env.src, reason="foreign src"
            )
            return
        if src_node.startswith("~") and src_node != self._name:
            self._peers.came_by(
                src_node, peer if peer in self._peers else (identity or b"").decode()
            )
        name, _, node = env.dst.partition("@")
        if name == SYSTEM and node in self._local:
            self._system.handle(env, peer)
        elif env.kind == Kind.HEARTBEAT:
            return
        elif node and node != self._name:
            try:
                self._send(env)  # for another node: this one relays (for its clients)
            except MacpError as e:  # not for this node's limits: refused, answered where it can
                self.bad(peer, identity, EnvelopeError(e.message, data=addresses_of(list(env))))
        else:
            self._deliver(env, name)


def _bytes(frame: Any) -> bytes:
    return frame if isinstance(frame, bytes) else frame.bytes


def _ident(frame: Any) -> str:
    return _bytes(frame).decode(errors="replace")
