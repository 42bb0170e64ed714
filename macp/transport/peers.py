"""A node's peers: the link to each (one DEALER), what is known of its liveness, and the
clients that reach this node through it.

A link whose handshake fails (the peer refused this node's CURVE key, or one side speaks
plaintext) is dialled again after a backoff, what waits in its backlog kept: libzmq never
retries after a failed handshake by itself, so a peer whose allow-list is fixed and restarted
would otherwise stay unreachable until this node restarted too.

The table changes only on the I/O thread; :meth:`PeerTable.snapshot` may be read from any.
A peer going up or down is handed to the ``on_events`` callback, which the router answers
(a hello, a fresh link, the node told).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, Final

import zmq
from zmq.utils.monitor import recv_monitor_message

from macp.errors import ConfigError
from macp.transport.frames import GATEWAY, Link
from macp.transport.liveness import Liveness, PeerState

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Callable

    import structlog

    from macp.settings import Settings
    from macp.transport.liveness import PeerEvent
    from macp.transport.security import Keys

__all__ = ["LINGER_MS", "PeerTable"]

LINGER_MS: Final = 500
_FAILED_HANDSHAKES: Final[dict[int, str]] = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the peer refused this node's key (add this node's public "
    "key to its keys directory)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the handshake broke the protocol (one side without "
    "keys?)",
    # Also what a peer killed in the middle of a handshake gives: not worth a warning alone.
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the handshake failed (a wrong key for the peer, or "
    "one side without keys?)",
}
_EVENTS: Final = (
    zmq.EVENT_DISCONNECTED
    | zmq.EVENT_CONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
_REDIAL_MAX_S: Final = 10.0
_VAGUE_WARN_AT: Final = 3  # a failure without detail is worth a warning once it repeats


class PeerTable:
    """The links of one node to its peers, and their liveness.

    Args:
        name: the node's name (its DEALERs' identity).
        settings: the heartbeat timings.
        keys: CURVE keys, or ``None`` for plaintext.
        socket: makes a socket of a kind, its options set (on the I/O thread).
        poller: the I/O thread's poller, which the links' sockets join.
        counters: the transport's counters.
        log: the transport's logger.
        on_events: told each change of a peer's state.
    """

    def __init__(
        self,
        name: str,
        settings: Settings,
        keys: Keys | None,
        *,
        socket: Callable[[int], zmq.Socket[bytes]],
        poller: zmq.Poller,
        counters: Counter[str],
        log: structlog.stdlib.BoundLogger,
        on_events: Callable[[list[PeerEvent]], None],
    ) -> None:
        self._name = name
        self._interval_s = settings.heartbeat_interval_s
        self._keys = keys
        self._socket = socket
        self._poller = poller
        self._counters = counters
        self._log = log
        self._on_events = on_events
        self._links: dict[str, Link] = {}
        self._liveness = Liveness(
            settings.heartbeat_interval_s, settings.heartbeat_misses, settings.acceptable_pause_s
        )
        self._routes: dict[str, str] = {}  # client node -> the peer (or ROUTER identity) it came by
        self._servers: dict[str, str] = {}  # a link's name -> whose key to expect, if another
        self._snapshot: dict[str, dict[str, Any]] = {}
        self.frame_limits: dict[str, int] = {}  # what each peer said it accepts
        self.get = self._links.get
        """The link to a peer, by name, or ``None``."""

    def __contains__(self, name: object) -> bool:
        return name in self._links

    def links(self) -> list[Link]:
        """Every link (a copy: links may be replaced while the caller goes through them)."""
        return list(self._links.values())

    def members(self) -> dict[str, str]:
        """The peers' addresses by name (not the temporary links: a join, a gateway)."""
        return {n: link.address for n, link in self._links.items() if not n.startswith("$")}

    # -- links ---------------------------------------------------------------------------------

    def connect(self, name: str, address: str, *, server: str | None = None) -> Link | None:
        """A new DEALER to peer ``name`` at ``address`` (replacing one to an old address); ``None``
        if one to that address is open already. ``server`` names the peer's key when its name
        does not (a client's one link, to the member it reaches the cluster through,
        ``GATEWAY``, which is watched like any peer); it is kept for the links that replace it.

        Raises:
            ConfigError: the address cannot be dialled, or the peer's key is missing.
        """
        if server is not None:
            self._servers[name] = server
        old = self._links.get(name)
        if old is not None:
            if old.address == address:
                return None
            self.disconnect(old)
        sock = self._socket(zmq.DEALER)
        sock.setsockopt_string(zmq.IDENTITY, self._name)
        # Queue only on a live connection: what cannot be sent waits in the link's backlog,
        # where it is visible (and bounded) rather than inside ZeroMQ.
        sock.setsockopt(zmq.IMMEDIATE, 1)
        try:
            if self._keys is not None:
                self._keys.client(sock, self._servers.get(name, name))
            sock.connect(address)
        except (zmq.ZMQError, ConfigError) as e:
            sock.close(0)
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(
                f"cannot connect to {name!r} at {address!r} ({e}); use tcp://HOST:PORT"
            ) from e
        link = Link(name, address, sock)
        self._links[name] = link
        self._poller.register(sock, zmq.POLLIN)
        link.monitor = sock.get_monitor_socket(_EVENTS)
        self._poller.register(link.monitor, zmq.POLLIN)
        self._liveness.add(name)
        return link

    def disconnect(self, link: Link) -> None:
        self._poller.unregister(link.socket)
        _close(link, self._poller, 0)
        self._links.pop(link.name, None)

    def reset(self, link: Link) -> None:
        """A fresh DEALER to a peer that went down: what was queued for it (in the backlog or
        inside ZeroMQ) is dropped, never delivered to the process that comes back there."""
        self._counters["dropped_down"] += len(link.backlog)
        self.disconnect(link)
        self.connect(link.name, link.address)

    def close(self) -> None:
        """Close every link (the I/O thread is ending)."""
        for link in self.links():
            _close(link, self._poller, LINGER_MS)
        self._links.clear()

    def on_link_event(self, link: Link) -> None:
        """Connection events of ``link``'s DEALER: closed, (re)established, or a failed
        handshake (the poller said its monitor has some)."""
        assert link.monitor is not None
        while True:
            try:
                event = recv_monitor_message(link.monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            if event == zmq.EVENT_DISCONNECTED:
                self._liveness.disconnected(link.name, time.monotonic())
            elif event in _FAILED_HANDSHAKES:
                self._handshake_failed(link, event)
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                link.failures, link.redial_at = 0, None
            else:
                self._liveness.connected(link.name)

    def _handshake_failed(self, link: Link, event: int) -> None:
        link.failures += 1
        delay_s = min(self._interval_s * 2 ** (link.failures - 1), _REDIAL_MAX_S)
        link.redial_at = time.monotonic() + delay_s
        self._counters["handshakes_failed"] += 1
        vague = event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        log = self._log.debug
        if link.name == GATEWAY:  # a client: what it called fails, and says so itself
            pass
        elif link.failures == (_VAGUE_WARN_AT if vague else 1):
            log = self._log.warning
        elif link.failures == 1:
            log = self._log.info
        log("transport.handshake_failed", peer=link.name, address=link.address,
            reason=_FAILED_HANDSHAKES[event], retry_in_s=round(delay_s, 3))  # fmt: skip

    def redial_due(self, now: float) -> None:
        """Dial again the links whose handshake failed and whose backoff is over."""
        for link in [p for p in self._links.values() if p.redial_at is not None]:
            if link.redial_at is not None and now >= link.redial_at:
                backlog, failures = link.backlog, link.failures
                self.disconnect(link)
                fresh = self.connect(link.name, link.address)
                assert fresh is not None
                fresh.backlog, fresh.failures = backlog, failures
                if backlog:
                    self._poller.modify(fresh.socket, zmq.POLLIN | zmq.POLLOUT)

    # -- liveness ------------------------------------------------------------------------------

    def state(self, name: str) -> PeerState | None:
        return self._liveness.state(name)

    def untrack(self, name: str) -> None:
        """Keep no liveness of ``name`` (a temporary link: the member joined by address)."""
        self._liveness.remove(name)

    def heard(self, name: str, now: float, incarnation: str | None = None) -> None:
        """Traffic from peer ``name`` at ``now`` (a hello or heartbeat may name its
        incarnation); a change of its state goes to ``on_events``."""
        self._on_events(self._liveness.seen(name, now, incarnation))

    def left(self, name: str) -> None:
        """Peer ``name`` said goodbye: down at once."""
        self._on_events(self._liveness.left(name))

    def check(self, now: float) -> None:
        """Find the peers silent for too long (or whose connection closed) down."""
        self._on_events(self._liveness.check(now))

    def refresh(self, now: float) -> None:
        """Take a new :meth:`snapshot`."""
        addresses = {name: link.address for name, link in self._links.items()}
        self._snapshot = self._liveness.snapshot(now, addresses)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """The peers as last refreshed: address, state, seconds since last heard (any thread)."""
        return dict(self._snapshot)

    # -- clients -------------------------------------------------------------------------------

    def came_by(self, client: str, via: str) -> None:
        """Client node ``client`` reached this node through ``via`` (a peer's name, or the
        ROUTER identity of its own connection): its answers go back that way."""
        self._routes[client] = via

    def via(self, client: str) -> str | None:
        """The way back to client node ``client``, if it came by."""
        return self._routes.get(client)


def _close(link: Link, poller: zmq.Poller, linger_ms: int) -> None:
    if link.monitor is not None:
        with contextlib.suppress(zmq.ZMQError):
            poller.unregister(link.monitor)
        link.socket.disable_monitor()
        link.monitor.close(0)
        link.monitor = None
    link.socket.close(linger_ms)
