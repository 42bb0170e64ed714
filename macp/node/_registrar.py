"""A node's side of the registry: it announces the node's agents and keeps their status fresh.

Every heartbeat interval the node asks the registry ``registry.heartbeat`` with each local
agent's status, load and count of messages taken (:meth:`~macp.Agent.messages`, for the
monitor's message rates), and the ``version`` of its set of agents. The full records ride along
only when that set changed (an agent started, restarted or went) or when the registry asks for
them (it restarted and lost them, or never had them): so an agent registers on start and after
every restart, and a registry that comes back is whole again within one interval. A control
command that changes an agent's state sends a heartbeat at once (with one such heartbeat in
flight, the commands made meanwhile share the next), and is answered only after the registry
has taken it, so routing sees a paused agent as paused by the time ``pause`` returns.

Bare names (``summarizer`` rather than ``summarizer@n2``) that are not local are looked up in
the registry and cached; the cache is dropped when the registry's ``generation`` moves on
(reported with every heartbeat) and for a node that goes down.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Final

from macp.address import check_name
from macp.errors import MacpError, NodeDown
from macp.futures import AskFuture
from macp.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp._timers import Scheduler
    from macp.envelope import Wire
    from macp.runtime import Registrable

__all__ = ["REGISTRY", "Registrar", "Registration"]

REGISTRY: Final = "registry"
HEARTBEAT: Final = "registry.heartbeat"
LOOKUP: Final = "registry.lookup"

_log = get_logger("macp.registrar")


class Registrar:
    """Announces one node's agents to the registry on node ``head``.

    Args:
        node: the node's name.
        incarnation: this process's id as that node.
        head: the node hosting the registry.
        interval_s: the heartbeat interval.
        scheduler: the node's timer thread, which sends the heartbeats.
        ask: the node's ``ask`` (the heartbeats and look-ups are asks to the registry).
    """

    def __init__(
        self,
        node: str,
        incarnation: str,
        head: str,
        *,
        interval_s: float,
        scheduler: Scheduler,
        ask: Callable[..., AskFuture],
    ) -> None:
        self._node = node
        self._incarnation = incarnation
        self._interval_s = interval_s
        self._scheduler = scheduler
        self._ask = ask
        self.head = head
        self.registry = f"{REGISTRY}@{head}"
        self._lock = threading.Lock()
        self._synced_changed = threading.Condition(self._lock)
        self._agents: dict[str, Registrable] = {}
        self._version = 0
        self._synced = -1  # the version the registry last accepted the records of
        self._in_flight = False
        self._generation: int | None = None
        self._cache: dict[str, str] = {}
        self._timer: Any = None
        self._change: AskFuture | None = None  # the heartbeat the next state change joins
        self._change_in_flight = False  # a state change's heartbeat awaits its answer

    def start(self) -> None:
        """Start the heartbeats (any thread; a second call does nothing)."""
        with self._lock:
            if self._timer is not None:
                return
            interval = self._interval_s
            self._timer = self._scheduler.call_every(interval, self.beat)
        self._scheduler.call_later(0, self.beat)

    def stop(self) -> None:
        with self._lock:
            timer = self._timer
        if timer is not None:
            timer.cancel()

    def agent_started(self, agent: Registrable) -> None:
        """A local agent (or a new incarnation of one) is up: register it now."""
        with self._lock:
            self._agents[agent.name] = agent
            self._version += 1
        self._scheduler.call_later(0, self.beat)

    def agent_gone(self, name: str) -> None:
        """A local agent's name went for good: deregister it now."""
        with self._lock:
            if self._agents.pop(name, None) is None:
                return
            self._version += 1
        self._scheduler.call_later(0, self.beat)

    def agent_changed(self) -> AskFuture:
        """A local agent's state changed (a control command): tell the registry at once.

        Changes share heartbeats, sent from the timer thread, which reads every agent's state
        after the changes that asked for it. At most one such heartbeat is in flight: changes
        made meanwhile (``pause all``) wait for its answer and then go together in the next.

        Returns:
            A future settled once the registry has the new state (and has told its
            subscribers), or failed if the registry is unreachable.
        """
        with self._lock:
            shared = self._change
            if shared is None:
                timeout_s = max(1.0, 2 * self._interval_s)
                shared = self._change = AskFuture(self.registry, HEARTBEAT, timeout_s)
                if not self._change_in_flight:
                    self._scheduler.call_later(0, self._send_change)
        return shared

    def _send_change(self) -> None:
        with self._lock:
            shared, self._change = self._change, None
            self._change_in_flight = shared is not None
        if shared is None:
            return
        sent = self._send(regular=False)
        if sent is None:
            shared.settle(exc=NodeDown(f"registry {self.registry} is unreachable"))
            self._change_done()
        else:
            sent.add_done_callback(lambda f: self._change_answered(f, shared))

    def _change_answered(self, answered: AskFuture, shared: AskFuture) -> None:
        _relay(answered, shared)
        self._change_done()

    def _change_done(self) -> None:
        """The change heartbeat in flight is over: send the one changes made meanwhile joined."""
        with self._lock:
            self._change_in_flight = False
            waiting = self._change is not None
        if waiting:
            self._scheduler.call_later(0, self._send_change)

    def beat(self) -> None:
        """Send one heartbeat (on the timer thread); at most one regular beat is in flight."""
        with self._lock:
            if self._in_flight:
                return
            self._in_flight = True
        if self._send(regular=True) is None:
            self._in_flight = False

    def _send(self, *, regular: bool) -> AskFuture | None:
        with self._lock:
            version = self._version
            agents = list(self._agents.values())
            with_records = self._synced != version
        body: dict[str, Wire] = {
            "node": self._node,
            "incarnation": self._incarnation,
            "version": version,
            "agents": {a.name: list(a.load()) for a in agents},
            "messages": {a.name: a.messages() for a in agents},
        }
        if with_records:
            body["records"] = [a.record() for a in agents]
        try:
            timeout_s = max(1.0, 2 * self._interval_s)
            future = self._ask(self.registry, HEARTBEAT, body, timeout_s=timeout_s)
        except MacpError as e:
            _log.debug("registrar.unreachable", node=self._node, error=str(e))
            return None
        future.add_done_callback(
            lambda f: self._answered(f, version, with_records=with_records, regular=regular)
        )
        return future

    def _answered(
        self, future: AskFuture, version: int, *, with_records: bool, regular: bool
    ) -> None:
        if regular:
            self._in_flight = False
        if future.exception() is not None:
            return  # the registry is unreachable: the records go again with the next beat
        reply = future.result()
        if not isinstance(reply, dict):
            return
        with self._lock:
            resync = bool(reply.get("resync"))
            if resync:
                self._synced = -1
            elif with_records:
                self._synced = version
                self._synced_changed.notify_all()
            generation = reply.get("generation")
            if generation != self._generation:
                self._generation = generation if isinstance(generation, int) else None
                self._cache.clear()
        if resync:  # the registry lost this node's agents: send them now, not in a second
            self._scheduler.call_later(0, self.beat)

    def wait_registered(self, timeout_s: float) -> bool:
        """Wait until the registry holds this node's agents as they are now; False if it has
        not taken them within ``timeout_s`` (they go again with every heartbeat)."""
        with self._synced_changed:
            return self._synced_changed.wait_for(lambda: self._synced == self._version, timeout_s)

    def resolve(self, name: str) -> str | None:
        """The address of an agent called ``name`` somewhere in the cluster, if the registry
        knows one (blocking: at most one short ask)."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        try:
            found = self._ask(self.registry, LOOKUP, {"name": name}, timeout_s=2.0).get()
        except MacpError:
            return None
        if isinstance(found, str):
            self._cache[name] = found
            return found
        return None

    def forget_node(self, node: str) -> None:
        """Drop cached addresses on ``node`` (it went down)."""
        for name, address in list(self._cache.items()):
            if address.endswith(f"@{node}"):
                self._cache.pop(name, None)


def _relay(done: AskFuture, to: AskFuture) -> None:
    exc = done.exception()
    to.settle(None if exc is not None else done.result(), exc)


class Registration:
    """A node's agents, and the registrar announcing them to its head's registry, if it knows
    a head (it may learn one later: the agents started meanwhile are announced then).

    Args: as :class:`Registrar`'s, but the head.
    """

    def __init__(
        self,
        node: str,
        incarnation: str,
        *,
        interval_s: float,
        scheduler: Scheduler,
        ask: Callable[..., AskFuture],
    ) -> None:
        self._node = node
        self._incarnation = incarnation
        self._interval_s = interval_s
        self._scheduler = scheduler
        self._ask = ask
        self.registrar: Registrar | None = None
        self._running: dict[str, Registrable] = {}  # the agents started, for a head named later
        self._started = False

    @property
    def head(self) -> str | None:
        return self.registrar.head if self.registrar is not None else None

    def set_head(self, head: str) -> None:
        """Announce the agents to the registry on ``head`` from now on.

        Raises:
            ConfigError: ``head`` is not a valid node name.
        """
        check_name(head, "head")
        if self.registrar is not None and self.registrar.head == head:
            return
        if self.registrar is not None:
            self.registrar.stop()
        registrar = self.registrar = Registrar(
            self._node, self._incarnation, head, interval_s=self._interval_s,
            scheduler=self._scheduler, ask=self._ask,
        )  # fmt: skip
        # The agents already started (an agent starting meanwhile is added first, then reads
        # the registrar: it is in this copy, or it sees the new registrar, or both).
        for agent in self._running.copy().values():
            registrar.agent_started(agent)
        if self._started:
            registrar.start()

    def learn_head(self, head: str) -> None:
        """The member this node joined named its head: taken, unless this node has one."""
        if self.head is None:
            self.set_head(head)

    def start(self) -> None:
        """The node started: heartbeats begin (now, or once a head is known)."""
        self._started = True
        if self.registrar is not None:
            self.registrar.start()

    def stop(self) -> None:
        if self.registrar is not None:
            self.registrar.stop()

    def agent_started(self, agent: Registrable) -> None:
        self._running[agent.name] = agent  # before reading the registrar: see set_head
        if self.registrar is not None:
            self.registrar.agent_started(agent)

    def agent_gone(self, name: str) -> None:
        self._running.pop(name, None)
        if self.registrar is not None:
            self.registrar.agent_gone(name)

    def agent_changed(self, address: str) -> AskFuture | None:
        """The agent at ``address`` changed state: a future settled once the registry has the
        news, or ``None`` without a registry to tell (no head, or the agent is the registry)."""
        registrar = self.registrar
        if registrar is None or registrar.registry == address:
            return None
        return registrar.agent_changed()

    def resolve(self, name: str) -> str | None:
        """The address the registry knows for an agent called ``name``, if any."""
        return self.registrar.resolve(name) if self.registrar is not None else None

    def forget_node(self, node: str) -> None:
        if self.registrar is not None:
            self.registrar.forget_node(node)
