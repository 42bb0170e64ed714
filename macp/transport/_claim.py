"""A node's claim on its name, settled before the node links to any peer under that name.

Two processes must never be one node: the second would take the first one's links over, and
its peers would see the first one restart, again and again. So before a node opens its links
(DEALERs whose identity is its name), it asks each member it was given (``--peer``, ``--join``)
for ``node.info``, through sockets of its own with a client's identity (``~...``): no member
sees the name yet. Wherever a member knows a node of this name at another address, that address
is asked too. A node of this name that answers, with another incarnation, is alive and holds
the name: this node is refused (it has linked to nobody, so nobody was disturbed). An address
where nobody answers within the bound (the old process is gone; or it is this very process, a
node restarted on its address) leaves the name free, and the node takes it over as before.

The claim runs inside the I/O thread's loop, so nodes that start together answer each other.
A probe ends with its answer, a refused connection or handshake, or the bound. Only the I/O
thread uses it.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import zmq
from zmq.utils.monitor import recv_monitor_message

from macp.envelope import VERSION, Envelope, Kind, Priority, new_id, now_ms
from macp.errors import ConfigError, EnvelopeError
from macp.transport._system import ANY_NODE, INFO, SYSTEM
from macp.transport.frames import unpack_frame

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp.transport.router import Router

__all__ = ["Claim"]

_BOUND_MIN_S: Final = 1.0  # a member that is up answers in milliseconds; a loaded one, later
# A connection refused (nobody listens), closed, or a handshake refused: no answer will come.
_ENDS: Final = (
    zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


@dataclass
class _Probe:
    """One ``node.info`` ask to one address, on a socket of its own."""

    address: str
    socket: zmq.Socket[bytes]
    monitor: zmq.Socket[bytes]
    ask_id: str
    deadline: float


class Claim:
    """The probes of one node's claim on its name; :attr:`holder` once refused.

    Args:
        router: the node's transport (its I/O thread runs the claim).
        members: the members to ask, ``name -> address`` (the name picks the CURVE key).
    """

    def __init__(self, router: Router, members: Mapping[str, str]) -> None:
        self._router = router
        self._bound_s = max(router._settings.heartbeat_interval_s, _BOUND_MIN_S)
        self._probes: list[_Probe] = []
        self._asked: set[str] = set()
        self.holder: str | None = None  # the address of a live node of this name
        for name, address in members.items():
            self._ask(address, name)

    def _ask(self, address: str, server: str) -> None:
        if address in self._asked:
            return
        self._asked.add(address)
        router = self._router
        identity = f"~{new_id()}"
        sock = router._socket(zmq.DEALER)
        sock.setsockopt_string(zmq.IDENTITY, identity)
        now = now_ms()
        ask = Envelope(
            VERSION, new_id(), Kind.ASK, INFO, f"$client@{identity}", f"{SYSTEM}@{ANY_NODE}",
            None, Priority.HIGH, now, now + int(self._bound_s * 1000), (), None,
        )  # fmt: skip
        monitor = sock.get_monitor_socket(_ENDS)  # before connecting: no event is missed
        probe = _Probe(address, sock, monitor, ask.id, time.monotonic() + self._bound_s)
        router._poller.register(sock, zmq.POLLIN)
        router._poller.register(monitor, zmq.POLLIN)
        self._probes.append(probe)
        try:
            if router._keys is not None:
                router._keys.client(sock, server)
            sock.connect(address)
            sock.send(router._packer.pack(ask), zmq.NOBLOCK)  # queued until connected
        except (zmq.ZMQError, ConfigError):
            self._end(probe)  # the link to that member reports it, when it is opened

    def receive(self, events: Mapping[Any, int]) -> None:
        """Take the answers and connection events the poller reported."""
        for probe in list(self._probes):
            if probe.socket in events:
                self._read(probe)
            if probe in self._probes and probe.monitor in events:
                self._watch(probe)

    def settled(self, now: float) -> bool:
        """Whether the claim is decided by ``now``: a holder found, or no probe left."""
        for probe in [p for p in self._probes if now >= p.deadline]:
            self._end(probe)
        return self.holder is not None or not self._probes

    def close(self) -> None:
        for probe in list(self._probes):
            self._end(probe)

    def _read(self, probe: _Probe) -> None:
        while probe in self._probes:
            try:
                payload = probe.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                envelopes, _ = unpack_frame(payload, self._router._settings.max_message_bytes)
            except EnvelopeError:
                continue  # not an answer: the probe waits for one, within its bound
            for env in envelopes:
                if env.corr == probe.ask_id:
                    self._end(probe)
                    if env.kind == Kind.REPLY and isinstance(env.body, dict):
                        self._answered(probe.address, env.body)

    def _watch(self, probe: _Probe) -> None:
        while True:
            try:
                event = recv_monitor_message(probe.monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            if event & _ENDS:
                self._end(probe)
                return

    def _answered(self, address: str, info: dict[str, Any]) -> None:
        router = self._router
        if info.get("name") == router._name and info.get("incarnation") != router.incarnation:
            self.holder = address
            return
        peers = info.get("peers")
        known = peers.get(router._name) if isinstance(peers, dict) else None
        there = known.get("address") if isinstance(known, dict) else None
        if isinstance(there, str) and there != router.address:
            self._ask(there, router._name)

    def _end(self, probe: _Probe) -> None:
        poller = self._router._poller
        for sock in (probe.monitor, probe.socket):
            with contextlib.suppress(KeyError, zmq.ZMQError):
                poller.unregister(sock)
        probe.socket.disable_monitor()
        probe.monitor.close(0)
        probe.socket.close(0)
        self._probes.remove(probe)
