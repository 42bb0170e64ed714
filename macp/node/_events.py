"""A node's events: who hears of what (``node.up``, ``node.down``), and what a peer going up
or down does to the node."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp.envelope import Envelope, Kind
from macp.errors import MacpError, NodeDown
from macp.transport.frames import GATEWAY
from macp.transport.router import SYSTEM

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Callable

    import structlog

    from macp.envelope import Wire
    from macp.futures import PendingAsks
    from macp.node._directory import Directory
    from macp.node._registrar import Registration
    from macp.transport.liveness import PeerEvent

__all__ = ["Events"]


class Events:
    """The node's subscribers, and its reaction to peer events.

    Args:
        node: the node's name (events come from ``$node@NODE``).
        names: the node's directory (it keeps the subscribers).
        send: the node's ``send``.
        pending: the node's asks waiting for replies.
        registration: the node's registration (its cache of addresses).
        counters: the node's counters.
        log: the node's logger.
    """

    def __init__(
        self,
        node: str,
        names: Directory,
        send: Callable[[Envelope], None],
        *,
        pending: PendingAsks,
        registration: Registration,
        counters: Counter[str],
        log: Any,
    ) -> None:
        self._src = f"{SYSTEM}@{node}"
        self._names = names
        self._send = send
        self._pending = pending
        self._registration = registration
        self._counters = counters
        self._log: structlog.stdlib.BoundLogger = log

    def publish(self, event: str, body: Wire) -> None:
        """Tell every subscriber of ``event`` about it (at-most-once, like any tell)."""
        for address in self._names.subscribers(event):
            try:
                self._send(Envelope.new(Kind.EVENT, event, self._src, address, body))
            except MacpError as e:
                self._log.warning(
                    "event.undeliverable", event_type=event, dst=address, error=str(e)
                )

    def on_peer_event(self, event: PeerEvent) -> None:
        """A peer went up or down (called on the I/O thread).

        Subscribers hear of a node going down before the asks waiting on it fail: an actor
        that gets both (the coordinator) handles the event first, so it knows the failures for
        what they are, and never picks an agent of that node again meanwhile.
        """
        self.publish(event.kind, {"node": event.node, "reason": event.reason})
        if event.kind == "node.down" and event.node == GATEWAY:  # a client's one member
            down = NodeDown(
                f"the node this client reaches the cluster through went down ({event.reason}) "
                "before the answer came; retry once it is back (the client reconnects by itself)"
            )
            self._counters["asks_failed_node_down"] += self._pending.fail(
                lambda _f: True, lambda _f: down
            )
        elif event.kind == "node.down":
            failed = self._pending.node_down(event.node, event.reason)
            self._counters["asks_failed_node_down"] += failed
            self._registration.forget_node(event.node)
