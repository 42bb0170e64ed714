"""The node: one process's runtime, the root of its supervision tree.

A :class:`Node` owns its actors' directory (``name -> mailbox``; never Pykka's process-global
registry, so several nodes can share one process), the asks waiting for replies, a timer
thread, its root supervisor and, when it listens or has peers, its transport. Every envelope,
local or remote, is routed by :meth:`Node.send` (the hot path, kept here). The rest is parts
that know nothing of the node and are given what they need: the directory (names), the post
(delivery to inboxes and waiting asks, the undeliverable, refused bodies), the spawner
(orders to supervisors), the requests (asks and their futures), the registration (its
agents announced to its head's registry), its events, what it says of itself (``node.info``),
and the transport (given callbacks: deliver, send, peer events, asks to the node itself).

Messaging guarantees (the same locally and across nodes):

- ``tell`` is at-most-once; messages from one sender to one receiver arrive in send order
  (within one priority: a CRITICAL control command overtakes queued lower priorities).
- ``ask`` returns an :class:`~macp.futures.AskFuture`; ``get()`` returns the reply's
  body, raises the receiver's error as the same :class:`~macp.errors.MacpError` class, raises
  :class:`~macp.errors.NodeDown` at once if the receiver's node goes down, and
  :class:`~macp.errors.AskTimeout` once the ask's timeout has passed.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any, Final, Self

from macp._timers import Scheduler
from macp.address import check_address, check_name
from macp.envelope import Envelope, Kind, Priority, Wire, new_id, round_trip
from macp.errors import (
    ConfigError,
    NodeDown,
    PeerClosed,
)
from macp.log import get_logger
from macp.node._directory import Directory
from macp.node._events import Events
from macp.node._info import NodeInfo
from macp.node._post import Post
from macp.node._registrar import Registrar, Registration
from macp.node._remote_spawn import SPAWN, TERMINATE, RemoteSpawns
from macp.node._requests import Requests
from macp.node._spawner import Spawner
from macp.payload import UNUSUAL, bound
from macp.runtime import Ref
from macp.settings import Settings
from macp.supervisor import ChildSpec, Restart, SupervisorSpec, node_supervisor
from macp.transport.callbacks import Callbacks
from macp.transport.router import SYSTEM

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Mapping
    from types import TracebackType

    from macp._inbox import PriorityInbox
    from macp._supervised import Supervised
    from macp.futures import AskFuture
    from macp.runtime import Registrable
    from macp.transport.router import Router

__all__ = ["Node"]

_log = get_logger("macp.node")

CLIENT: Final = "$client"
"""The name in the ``src`` of messages sent by code that is not an actor (a script, the CLI)."""

_MEDIUM: Final = int(Priority.MEDIUM)
_SWEEP_INTERVAL_S: Final = 0.5


class Node:
    """One node: build it, :meth:`start` it, spawn agents, talk to them, :meth:`stop` it.

    Also a context manager (``with Node("n1") as node: ...``).

    Args:
        name: the node's name, unique in a cluster; addresses are ``actor@name``.
        listen: the address other nodes reach this one on (``tcp://HOST:PORT``, port 0 picks
            a free one); ``None`` for a node of one process only.
        peers: nodes to connect to, ``name -> address``.
        join: the address (``tcp://...`` or ``NAME=tcp://...``) of any member of a cluster.
        keys: a keys directory (``macp keys generate``): CURVE encryption and an allow-list.
        insecure: allow a plaintext listen address that is not loopback.
        head: the node hosting the control plane (registry, coordinator, ...); when set, this
            node registers its agents there and resolves bare names through it.
        settings: timeouts, limits and the strict setting.
        supervision: the root supervisor's strategy and restart intensity (its children are
            what :meth:`spawn` and :meth:`start_child` add).
        spawnable: the agent classes (``package.module:Class``) that others may spawn here
            (``node.spawn``; :meth:`macp.Cluster.spawn`); none by default.

    Raises:
        ConfigError: a bad name, address, or keys directory.
    """

    def __init__(
        self,
        name: str = "local",
        *,
        listen: str | None = None,
        peers: Mapping[str, str] | None = None,
        join: str | None = None,
        keys: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        head: str | None = None,
        settings: Settings | None = None,
        supervision: SupervisorSpec | None = None,
        spawnable: Iterable[str] = (),
        _gateway: str | None = None,
    ) -> None:
        self.name = name if _gateway is not None else check_name(name, "node")
        self.settings = settings or Settings()
        self._supervision = supervision or SupervisorSpec(name="root")
        self.scheduler = Scheduler(name)
        self.counters: Counter[str] = Counter()
        self._strict = self.settings.strict
        self._max_body = self.settings.max_message_bytes
        self._client = f"{CLIENT}@{name}"
        self._names = Directory(name)
        self._directory = self._names.mailboxes  # the hot path reads it directly
        self._spawner = Spawner(name, self._names, self._supervision.name, self.send)
        self._requests = Requests(self._client, self.settings.ask_timeout_s, self.send)
        self._pending = self._requests.pending  # the hot path reads it directly
        self._root: Any = None
        self._ended = threading.Event()
        self.exit_code: int | None = None
        self.incarnation = new_id()
        self._spawns = RemoteSpawns(self, spawnable)
        self._info = NodeInfo(
            self, lambda: self.router.counters if self.router else None,
            dict.fromkeys((SPAWN, TERMINATE), self._spawns.answer), self._spawns.spawnable,
        )  # fmt: skip
        self.started_at = self._info.started_at
        self._registration = Registration(
            name, self.incarnation, interval_s=self.settings.heartbeat_interval_s,
            scheduler=self.scheduler, ask=self.ask,
        )  # fmt: skip
        if head is not None:
            self.set_head(head)
        self._log = _log.bind(node=name)
        self._post = Post(
            name, self._directory, self._pending, self._spawner, self.send,
            counters=self.counters, log=self._log, max_body=self._max_body,
        )  # fmt: skip
        self._events = Events(
            name, self._names, self.send, pending=self._pending,
            registration=self._registration, counters=self.counters, log=self._log,
        )  # fmt: skip
        self.router: Router | None = None
        if listen is not None or peers or join or _gateway:
            from macp.transport.build import make_router  # noqa: PLC0415 - zmq only when used

            callbacks = Callbacks(
                deliver=self._post.deliver, send=self.send, peer_event=self._events.on_peer_event,
                node_ask=self._info.answer, head=lambda: self.head,
                learn_head=self._registration.learn_head,
            )  # fmt: skip
            self.router = make_router(
                name, listen, callbacks, settings=self.settings, incarnation=self.incarnation,
                peers=peers, join=join, keys=keys, insecure=insecure, gateway=_gateway,
            )  # fmt: skip

    @classmethod
    def client(
        cls,
        gateway: str,
        *,
        keys: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
    ) -> Node:
        """A node with no actors or address of its own, that reaches a cluster through one member.

        Args:
            gateway: the member's address (``NAME=tcp://...`` when ``keys`` is given).
            keys: a keys directory holding a key pair named ``client`` and the member's key.
        """
        return cls(f"~{new_id()}", keys=keys, settings=settings, _gateway=gateway)

    def set_head(self, head: str) -> None:
        """Name the node hosting the control plane (before or after :meth:`start`)."""
        self._registration.set_head(head)

    @property
    def head(self) -> str | None:
        """The node hosting the control plane, if known."""
        return self._registration.head

    @property
    def registrar(self) -> Registrar | None:
        """What announces this node's agents to its head's registry (once a head is known)."""
        return self._registration.registrar

    @property
    def address(self) -> str | None:
        """The address this node listens on (its real port once started), if any."""
        return self.router.address if self.router is not None else None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the timer thread, the transport, and the root supervisor with its children.

        A node with peers (or a member to join) first makes sure no live node holds its name.

        Raises:
            ConfigError: the node is started already; its listen address is in use (or not
                one of this host); a live node holds its name (the error names its address).
        """
        if self._root is not None:
            raise ConfigError(f"node {self.name!r} is already started")
        self._spawns.check()
        self.scheduler.start()
        self.scheduler.call_every(_SWEEP_INTERVAL_S, self._pending.expire)
        try:
            if self.router is not None:
                self.router.start()
            self._root = node_supervisor(self, self._supervision)
        except BaseException:  # a transport or a child that cannot start: nothing is left
            if self.router is not None:
                self.router.stop()
            self.scheduler.stop()
            raise
        self._names.supervisors[self._supervision.name] = self._root
        self._registration.start()
        self._log.info("node.started", address=self.address)
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop every actor (children in reverse start order), then the node's threads."""
        self._post.stopping = True
        self._registration.stop()
        root = self._root
        if root is not None and root.is_alive():
            root.stop(block=True, timeout=timeout_s)
        if self.router is not None:
            self.router.stop()
        self.scheduler.stop()
        closed = PeerClosed(f"node {self.name!r} stopped")
        self._pending.fail(lambda _f: True, lambda _f: closed)
        self._log.info("node.stopped", exit_code=self.exit_code)

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait until the node ends; its exit code (1 if the root supervisor gave up)."""
        self._ended.wait(timeout_s)
        return self.exit_code

    def __enter__(self) -> Self:
        return self.start() if self._root is None else self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _on_root_exit(self, reason: BaseException | None) -> None:
        self.exit_code = 0 if reason is None else 1
        if reason is not None:
            self._log.error("node.gave_up", reason=str(reason))
        self._ended.set()

    def info(self) -> dict[str, Any]:
        """Name, address, uptime, peers, actors and counters (what ``macp node ping`` shows)."""
        return self._info.describe()

    def peers(self) -> dict[str, dict[str, Any]]:
        """The known peers: address, state (``joining``, ``up``, ``down``), last heard."""
        return self.router.peers() if self.router is not None else {}

    # -- actors and events --------------------------------------------------------------------

    def spawn(
        self,
        actor: type[Supervised],
        name: str,
        *,
        config: Mapping[str, Wire] | None = None,
        restart: Restart | str = Restart.PERMANENT,
        shutdown_s: float | None = None,
        supervisor: str | None = None,
        **agent: Any,
    ) -> Ref:
        """Start an agent under a supervisor (the root by default) and return its ref.

        Extra keyword arguments (``capabilities``, ``role``, ``group``) go to the agent.
        """
        self._spawner.spawn(
            actor, name, config=config, restart=restart, shutdown_s=shutdown_s,
            supervisor=supervisor, agent=agent,
        )  # fmt: skip
        return self.ref(name)

    def start_child(
        self, spec: ChildSpec | SupervisorSpec, *, supervisor: str | None = None
    ) -> None:
        """Add a child (an agent, or a whole supervisor subtree) to a running supervisor."""
        self._spawner.start_child(spec, supervisor)

    def terminate(self, name: str, *, supervisor: str | None = None) -> bool:
        """Stop a child for good (it is not restarted); ``False`` if there is no such child."""
        return self._spawner.terminate(name, supervisor)

    def children(self, supervisor: str | None = None) -> list[dict[str, object]]:
        """A supervisor's children: name, alive, restarts, whether it is a supervisor."""
        return self._spawner.children(supervisor)

    def agents(self) -> list[str]:
        """Names of the agents on this node (one that is restarting included)."""
        return list(self._directory)

    def subscribe(self, address: str, *events: str) -> None:
        """Tell ``address`` an ``event`` envelope on each of ``events`` (``node.up``,
        ``node.down``); the body is ``{"node": name, "reason": ...}``."""
        self._names.subscribe(self.resolve(address), events)

    def unsubscribe(self, address: str, *events: str) -> None:
        self._names.unsubscribe(self.resolve(address), events)

    def publish(self, event: str, body: Wire) -> None:
        """Tell every subscriber of ``event`` about it (at-most-once, like any tell)."""
        self._events.publish(event, body)

    # -- the node's side of supervision (macp._supervised.Runtime) ----------------------------

    def _register(self, name: str, actor: Supervised) -> None:
        self._spawner.register(name, actor)

    def _agent_started(self, agent: Registrable) -> None:
        self._registration.agent_started(agent)

    def _agent_changed(self, address: str) -> AskFuture | None:
        return self._registration.agent_changed(address)

    def _close_mailbox(self, name: str, inbox: PriorityInbox) -> None:
        self._registration.agent_gone(name)
        self._spawner.release(name, inbox)

    # -- messaging ----------------------------------------------------------------------------

    def ref(self, address: str) -> Ref:
        """A ref on ``address`` (``name@node``, or a bare name on this node)."""
        return Ref(self, self.resolve(address))

    def resolve(self, address: str) -> str:
        """The canonical ``name@node`` form of ``address``: a bare name is this node's agent of
        that name, else the one the registry knows (if this node has a head), else local.

        Raises:
            ConfigError: ``address`` is malformed (empty, a space, two ``@``, ...).
        """
        if "@" in check_address(address):
            return address
        if address in self._directory:
            return f"{address}@{self.name}"
        return self._registration.resolve(address) or f"{address}@{self.name}"

    def tell(self, dst: str, type: str, body: Wire = None, *, prio: int = _MEDIUM) -> None:
        """Send a one-way message from outside any actor (at-most-once)."""
        self.send(Envelope.new(Kind.TELL, type, self._client, self.resolve(dst), body, prio=prio))

    def ask(
        self,
        dst: str,
        type: str,
        body: Wire = None,
        *,
        timeout_s: float | None = None,
        prio: int = _MEDIUM,
        src: str | None = None,
        chain: tuple[str, ...] = (),
    ) -> AskFuture:
        """Send a request; the returned future settles with the reply or the error."""
        return self._requests.ask(
            Kind.ASK, self.resolve(dst), type, body, timeout_s, prio, src, chain
        )

    def control(
        self, dst: str, command: str, params: Wire = None, *, timeout_s: float | None = None
    ) -> AskFuture:
        """Send a control command (start, stop, pause, resume, configure, status, reset,
        restart); ``restart`` is handled by the agent's supervisor, so it works on an agent
        stuck in a handler, and answers ``{incarnation, previous, abandoned}``."""
        return self._requests.control(self.resolve(dst), command, params, timeout_s)

    def ask_node(
        self, node: str, type: str, body: Wire = None, *, timeout_s: float | None = None
    ) -> AskFuture:
        """Ask a node itself (``node.info``, ...); ``node`` ``"*"`` is the gateway of a client,
        or this node itself."""
        client = self.router is not None and self.router.gateway is not None
        if node == self.name or (node == "*" and not client):
            return self._info.ask(type, body)
        return self.ask(f"{SYSTEM}@{node}", type, body, timeout_s=timeout_s, prio=Priority.HIGH)

    def send(self, env: Envelope) -> None:
        """Route ``env``: to a local actor's inbox, to a waiting ask, or to another node.

        The payload rule holds for both: a body that could not cross nodes, or that is larger
        than ``max_message_bytes`` packed, is refused here, in the sender's thread.

        Raises:
            InvalidParams: the body holds a value msgpack cannot carry (the message names its
                type and path), nests too deep, or is too large.
        """
        body = env.body
        if body is not None:
            try:
                if bound(body) > self._max_body:
                    env = self._post.fit(env)
            except UNUSUAL:
                env = self._post.fit(env)
        name, _, node = env.dst.partition("@")
        if node and node != self.name:
            if self.router is None:
                self._post.undeliverable(
                    env, NodeDown(f"node {self.name!r} has no transport to {node!r}")
                )
            else:
                self.router.send(env, node)
            return
        self._post.deliver(round_trip(env) if self._strict else env, name)
