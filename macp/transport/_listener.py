"""The node's listening side: its ROUTER, bound on its address, and the handshakes refused there.

A bind that fails is one sentence (an address in use names itself and the fix). A peer whose
key is not in the keys directory, plaintext to a node with keys (or keys to a plaintext node),
a peer with a wrong public key for this node: libzmq refuses each handshake, and the peer gets
nothing through. Each refusal counts in ``handshakes_refused``, and is logged as
``transport.handshake_refused`` at the bounded rate per peer of the router's throttle (bad
input from the network: :class:`macp.log.Throttle`), each line saying how many were
``suppressed`` since the last; so a peer that knocks a thousand times a second costs a counter,
not the log. The socket monitor names only this node's own endpoint; for a refused key, the ZAP
handler (:mod:`macp.transport.security`) saw the peer's address and key, and the line names
them (the peer is ``"?"`` otherwise).

Only the I/O thread uses this module (the ZAP handler's records reach it through a deque).
"""

from __future__ import annotations

import contextlib
import errno
from typing import TYPE_CHECKING, Final

import zmq
from zmq.utils.monitor import recv_monitor_message

from macp.errors import ConfigError

if TYPE_CHECKING:
    from collections import Counter, deque

    import structlog

    from macp.log import Throttle
    from macp.transport.security import Keys

__all__ = ["Refusals", "bind"]

_EVENTS: Final = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
_PROTOCOL: Final[dict[int, str]] = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "plaintext met keys: one side has no keys",
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "the peer holds a wrong public key for this node",
}


def bind(sock: zmq.Socket[bytes], address: str, keys: Keys | None) -> None:
    """Bind the ROUTER ``sock`` on ``address`` (port 0: any free one).

    Raises:
        ConfigError: the address is in use, or not one of this host.
    """
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    # A restarted peer reconnects under its old name before the old link is noticed gone: the
    # new connection takes the name over instead of being refused. (A second live node of one
    # name never gets this far: it is refused its name before it links to anyone.)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    if keys is not None:
        keys.server(sock)
    any_port = address.startswith("tcp://") and address.endswith(":0")
    try:
        sock.bind(address[:-1] + "*" if any_port else address)
    except zmq.ZMQError as e:
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"address already in use: {address}; choose another port or stop what listens there"
            ) from e
        raise ConfigError(f"cannot listen on {address}: {e}; use an address of this host") from e


class Refusals:
    """The refused handshakes of the ROUTER ``sock``, seen through its monitor.

    Args:
        sock: the listening ROUTER.
        counters: the transport's counters.
        throttle: the bound on log lines of bad input, per peer.
        log: the transport's logger.
        denials: where the ZAP handler records the peers and keys it refused, as ``(address,
            key)``, oldest first (``None`` without keys).
    """

    def __init__(
        self,
        sock: zmq.Socket[bytes],
        counters: Counter[str],
        throttle: Throttle,
        log: structlog.stdlib.BoundLogger,
        denials: deque[tuple[str, str]] | None,
    ) -> None:
        self._sock = sock
        self._counters = counters
        self._throttle = throttle
        self._log = log
        self._denials = denials
        self.monitor: zmq.Socket[bytes] = sock.get_monitor_socket(_EVENTS)

    def receive(self) -> None:
        """Count and log the refusals the monitor reported (the poller said it has some)."""
        while True:
            try:
                message = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            self._refused(int(message["event"]), int(message["value"]))

    def close(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self.monitor.close(0)

    def _refused(self, event: int, value: int) -> None:
        self._counters["handshakes_refused"] += 1
        peer, key = "?", None  # libzmq does not say who, except to the ZAP handler
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            reason = "its key is not in this node's keys directory"
            with contextlib.suppress(IndexError):
                peer, key = self._denials.popleft() if self._denials is not None else (peer, key)
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            reason = _PROTOCOL.get(value, f"the handshake broke the protocol (error {value:#x})")
        else:
            reason = "the handshake failed without detail (the peer went in the middle?)"
        self._throttle.warn(
            self._log, peer, "transport.handshake_refused", peer=peer, key=key, reason=reason
        )
