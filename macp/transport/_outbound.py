"""The sending side of the I/O thread: envelopes batched into frames for a peer, answers sent
back through the ROUTER to a client, and a refusal to its sender for what cannot go."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgpack
import zmq

from macp.envelope import Envelope, Kind
from macp.errors import NodeDown, error_body
from macp.transport.frames import BATCH_BYTES, GATEWAY, pack_frames
from macp.transport.liveness import PeerState

if TYPE_CHECKING:
    from collections import Counter

    import structlog

    from macp.errors import MacpError
    from macp.transport.callbacks import Callbacks
    from macp.transport.frames import Link
    from macp.transport.peers import PeerTable

__all__ = ["Outbound"]


class Outbound:
    """How one node's I/O thread sends (only that thread uses it).

    Args:
        name: the node's name.
        src: the address its refusals come from (the node itself).
        frame_limit: the largest frame this node accepts (its own batches stay below it).
        gateway: for a client, the address of the member everything goes through.
        peers: the peer table.
        poller: the I/O thread's poller (a link with a backlog waits to be writable).
        callbacks: the node above (a refusal goes to its ``send``).
        counters: the transport's counters.
        log: the transport's logger.
    """

    def __init__(
        self,
        name: str,
        src: str,
        frame_limit: int,
        *,
        gateway: str | None,
        peers: PeerTable,
        poller: zmq.Poller,
        callbacks: Callbacks,
        counters: Counter[str],
        log: structlog.stdlib.BoundLogger,
    ) -> None:
        self._name = name
        self._src = src
        self._gateway = gateway
        self._peers = peers
        self._poller = poller
        self._refuse = callbacks.send
        self._counters = counters
        self._log = log
        self._packer = msgpack.Packer()  # the I/O thread's own: packers are not thread-safe
        self._batch_bytes = min(BATCH_BYTES, frame_limit - 8)
        self._router: zmq.Socket[bytes] | None = None

    def listening(self, router: zmq.Socket[bytes]) -> None:
        """The node's ROUTER, bound: clients are answered through it."""
        self._router = router

    def route(self, node: str, envs: list[Envelope]) -> None:
        """Send ``envs`` to node ``node``: through its link, through the peer (or the ROUTER
        connection) a client came by, or refused to their senders if it is unknown or down."""
        peers = self._peers
        if self._gateway is not None:  # a client: everything goes through its member
            if peers.state(GATEWAY) is PeerState.DOWN:
                self._unroutable(envs, NodeDown(
                    f"{self._gateway}, the node this client reaches the cluster through, is "
                    "down; retry once it is back (the client reconnects by itself)"
                ))  # fmt: skip
            else:
                member = peers.get(GATEWAY)
                assert member is not None
                self.emit(member, envs)
            return
        link = peers.get(node)
        if link is None:
            via = peers.via(node)
            if via is not None and via in peers:
                link = peers.get(via)
            elif via is not None:  # a client of ours: answer through the ROUTER
                self.emit_router(via.encode(), envs)
                return
        if link is None:
            self._unroutable(envs, NodeDown(f"node {node!r} is not a known peer of {self._name!r}"))
        elif peers.state(link.name) is PeerState.DOWN:
            self._unroutable(envs, NodeDown(f"node {node!r} is down"))
        else:
            self.emit(link, envs)

    def emit(self, link: Link, envs: list[Envelope]) -> None:
        """Send ``envs`` on ``link``, batched into frames."""
        link.last_sent = time.monotonic()
        link.send(self._frames(envs, link.name), self._poller, self._counters)

    def emit_router(self, identity: bytes, envs: list[Envelope]) -> None:
        """Send ``envs`` back through the ROUTER, to the connection ``identity``."""
        assert self._router is not None
        for frame in self._frames(envs):
            try:
                self._router.send_multipart([identity, frame], zmq.NOBLOCK)
                self._counters["frames_out"] += 1
            except zmq.ZMQError as e:  # EHOSTUNREACH (ROUTER_MANDATORY): the client is gone
                self._counters["unroutable"] += 1
                self._log.info(
                    "transport.client_gone", client=identity.decode(errors="replace"), error=str(e)
                )

    def _frames(self, envs: list[Envelope], peer: str | None = None) -> list[bytes]:
        limit = self._peers.frame_limits.get(peer) if peer is not None else None
        batch_bytes = self._batch_bytes if limit is None else min(self._batch_bytes, limit - 8)
        frames, refused = pack_frames(envs, self._packer, batch_bytes, limit)
        for env, error in refused:
            self._unroutable([env], error)
        self._counters["envelopes_out"] += len(envs)
        return frames

    def _unroutable(self, envs: list[Envelope], exc: MacpError) -> None:
        for env in envs:
            self._counters["unroutable"] += 1
            if env.answered:
                self._refuse(env.error(exc, self._src))
            elif env.kind == Kind.REPLY and env.corr is not None:  # its asker must not wait
                failed = Envelope.new(Kind.ERROR, env.type, env.src, env.dst, corr=env.corr)
                self.route(env.dst.partition("@")[2], [failed._replace(body=error_body(exc))])
