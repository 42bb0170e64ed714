"""The node: one process's runtime, the root of its supervision tree.

A :class:`Node` owns its actors' directory (``name -> actor``; never Pykka's process-global
registry, so several nodes can share one process), the table of asks waiting for replies, a
timer thread, and its root supervisor. Every envelope, local or remote, is routed by
:meth:`Node.send`.

Messaging guarantees (the same locally and across nodes):

- ``tell`` is at-most-once; messages from one sender to one receiver arrive in send order
  (within one priority: a CRITICAL control command overtakes queued lower priorities).
- ``ask`` returns an :class:`AskFuture`; ``get()`` returns the reply's body, raises the
  receiver's error as the same :class:`~macp.errors.MacpError` class, or raises
  :class:`~macp.errors.AskTimeout` once the ask's timeout has passed.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Final, Self

import structlog
from pykka._envelope import Envelope as PykkaEnvelope

from macp._inbox import InboxClosed, PriorityInbox
from macp._supervised import answer_foreign
from macp._timers import Scheduler
from macp.actors.control import Command
from macp.address import check_name
from macp.envelope import VERSION, Envelope, Kind, Priority, Wire, new_id, now_ms, round_trip
from macp.errors import (
    ActorNotFound,
    AskTimeout,
    ConfigError,
    MacpError,
    NodeDown,
    PeerClosed,
    error_from_body,
)
from macp.settings import Settings
from macp.supervisor import (
    ChildSpec,
    Restart,
    StartChild,
    Supervisor,
    SupervisorSpec,
    TerminateChild,
    WhichChildren,
    node_supervisor,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    import pykka

    from macp._supervised import Supervised

__all__ = ["AskFuture", "Node", "Ref"]

_log: structlog.stdlib.BoundLogger = structlog.get_logger("macp.node")

CLIENT: Final = "$client"
"""The name in the ``src`` of messages sent by code that is not an actor (a script, the CLI)."""

_REPLY: Final = int(Kind.REPLY)
_ERROR: Final = int(Kind.ERROR)
_MEDIUM: Final = int(Priority.MEDIUM)
_ANSWERS: Final = frozenset({_REPLY, _ERROR})
_SWEEP_INTERVAL_S: Final = 0.5


class AskFuture(concurrent.futures.Future[Any]):
    """The pending reply to an ask.

    ``get()`` waits at most until the ask's own deadline; the future also fails by itself with
    :class:`AskTimeout` shortly after that deadline, so callbacks always run.
    """

    def __init__(self, dst: str, type: str, timeout_s: float) -> None:
        super().__init__()
        self.dst = dst
        self.type = type
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.node = dst.partition("@")[2]

    def get(self, timeout_s: float | None = None) -> Any:
        """The reply's body.

        Args:
            timeout_s: wait at most this long; by default until the ask's deadline.

        Raises:
            AskTimeout: no reply in time.
            MacpError: the receiver answered with an error (raised as its own class).
        """
        wait_s = max(0.0, self.deadline - time.monotonic()) if timeout_s is None else timeout_s
        try:
            return self.result(wait_s)
        except concurrent.futures.TimeoutError:
            raise self._timeout() from None

    def _timeout(self) -> AskTimeout:
        return AskTimeout(f"no reply from {self.dst} to {self.type!r} within {self.timeout_s:g} s")

    def _settle(self, value: Any = None, exc: BaseException | None = None) -> None:
        try:
            if exc is None:
                self.set_result(value)
            else:
                self.set_exception(exc)
        except concurrent.futures.InvalidStateError:
            pass  # cancelled by its owner, or settled by the sweeper a moment before


class Ref:
    """A handle on an actor by address, local or remote: ``tell``, ``ask`` and ``control``."""

    __slots__ = ("_node", "address")

    def __init__(self, node: Node, address: str) -> None:
        self._node = node
        self.address = address

    def __repr__(self) -> str:
        return f"Ref({self.address!r})"

    def tell(self, type: str, body: Wire = None, *, prio: int = _MEDIUM) -> None:
        self._node.tell(self.address, type, body, prio=prio)

    def ask(
        self, type: str, body: Wire = None, *, timeout_s: float | None = None, prio: int = _MEDIUM
    ) -> AskFuture:
        return self._node.ask(self.address, type, body, timeout_s=timeout_s, prio=prio)

    def control(
        self, command: str, params: Wire = None, *, timeout_s: float | None = None
    ) -> AskFuture:
        return self._node.control(self.address, command, params, timeout_s=timeout_s)


class Node:
    """One node: build it, :meth:`start` it, spawn agents, talk to them, :meth:`stop` it.

    Also a context manager (``with Node("n1") as node: ...``).

    Args:
        name: the node's name, unique in a cluster; addresses are ``actor@name``.
        settings: timeouts, limits and the strict setting.
        supervision: the root supervisor's strategy and restart intensity (its children are
            what :meth:`spawn` and :meth:`start_child` add).
    """

    def __init__(
        self,
        name: str = "local",
        *,
        settings: Settings | None = None,
        supervision: SupervisorSpec | None = None,
    ) -> None:
        self.name = check_name(name, "node")
        self.settings = settings or Settings()
        self._supervision = supervision or SupervisorSpec(name="root")
        self.scheduler = Scheduler(name)
        self.counters: Counter[str] = Counter()
        self._strict = self.settings.strict
        self._client = f"{CLIENT}@{name}"
        self._directory: dict[str, PriorityInbox] = {}
        self._supervisors: dict[str, pykka.ActorRef[Any]] = {}
        self._lock = threading.Lock()
        self._pending: dict[str, AskFuture] = {}
        self._root: pykka.ActorRef[Supervisor] | None = None
        self._ended = threading.Event()
        self.exit_code: int | None = None
        self._log = _log.bind(node=name)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the timer thread and the root supervisor with its children."""
        if self._root is not None:
            raise ConfigError(f"node {self.name!r} is already started")
        self.scheduler.start()
        self.scheduler.call_every(_SWEEP_INTERVAL_S, self._expire_asks)
        self._root = node_supervisor(self, self._supervision)
        self._supervisors[self._supervision.name] = self._root
        self._log.info("node.started")
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop every actor (children in reverse start order), then the node's threads."""
        root = self._root
        if root is not None and root.is_alive():
            root.stop(block=True, timeout=timeout_s)
        self.scheduler.stop()
        closed = PeerClosed(f"node {self.name!r} stopped")
        for future in self._take_pending(lambda _f: True):
            future._settle(exc=closed)
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

    # -- actors -------------------------------------------------------------------------------

    def spawn(
        self,
        actor: type[Supervised],
        name: str,
        *,
        config: Mapping[str, Wire] | None = None,
        restart: Restart | str = Restart.PERMANENT,
        shutdown_s: float | None = None,
        supervisor: str | None = None,
    ) -> Ref:
        """Start an agent under a supervisor (the root by default) and return its ref."""
        kwargs = {"config": config} if config is not None else {}
        spec = ChildSpec(
            actor, name, kwargs=kwargs, restart=Restart(restart), shutdown_s=shutdown_s
        )
        self.start_child(spec, supervisor=supervisor)
        return self.ref(name)

    def start_child(
        self, spec: ChildSpec | SupervisorSpec, *, supervisor: str | None = None
    ) -> None:
        """Add a child (an agent, or a whole supervisor subtree) to a running supervisor."""
        self._supervisor(supervisor).ask(StartChild(spec))

    def terminate(self, name: str, *, supervisor: str | None = None) -> bool:
        """Stop a child for good (it is not restarted); ``False`` if there is no such child."""
        return bool(self._supervisor(supervisor).ask(TerminateChild(name)))

    def children(self, supervisor: str | None = None) -> list[dict[str, object]]:
        """A supervisor's children: name, alive, restarts, whether it is a supervisor."""
        return list(self._supervisor(supervisor).ask(WhichChildren()))

    def agents(self) -> list[str]:
        """Names of the agents on this node (one that is restarting included)."""
        return list(self._directory)

    def _supervisor(self, name: str | None) -> pykka.ActorRef[Any]:
        key = name or self._supervision.name
        ref = self._supervisors.get(key)
        if ref is None or not ref.is_alive():
            raise ConfigError(f"node {self.name!r} has no running supervisor {key!r}")
        return ref

    def _register(self, name: str, actor: Supervised) -> None:
        with self._lock:
            if name in self._directory or (
                name in self._supervisors and self._supervisors[name].is_alive()
            ):
                raise ConfigError(
                    f"node {self.name!r} already has an actor named {name!r}; pick another name"
                )
            if isinstance(actor, Supervisor):
                self._supervisors[name] = actor.actor_ref
            else:
                self._directory[name] = actor.inbox

    def _close_mailbox(self, name: str, inbox: PriorityInbox) -> None:
        """The name is gone for good: refuse what is queued for it, and what comes later."""
        with self._lock:
            if self._directory.get(name) is inbox:
                del self._directory[name]
        queued = inbox.close()
        answer_foreign(queued, name)
        gone = ActorNotFound(f"agent {name}@{self.name} stopped before handling the message")
        for item in queued:
            env = item.message
            if type(env) is Envelope and env.answered:
                self.send(env.error(gone, env.dst))

    # -- messaging ----------------------------------------------------------------------------

    def ref(self, address: str) -> Ref:
        """A ref on ``address`` (``name@node``, or a bare name on this node)."""
        return Ref(self, self.resolve(address))

    def resolve(self, address: str) -> str:
        """The canonical ``name@node`` form of ``address``."""
        return address if "@" in address else f"{address}@{self.name}"

    def tell(self, dst: str, type: str, body: Wire = None, *, prio: int = _MEDIUM) -> None:
        """Send a one-way message from outside any actor (at-most-once)."""
        self.send(Envelope.new(Kind.TELL, type, self._client, dst, body, prio=prio))

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
        return self._request(Kind.ASK, dst, type, body, timeout_s, prio, src, chain)

    def control(
        self, dst: str, command: str, params: Wire = None, *, timeout_s: float | None = None
    ) -> AskFuture:
        """Send a control command (start, stop, pause, resume, configure, status, reset)."""
        try:
            type_ = Command(command).type
        except ValueError:
            known = ", ".join(Command)
            raise ConfigError(f"unknown control command {command!r}; use one of: {known}") from None
        return self._request(
            Kind.CONTROL, dst, type_, params, timeout_s, Priority.CRITICAL, None, ()
        )

    def _request(  # noqa: PLR0917 - private; its callers name every argument
        self,
        kind: Kind,
        dst: str,
        type: str,
        body: Wire,
        timeout_s: float | None,
        prio: int,
        src: str | None,
        chain: tuple[str, ...],
    ) -> AskFuture:
        timeout = self.settings.ask_timeout_s if timeout_s is None else timeout_s
        if not timeout > 0:
            raise ConfigError(f"timeout_s must be a positive number of seconds, not {timeout!r}")
        now = now_ms()
        env = Envelope(
            VERSION, new_id(), kind, type, src or self._client, dst, None, prio, now,
            now + int(timeout * 1000), chain, body,
        )  # fmt: skip
        future = AskFuture(dst, type, timeout)
        self._pending[env.id] = future
        try:
            self.send(env)
        except BaseException:
            self._pending.pop(env.id, None)
            raise
        return future

    def send(self, env: Envelope) -> None:
        """Route ``env``: to a local actor's inbox, to a waiting ask, or to another node.

        Raises:
            InvalidParams: with the strict setting, a body that msgpack cannot carry.
        """
        name, _, node = env.dst.partition("@")
        if node and node != self.name:
            self._send_remote(env, node)
            return
        if self._strict:
            env = round_trip(env)
        if env.kind in _ANSWERS:
            self._resolve(env)
            return
        inbox = self._directory.get(name)
        if inbox is not None:
            try:
                inbox.put(PykkaEnvelope(env))
            except InboxClosed:
                pass
            else:
                return
        self._undeliverable(env, ActorNotFound(f"no actor named {name!r} on node {self.name!r}"))

    def _send_remote(self, env: Envelope, node: str) -> None:
        self._undeliverable(env, NodeDown(f"node {node!r} is not connected to {self.name!r}"))

    def _undeliverable(self, env: Envelope, exc: MacpError) -> None:
        self.counters["undeliverable"] += 1
        if env.answered:
            self.send(env.error(exc, env.dst))
        elif env.kind not in _ANSWERS:
            self._log.info("envelope.undeliverable", msg_id=env.id, type=env.type, dst=env.dst)

    def _resolve(self, env: Envelope) -> None:
        future = self._pending.pop(env.corr, None) if env.corr is not None else None
        if future is None:
            self.counters["late_replies"] += 1
            return
        if env.kind == _REPLY:
            future._settle(env.body)
        else:
            future._settle(exc=error_from_body(env.body))

    def _take_pending(self, match: Any) -> list[AskFuture]:
        taken = []
        for msg_id, future in list(self._pending.items()):
            if match(future) and self._pending.pop(msg_id, None) is not None:
                taken.append(future)
        return taken

    def _expire_asks(self) -> None:
        now = time.monotonic()
        for future in self._take_pending(lambda f: f.deadline < now):
            future._settle(exc=future._timeout())
