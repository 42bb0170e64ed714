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

import msgpack
import zmq
from zmq.utils.monitor import recv_monitor_message

from macp.envelope import VERSION, Envelope, Kind, Priority, new_id, now_ms
from macp.errors import ConfigError, EnvelopeError
from macp.transport._system import ANY_NODE, INFO, SYSTEM
from macp.transport.frames import unpack_frame

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from macp.transport.security import Keys

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
        name: the name claimed.
        incarnation: this process's id as that node.
        address: where this node listens, if it does.
        members: the members to ask, ``name -> address`` (the name picks the CURVE key).
        heartbeat_interval_s: the heartbeat interval (a probe waits at least as long).
        max_bytes: the largest answer accepted.
        keys: CURVE keys, or ``None`` for plaintext.
        socket: makes a socket of a kind, its options set (on the I/O thread).
        poller: the I/O thread's poller, which the probes' sockets join.
    """

    def __init__(
        self,
        name: str,
        incarnation: str,
        address: str | None,
        members: Mapping[str, str],
        *,
        heartbeat_interval_s: float,
        max_bytes: int,
        keys: Keys | None,
        socket: Callable[[int], zmq.Socket[bytes]],
        poller: zmq.Poller,
    ) -> None:
        self._name = name
        self._incarnation = incarnation
        self._address = address
        self._max_bytes = max_bytes
        self._keys = keys
        self._socket = socket
        self._poller = poller
        self._packer = msgpack.Packer()
        self._bound_s = max(heartbeat_interval_s, _BOUND_MIN_S)
        self._probes: list[_Probe] = []
        self._asked: set[str] = set()
        self.holder: str | None = None  # the address of a live node of this name
        for member, there in members.items():
            self._ask(there, member)

    def _ask(self, address: str, server: str) -> None:
        if address in self._asked:
            return
        self._asked.add(address)
        identity = f"~{new_id()}"
        sock = self._socket(zmq.DEALER)
        sock.setsockopt_string(zmq.IDENTITY, identity)
        now = now_ms()
        ask = Envelope(
            VERSION, new_id(), Kind.ASK, INFO, f"$client@{identity}", f"{SYSTEM}@{ANY_NODE}",
            None, Priority.HIGH, now, now + int(self._bound_s * 1000), (), None,
        )  # fmt: skip
        monitor = sock.get_monitor_socket(_ENDS)  # before connecting: no event is missed
        probe = _Probe(address, sock, monitor, ask.id, time.monotonic() + self._bound_s)
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(monitor, zmq.POLLIN)
        self._probes.append(probe)
        try:
            if self._keys is not None:
                self._keys.client(sock, server)
            sock.connect(address)
            sock.send(self._packer.pack(ask), zmq.NOBLOCK)  # queued until connected
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
                envelopes, _ = unpack_frame(payload, self._max_bytes)
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
        if info.get("name") == self._name and info.get("incarnation") != self._incarnation:
            self.holder = address
            return
        peers = info.get("peers")
        known = peers.get(self._name) if isinstance(peers, dict) else None
        there = known.get("address") if isinstance(known, dict) else None
        if isinstance(there, str) and there != self._address:
            self._ask(there, self._name)

    def _end(self, probe: _Probe) -> None:
        poller = self._poller
        for sock in (probe.monitor, probe.socket):
            with contextlib.suppress(KeyError, zmq.ZMQError):
                poller.unregister(sock)
        probe.socket.disable_monitor()
        probe.monitor.close(0)
        probe.socket.close(0)
        self._probes.remove(probe)
