"""The node's I/O thread: the only thread that touches its ZeroMQ sockets.

One ROUTER, bound on the node's address, receives; one DEALER per peer node (identity: this
node's name) sends. Other threads hand envelopes over with :meth:`Router.send`: a thread-safe
queue plus a wake-up byte on a ``socketpair`` in the poller (many writers may share it; a zmq
socket may not be shared). The loop drains the queue and sends each peer one frame per batch
(a frame is one or more msgpack envelopes back to back), receives until the sockets are empty,
decodes, and hands what it received to the node above through its :class:`Callbacks`.
Heartbeats and failure detection run here too, so no workload can starve them. Clients that
are not nodes (``macp node ping``, ``macp.connect``) have names starting with ``~``; they are
answered through the ROUTER, to the identity they came from.

The router knows no node: it is given its name, incarnation, settings and callbacks. Sockets
are created inside the thread and closed there with an explicit linger.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

import zmq

from macp.envelope import Envelope, new_id
from macp.errors import ConfigError, MacpError
from macp.log import Throttle, get_logger
from macp.payload import HEADER_ROOM
from macp.settings import Settings
from macp.transport import _listener
from macp.transport._claim import Claim
from macp.transport._inbound import Inbound
from macp.transport._outbound import Outbound
from macp.transport._system import ANY_NODE, JOIN_PREFIX, SYSTEM, System
from macp.transport.frames import GATEWAY
from macp.transport.liveness import PeerState
from macp.transport.outbox import Outbox
from macp.transport.peers import LINGER_MS, PeerTable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp.transport.callbacks import Callbacks
    from macp.transport.liveness import PeerEvent
    from macp.transport.security import Keys

__all__ = ["SYSTEM", "Router"]

_MAX_DRAIN: Final = 20_000

_log = get_logger("macp.transport")


class Router:
    """The transport of one node. Build it, :meth:`start` it, :meth:`send` from any thread.

    Args:
        name: the node's name (``~...`` for a client).
        listen: the address to bind (``tcp://HOST:PORT``; port 0 picks a free one), or
            ``None`` for a client that only talks through ``gateway``.
        callbacks: what it hands up to the node (on the I/O thread).
        settings: heartbeats, limits and socket options.
        incarnation: this process's id as that node (new by default).
        peers: known peers, ``name -> address``.
        join: ``address`` (or ``name=address``) of any member, which answers with the members.
        keys: CURVE keys (and ``keys_dir``, the allow-list), or ``None`` for plaintext.
        gateway: for a client, the address of the node that carries all its traffic.
    """

    def __init__(
        self,
        name: str,
        listen: str | None,
        callbacks: Callbacks,
        *,
        settings: Settings | None = None,
        incarnation: str | None = None,
        peers: Mapping[str, str] | None = None,
        join: str | None = None,
        keys: Keys | None = None,
        keys_dir: str | None = None,
        gateway: str | None = None,
    ) -> None:
        """``gateway`` (and ``join``) may be ``NAME=ADDRESS``; with keys, they must be."""
        s = self._settings = settings or Settings()
        self._name = name
        self._listen = listen
        self._callbacks = callbacks
        self._initial_peers = dict(peers or {})
        self._join = join
        self._keys = keys
        self._keys_dir = keys_dir
        self._gateway = gateway
        self.incarnation = incarnation or new_id()
        self.counters: Counter[str] = Counter()
        self.address: str | None = None
        self.started_at = time.time()
        self._outbox: Outbox[tuple[str, Envelope]] = Outbox()
        self._stopping = False
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.joined = threading.Event()  # set once the member joined answered (or no join)
        self._gateway_beat = -math.inf  # when a client last sent its member a heartbeat
        self._log = _log.bind(node=name)
        # A frame holds a payload of up to max_message_bytes plus the rest of its envelope.
        self.frame_limit = s.max_message_bytes + HEADER_ROOM
        self.throttle = Throttle()  # logs of bad input, per peer
        self._poller = zmq.Poller()  # sockets join it on the I/O thread
        self._peers = PeerTable(
            name, s, keys, socket=self._socket, poller=self._poller, counters=self.counters,
            log=self._log, on_events=self._apply,
        )  # fmt: skip
        self._out = Outbound(
            name, f"{SYSTEM}@{name}", self.frame_limit, gateway=gateway,
            peers=self._peers, poller=self._poller, callbacks=callbacks, counters=self.counters,
            log=self._log,
        )  # fmt: skip
        self._system = System(
            name, self.incarnation, self.frame_limit, peers=self._peers, out=self._out,
            callbacks=callbacks, counters=self.counters, log=self._log, joined=self.joined,
        )  # fmt: skip
        self._inbound = Inbound(
            name, self.frame_limit, secure=keys is not None, peers=self._peers,
            system=self._system, out=self._out, callbacks=callbacks, counters=self.counters,
            throttle=self.throttle, log=self._log,
        )  # fmt: skip

    # -- any thread ---------------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the I/O thread; return once it listens (or raise why it could not)."""
        self._thread = threading.Thread(target=self._run, name=f"macp-io-{self._name}", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise ConfigError(f"node {self._name!r}: the transport did not start in {timeout_s} s")
        if self._error is not None:
            raise self._error

    def stop(self, timeout_s: float = 5.0) -> None:
        """Say goodbye to the peers, close the sockets, end the thread."""
        self._stopping = True
        self.joined.set()  # nobody waits for an answer that will not come
        self._outbox.wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._outbox.close()

    def send(self, env: Envelope, node: str) -> None:
        """Queue ``env`` for node ``node`` (thread-safe, never blocks)."""
        self._outbox.put((node, env))

    def peers(self) -> dict[str, dict[str, Any]]:
        """A snapshot of the peers: address, state, seconds since last heard."""
        return self._peers.snapshot()

    @property
    def gateway(self) -> str | None:
        """For a client, the address of the node that carries all its traffic."""
        return self._gateway

    @property
    def keys_dir(self) -> str | None:
        """The keys directory (the allow-list), if the node has keys."""
        return self._keys_dir

    # -- the I/O thread -----------------------------------------------------------------------

    def _run(self) -> None:
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._auth: Any = None
        self._router: zmq.Socket[bytes] | None = None
        self._claim: Claim | None = None
        self._refusals: _listener.Refusals | None = None
        try:
            self._setup()
        except BaseException as e:  # noqa: BLE001 - reported to start()'s caller
            self._error = (
                e
                if isinstance(e, MacpError)
                else ConfigError(f"the transport of node {self._name!r} cannot start: {e}")
            )
            self._close()
            self._started.set()
            return
        try:
            self._loop()
        except Exception:  # noqa: BLE001 - the last resort: log, then close cleanly
            self._log.exception("transport.failed")
        finally:
            self._system.goodbye()
            self._close()
            self._started.set()  # a node refused its name ends before it started

    def _setup(self) -> None:
        from macp.transport.security import start_authenticator  # noqa: PLC0415

        self._poller.register(self._outbox.fileno(), zmq.POLLIN)
        if self._keys is not None and self._keys_dir is not None and self._listen is not None:
            self._auth = start_authenticator(self._context, self._keys, self._keys_dir)
        if self._listen is not None:
            self._bind(self._listen)
        if self._gateway is not None:
            server, sep, address = self._gateway.partition("=")
            if not sep and self._keys is not None:  # whose public key to expect? the name says
                raise ConfigError(
                    f"connect address {server!r}: with keys, name the node (NAME={server}) so "
                    f"its key is known: NAME.key in {self._keys_dir} must be that node's public key"
                )
            self._peers.connect(GATEWAY, address if sep else server, server=server)
            self._open_links()
            self._tick(time.monotonic())  # the first heartbeat: its answer names the member's
            return  # incarnation, so that a restart of the member is seen for what it is
        members = dict(self._initial_peers)
        if self._join is not None:
            name, sep, address = self._join.partition("=")
            members[name if sep else f"{JOIN_PREFIX}{address}"] = address if sep else name
        if members:  # the links open once the claim is settled
            self._claim = Claim(
                self._name, self.incarnation, self.address, members,
                heartbeat_interval_s=self._settings.heartbeat_interval_s,
                max_bytes=self._settings.max_message_bytes, keys=self._keys,
                socket=self._socket, poller=self._poller,
            )  # fmt: skip
        else:
            self._open_links()

    def _bind(self, address: str) -> None:
        """Bind the ROUTER (kept before it binds, so that :meth:`_close` closes it whatever
        happens), and watch it for refused handshakes."""
        sock = self._router = self._socket(zmq.ROUTER)
        _listener.bind(sock, address, self._keys)
        self.address = self._system.address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._out.listening(sock)
        self._poller.register(sock, zmq.POLLIN)
        denials = None if self._auth is None else self._auth.denials
        self._refusals = _listener.Refusals(sock, self.counters, self.throttle, self._log, denials)
        self._poller.register(self._refusals.monitor, zmq.POLLIN)

    def _open_links(self) -> None:
        """Link to the peers and the member to join: the name is this node's to use."""
        self._system.link_to(self._initial_peers)
        if self._join is not None:
            self._system.start_join(self._join, keys=self._keys is not None)
        else:
            self.joined.set()
        self._peers.refresh(time.monotonic())
        self._started.set()

    def _settle_claim(self, claim: Claim, events: dict[Any, int]) -> None:
        """Take the claim's answers; once it is settled, open the links, or end refused."""
        claim.receive(events)
        if not claim.settled(time.monotonic()):
            return
        self._claim = None
        claim.close()
        try:
            if claim.holder is not None:
                raise ConfigError(
                    f"node name {self._name!r} is held by a live node at {claim.holder}; pick "
                    "another --name or stop that node"
                )
            self._open_links()
        except MacpError as e:
            self._error = e
            self._stopping = True

    def _socket(self, kind: int) -> zmq.Socket[bytes]:
        s = self._settings
        sock = self._context.socket(kind)
        sock.setsockopt(zmq.LINGER, LINGER_MS)
        sock.setsockopt(zmq.SNDHWM, s.send_hwm)
        sock.setsockopt(zmq.RCVHWM, s.recv_hwm)
        # zmq drops a link that sends more than this; above our own limit, so that a frame
        # somewhat too large still reaches decode() and is counted, logged and answered.
        sock.setsockopt(zmq.MAXMSGSIZE, self.frame_limit + HEADER_ROOM)
        return sock

    def _close(self) -> None:
        if self._claim is not None:
            self._claim.close()
        self._peers.close()
        if self._refusals is not None:
            self._refusals.close()
        if self._router is not None:
            self._router.close(LINGER_MS)
        if self._auth is not None:
            self._auth.stop()
        self._context.term()

    def _loop(self) -> None:
        interval = self._settings.heartbeat_interval_s
        tick_s = min(interval / 4, 0.25)
        next_tick = time.monotonic() + tick_s
        receive = self._inbound.receive
        while not self._stopping:
            timeout_ms = max(0.0, next_tick - time.monotonic()) * 1000
            events = dict(self._poller.poll(int(timeout_ms)))
            if self._claim is not None:
                self._settle_claim(self._claim, events)
            if self._router is not None:
                self._receive_listening(self._router, events)
            for link in self._peers.links():
                flags = events.get(link.socket, 0)
                if flags & zmq.POLLIN:
                    receive(link.socket, link.name)
                    if self._peers.get(link.name) is not link:
                        continue  # it went down meanwhile, and its link was replaced
                if flags & zmq.POLLOUT:
                    link.flush(self._poller, self.counters)
                if link.monitor is not None and link.monitor in events:
                    self._peers.on_link_event(link)
            self._drain_outbox()
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + tick_s
                self._tick(now)
        self._drain_outbox()

    def _receive_listening(self, router: zmq.Socket[bytes], events: dict[Any, int]) -> None:
        """Take what the ROUTER holds, and the refused handshakes its monitor reported."""
        if router in events:
            self._inbound.receive(router, None)
        if self._refusals is not None and self._refusals.monitor in events:
            self._refusals.receive()

    # -- outbound ----------------------------------------------------------------------------

    def _drain_outbox(self) -> None:
        batches: dict[str, list[Envelope]] = {}
        for node, env in self._outbox.take(_MAX_DRAIN):
            batch = batches.get(node)
            if batch is None:
                batches[node] = [env]
            else:
                batch.append(env)
        route = self._out.route
        for node, envs in batches.items():
            route(node, envs)

    # -- liveness -----------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        interval = self._settings.heartbeat_interval_s
        for link in self._peers.links():
            if link.name == GATEWAY:  # a client: a heartbeat each interval, traffic or not
                if now - self._gateway_beat >= interval:  # its member's answer says which
                    self._gateway_beat = now  # incarnation it is, so a restart is seen
                    self._system.heartbeat(link, ANY_NODE)
                continue
            if now - link.last_sent < interval:
                continue
            if self._peers.state(link.name) is PeerState.DOWN:
                # A peer that comes back (on the same address) may not know this node: one
                # hello waits in the backlog for the link to come back, and tells it.
                if not link.backlog:
                    self._system.say_hello(link)
            else:
                self._system.heartbeat(link)
        self._peers.check(now)
        for key, suppressed in self.throttle.quiet(now):
            self._log.warning("transport.log_suppressed", peer=key, suppressed=suppressed)
        self._peers.redial_due(now)
        self._peers.refresh(now)

    def _apply(self, events: list[PeerEvent]) -> None:
        """Peers went up or down: log it, say hello to one up, link afresh to one down, and
        tell the node (once :meth:`peers` says so too)."""
        if events:
            self._peers.refresh(time.monotonic())
        for event in events:
            unexpected = event.kind == "node.down" and event.reason != "left"
            level = self._log.warning if unexpected else self._log.info
            level(event.kind, peer=event.node, reason=event.reason)
            link = self._peers.get(event.node)
            if event.kind == "node.up" and link is not None and event.node != GATEWAY:
                self._system.say_hello(link)
            elif event.kind == "node.down" and link is not None:
                self._peers.reset(link)
            self._callbacks.peer_event(event)
