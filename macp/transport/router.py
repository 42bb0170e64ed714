"""The node's I/O thread: the only thread that touches its ZeroMQ sockets.

One ROUTER, bound on the node's address, receives; one DEALER per peer node (identity: this
node's name) sends. Other threads hand envelopes over with :meth:`Router.send`: a thread-safe
queue plus a wake-up byte on a ``socketpair`` in the poller (many writers may share it; a zmq
socket may not be shared). The loop drains the queue and sends each peer one frame per batch
(a frame is one or more msgpack envelopes back to back), receives until the sockets are empty,
decodes, and delivers. Heartbeats and failure detection run here too, so no workload can starve
them. Clients that are not nodes (``macp node ping``, ``macp.connect``) have names starting
with ``~``; they are answered through the ROUTER, to the identity they came from.

Sockets are created inside the thread and closed there with an explicit linger.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

import msgpack
import zmq

from macp.envelope import Envelope, Kind
from macp.errors import ConfigError, MacpError, NodeDown, error_body
from macp.log import Throttle, get_logger
from macp.payload import HEADER_ROOM
from macp.transport import _inbound, _links, _listener, _system
from macp.transport._claim import Claim
from macp.transport.frames import BATCH_BYTES, Link, pack_frames
from macp.transport.frames import GATEWAY as _GATEWAY
from macp.transport.liveness import Liveness, PeerEvent, PeerState
from macp.transport.outbox import Outbox

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp.node import Node
    from macp.transport.security import Keys

__all__ = ["SYSTEM", "Router"]

SYSTEM: Final = _system.SYSTEM
_MAX_DRAIN: Final = 20_000
_LINGER_MS: Final = _links.LINGER_MS

_log = get_logger("macp.transport")


class Router:
    """The transport of one node. Build it, :meth:`start` it, :meth:`send` from any thread.

    Args:
        node: the node it delivers to.
        listen: the address to bind (``tcp://HOST:PORT``; port 0 picks a free one), or
            ``None`` for a client that only talks through ``gateway``.
        peers: known peers, ``name -> address``.
        join: ``address`` (or ``name=address``) of any member, which answers with the members.
        keys: CURVE keys (and ``keys_dir``, the allow-list), or ``None`` for plaintext.
        gateway: for a client, the address of the node that carries all its traffic.
    """

    def __init__(
        self,
        node: Node,
        listen: str | None,
        *,
        peers: Mapping[str, str] | None = None,
        join: str | None = None,
        keys: Keys | None = None,
        keys_dir: str | None = None,
        gateway: str | None = None,
    ) -> None:
        """``gateway`` (and ``join``) may be ``NAME=ADDRESS``; with keys, they must be."""
        self._node = node
        self._name = node.name
        self._settings = node.settings
        self._listen = listen
        self._initial_peers = dict(peers or {})
        self._join = join
        self._keys = keys
        self._keys_dir = keys_dir
        self._gateway = gateway
        self.incarnation = node.incarnation
        self.counters: Counter[str] = Counter()
        self.address: str | None = None
        self.started_at = time.time()
        self._outbox: Outbox[tuple[str, Envelope]] = Outbox()
        self._stopping = False
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._peers: dict[str, Link] = {}
        self._routes: dict[str, str] = {}  # client node -> the peer (or ROUTER) it came through
        self._snapshot: dict[str, dict[str, Any]] = {}
        self._join_id: str | None = None
        self._gateway_server: str | None = None  # a client's member, as its keys name it
        self._gateway_beat = -math.inf  # when a client last sent its member a heartbeat
        self.joined = threading.Event()  # set once the member joined answered (or no join)
        s = self._settings
        self._liveness = Liveness(s.heartbeat_interval_s, s.heartbeat_misses, s.acceptable_pause_s)
        self._log = _log.bind(node=node.name)
        # A frame holds a payload of up to max_message_bytes plus the rest of its envelope.
        self.frame_limit = s.max_message_bytes + HEADER_ROOM
        self._batch_bytes = min(BATCH_BYTES, self.frame_limit - 8)
        self.throttle = Throttle()  # logs of bad input, per peer
        self.peer_frame_limits: dict[str, int] = {}  # what each peer said it accepts

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
        return dict(self._snapshot)

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
            _system.goodbye(self)
            self._close()
            self._started.set()  # a node refused its name ends before it started

    def _setup(self) -> None:
        from macp.transport.security import start_authenticator  # noqa: PLC0415

        self._packer = msgpack.Packer()
        self._poller = zmq.Poller()
        self._poller.register(self._outbox.fileno(), zmq.POLLIN)
        if self._keys is not None and self._keys_dir is not None and self._listen is not None:
            self._auth = start_authenticator(self._context, self._keys, self._keys_dir)
        if self._listen is not None:
            sock = _listener.listen(self, self._listen)
            self.address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            self._poller.register(sock, zmq.POLLIN)
            self._refusals = _listener.Refusals(self, sock)
            self._poller.register(self._refusals.monitor, zmq.POLLIN)
        if self._gateway is not None:
            server, sep, address = self._gateway.partition("=")
            if not sep and self._keys is not None:  # whose public key to expect? the name says
                raise ConfigError(
                    f"connect address {server!r}: with keys, name the node (NAME={server}) so "
                    f"its key is known: NAME.key in {self._keys_dir} must be that node's public key"
                )
            self._gateway_server = server
            _links.connect(self, _GATEWAY, address if sep else server, hello=False)
            self._open_links()
            self._tick(time.monotonic())  # the first heartbeat: its answer names the member's
            return  # incarnation, so that a restart of the member is seen for what it is
        members = dict(self._initial_peers)
        if self._join is not None:
            name, sep, address = self._join.partition("=")
            members[name if sep else f"{_system.JOIN_PREFIX}{address}"] = address if sep else name
        if members:
            self._claim = Claim(self, members)  # the links open once it is settled
        else:
            self._open_links()

    def _open_links(self) -> None:
        """Link to the peers and the member to join: the name is this node's to use."""
        for name, address in self._initial_peers.items():
            _links.connect(self, name, address)
        if self._join is not None:
            _system.start_join(self, self._join)
        else:
            self.joined.set()
        self._refresh_snapshot(time.monotonic())
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
        sock.setsockopt(zmq.LINGER, _LINGER_MS)
        sock.setsockopt(zmq.SNDHWM, s.send_hwm)
        sock.setsockopt(zmq.RCVHWM, s.recv_hwm)
        # zmq drops a link that sends more than this; above our own limit, so that a frame
        # somewhat too large still reaches decode() and is counted, logged and answered.
        sock.setsockopt(zmq.MAXMSGSIZE, self.frame_limit + HEADER_ROOM)
        return sock

    def _close(self) -> None:
        if self._claim is not None:
            self._claim.close()
        for peer in list(self._peers.values()):
            _links.close(self, peer, _LINGER_MS)
        self._peers.clear()
        if self._refusals is not None:
            self._refusals.close()
        if self._router is not None:
            self._router.close(_LINGER_MS)
        if self._auth is not None:
            self._auth.stop()
        self._context.term()

    def _loop(self) -> None:
        interval = self._settings.heartbeat_interval_s
        tick_s = min(interval / 4, 0.25)
        next_tick = time.monotonic() + tick_s
        while not self._stopping:
            timeout_ms = max(0.0, next_tick - time.monotonic()) * 1000
            events = dict(self._poller.poll(int(timeout_ms)))
            if self._claim is not None:
                self._settle_claim(self._claim, events)
            if self._router is not None:
                self._receive_listening(self._router, events)
            for peer in list(self._peers.values()):
                flags = events.get(peer.socket, 0)
                if flags & zmq.POLLIN:
                    _inbound.receive(self, peer.socket, peer.name)
                    if self._peers.get(peer.name) is not peer:
                        continue  # it went down meanwhile, and its link was replaced
                if flags & zmq.POLLOUT:
                    peer.flush(self._poller, self.counters)
                if peer.monitor is not None and peer.monitor in events:
                    _links.on_event(self, peer)
            self._drain_outbox()
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + tick_s
                self._tick(now)
        self._drain_outbox()

    def _receive_listening(self, router: zmq.Socket[bytes], events: dict[Any, int]) -> None:
        """Take what the ROUTER holds, and the refused handshakes its monitor reported."""
        if router in events:
            _inbound.receive(self, router, None)
        if self._refusals is not None and self._refusals.monitor in events:
            self._refusals.receive()

    # -- outbound -----------------------------------------------------------------------------

    def _drain_outbox(self) -> None:
        batches: dict[str, list[Envelope]] = {}
        for node, env in self._outbox.take(_MAX_DRAIN):
            batch = batches.get(node)
            if batch is None:
                batches[node] = [env]
            else:
                batch.append(env)
        for node, envs in batches.items():
            self._route(node, envs)

    def _route(self, node: str, envs: list[Envelope]) -> None:
        if self._gateway is not None:  # a client: everything goes through its member
            if self._liveness.state(_GATEWAY) is PeerState.DOWN:
                self._unroutable(envs, NodeDown(
                    f"{self._gateway}, the node this client reaches the cluster through, is "
                    "down; retry once it is back (the client reconnects by itself)"
                ))  # fmt: skip
            else:
                self._emit(self._peers[_GATEWAY], envs)
            return
        peer = self._peers.get(node)
        if peer is None:
            via = self._routes.get(node)
            if via is not None and via in self._peers:
                peer = self._peers[via]
            elif via is not None:  # a client of ours: answer through the ROUTER
                self._emit_router(via.encode(), envs)
                return
        if peer is None:
            self._unroutable(envs, NodeDown(f"node {node!r} is not a known peer of {self._name!r}"))
        elif self._liveness.state(peer.name) is PeerState.DOWN:
            self._unroutable(envs, NodeDown(f"node {node!r} is down"))
        else:
            self._emit(peer, envs)

    def _frames(self, envs: list[Envelope], peer: str | None = None) -> list[bytes]:
        limit = self.peer_frame_limits.get(peer) if peer is not None else None
        batch_bytes = self._batch_bytes if limit is None else min(self._batch_bytes, limit - 8)
        frames, refused = pack_frames(envs, self._packer, batch_bytes, limit)
        for env, error in refused:
            self._unroutable([env], error)
        self.counters["envelopes_out"] += len(envs)
        return frames

    def _emit(self, peer: Link, envs: list[Envelope]) -> None:
        peer.last_sent = time.monotonic()
        peer.send(self._frames(envs, peer.name), self._poller, self.counters)

    def _emit_router(self, identity: bytes, envs: list[Envelope]) -> None:
        assert self._router is not None
        for frame in self._frames(envs):
            try:
                self._router.send_multipart([identity, frame], zmq.NOBLOCK)
                self.counters["frames_out"] += 1
            except zmq.ZMQError as e:  # EHOSTUNREACH (ROUTER_MANDATORY): the client is gone
                self.counters["unroutable"] += 1
                self._log.info(
                    "transport.client_gone", client=identity.decode(errors="replace"), error=str(e)
                )

    def _unroutable(self, envs: list[Envelope], exc: MacpError) -> None:
        for env in envs:
            self.counters["unroutable"] += 1
            if env.answered:
                self._node.send(env.error(exc, f"{SYSTEM}@{self._name}"))
            elif env.kind == Kind.REPLY and env.corr is not None:  # its asker must not wait
                failed = Envelope.new(Kind.ERROR, env.type, env.src, env.dst, corr=env.corr)
                self._route(env.dst.partition("@")[2], [failed._replace(body=error_body(exc))])

    # -- liveness -----------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        interval = self._settings.heartbeat_interval_s
        for peer in list(self._peers.values()):
            if peer.name == _GATEWAY:  # a client: a heartbeat each interval, traffic or not
                if now - self._gateway_beat >= interval:  # its member's answer says which
                    self._gateway_beat = now  # incarnation it is, so a restart is seen
                    body = {"incarnation": self.incarnation}
                    hb = _system.envelope(self, Kind.HEARTBEAT, _system.HEARTBEAT, "*", body)
                    self._emit(peer, [hb])
                continue
            if now - peer.last_sent < interval:
                continue
            if self._liveness.state(peer.name) is PeerState.DOWN:
                # A peer that comes back (on the same address) may not know this node: one
                # hello waits in the backlog for the link to come back, and tells it.
                if not peer.backlog:
                    _system.say_hello(self, peer)
            else:
                body = {"incarnation": self.incarnation}
                self._emit(
                    peer,
                    [_system.envelope(self, Kind.HEARTBEAT, _system.HEARTBEAT, peer.name, body)],
                )
        self._apply(self._liveness.check(now))
        for key, suppressed in self.throttle.quiet(now):
            self._log.warning("transport.log_suppressed", peer=key, suppressed=suppressed)
        _links.redial_due(self, now)
        self._refresh_snapshot(now)

    def _apply(self, events: list[PeerEvent]) -> None:
        for event in events:
            unexpected = event.kind == "node.down" and event.reason != "left"
            level = self._log.warning if unexpected else self._log.info
            level(event.kind, peer=event.node, reason=event.reason)
            if event.kind == "node.up" and event.node in self._peers and event.node != _GATEWAY:
                _system.say_hello(self, self._peers[event.node])
            elif event.kind == "node.down" and event.node in self._peers:
                _links.reset(self, self._peers[event.node])
            self._node._on_peer_event(event)
        if events:
            self._refresh_snapshot(time.monotonic())

    def _refresh_snapshot(self, now: float) -> None:
        addresses = {name: link.address for name, link in self._peers.items()}
        self._snapshot = self._liveness.snapshot(now, addresses)
