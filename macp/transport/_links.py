"""A node's links to its peers: one DEALER each, opened, replaced and closed on the I/O thread.

A link whose handshake fails (the peer refused this node's CURVE key, or one side speaks
plaintext) is dialled again after a backoff, what waits in its backlog kept: libzmq never
retries after a failed handshake by itself, so a peer whose allow-list is fixed and restarted
would otherwise stay unreachable until this node restarted too.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Final

import zmq
from zmq.utils.monitor import recv_monitor_message

from macp.errors import ConfigError
from macp.transport.frames import GATEWAY, Link

if TYPE_CHECKING:
    from macp.transport.router import Router

__all__ = ["close", "connect", "disconnect", "on_event", "redial_due", "reset"]

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


def connect(
    router: Router, name: str, address: str, *, hello: bool = True, server: str | None = None
) -> Link:
    """A DEALER to peer ``name`` (replacing one to an old address). A client's one link, to
    the member it reaches the cluster through (``GATEWAY``), is watched like any peer's."""
    if name == GATEWAY and server is None:
        server = router._gateway_server
    old = router._peers.get(name)
    if old is not None:
        if old.address == address:
            return old
        disconnect(router, old)
    sock = router._socket(zmq.DEALER)
    sock.setsockopt_string(zmq.IDENTITY, router._name)
    # Queue only on a live connection: what cannot be sent waits in the link's backlog,
    # where it is visible (and bounded) rather than inside ZeroMQ.
    sock.setsockopt(zmq.IMMEDIATE, 1)
    try:
        if router._keys is not None:
            router._keys.client(sock, server or name)
        sock.connect(address)
    except (zmq.ZMQError, ConfigError) as e:
        sock.close(0)
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(
            f"cannot connect to {name!r} at {address!r} ({e}); use tcp://HOST:PORT"
        ) from e
    peer = Link(name, address, sock)
    router._peers[name] = peer
    router._poller.register(sock, zmq.POLLIN)
    peer.monitor = sock.get_monitor_socket(_EVENTS)
    router._poller.register(peer.monitor, zmq.POLLIN)
    router._liveness.add(name)
    if hello:
        from macp.transport._system import say_hello  # noqa: PLC0415 - it links back

        say_hello(router, peer)
    return peer


def disconnect(router: Router, peer: Link) -> None:
    router._poller.unregister(peer.socket)
    close(router, peer, 0)
    router._peers.pop(peer.name, None)


def reset(router: Router, peer: Link) -> None:
    """A fresh DEALER to a peer that went down: what was queued for it (in the backlog or
    inside ZeroMQ) is dropped, never delivered to the process that comes back there."""
    router.counters["dropped_down"] += len(peer.backlog)
    disconnect(router, peer)
    connect(router, peer.name, peer.address, hello=False)


def close(router: Router, peer: Link, linger_ms: int) -> None:
    if peer.monitor is not None:
        with contextlib.suppress(zmq.ZMQError):
            router._poller.unregister(peer.monitor)
        peer.socket.disable_monitor()
        peer.monitor.close(0)
        peer.monitor = None
    peer.socket.close(linger_ms)


def on_event(router: Router, peer: Link) -> None:
    """Connection events of ``peer``'s DEALER: closed, (re)established, or a failed handshake."""
    assert peer.monitor is not None
    while True:
        try:
            event = recv_monitor_message(peer.monitor, zmq.NOBLOCK)["event"]
        except zmq.Again:
            return
        if event == zmq.EVENT_DISCONNECTED:
            router._liveness.disconnected(peer.name, time.monotonic())
        elif event in _FAILED_HANDSHAKES:
            _handshake_failed(router, peer, event)
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            peer.failures, peer.redial_at = 0, None
        else:
            router._liveness.connected(peer.name)


def _handshake_failed(router: Router, peer: Link, event: int) -> None:
    peer.failures += 1
    delay_s = min(router._settings.heartbeat_interval_s * 2 ** (peer.failures - 1), _REDIAL_MAX_S)
    peer.redial_at = time.monotonic() + delay_s
    router.counters["handshakes_failed"] += 1
    vague = event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    log = router._log.debug
    if peer.name == GATEWAY:  # a client: what it called fails, and says so itself
        pass
    elif peer.failures == (_VAGUE_WARN_AT if vague else 1):
        log = router._log.warning
    elif peer.failures == 1:
        log = router._log.info
    log("transport.handshake_failed", peer=peer.name, address=peer.address,
        reason=_FAILED_HANDSHAKES[event], retry_in_s=round(delay_s, 3))  # fmt: skip


def redial_due(router: Router, now: float) -> None:
    """Dial again the links whose handshake failed and whose backoff is over."""
    for peer in [p for p in router._peers.values() if p.redial_at is not None]:
        if peer.redial_at is not None and now >= peer.redial_at:
            backlog, failures = peer.backlog, peer.failures
            disconnect(router, peer)
            fresh = connect(router, peer.name, peer.address, hello=False)
            fresh.backlog, fresh.failures = backlog, failures
            if backlog:
                router._poller.modify(fresh.socket, zmq.POLLIN | zmq.POLLOUT)
