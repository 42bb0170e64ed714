"""The node's actors and events: spawning under supervisors, names, and peer events.

Part of :class:`~macp.node.Node` (a mixin, to keep each module to one concern).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pykka

from macp._supervised import answer_foreign
from macp.envelope import Envelope, Kind, Wire
from macp.errors import ActorNotFound, MacpError, NodeDown, UnknownMessageType
from macp.supervisor import (
    ChildSpec,
    Restart,
    RestartChild,
    StartChild,
    Supervisor,
    SupervisorSpec,
    TerminateChild,
    WhichChildren,
)
from macp.transport._system import SYSTEM
from macp.transport.frames import GATEWAY

if TYPE_CHECKING:
    from collections.abc import Mapping

    import structlog

    from macp._directory import Directory
    from macp._inbox import PriorityInbox
    from macp._registrar import Registrar
    from macp._supervised import Supervised
    from macp.actors.agent import Agent
    from macp.transport.liveness import PeerEvent
    from macp.transport.refs import PendingAsks, Ref
    from macp.transport.router import Router

__all__ = ["NodeActors"]


class NodeActors:
    """Spawning, naming and events of :class:`~macp.node.Node`."""

    if TYPE_CHECKING:
        name: str
        counters: Any
        registrar: Registrar | None
        _running: dict[str, Agent]
        _names: Directory
        _directory: dict[str, PriorityInbox]
        router: Router | None
        _supervision: SupervisorSpec
        _pending: PendingAsks
        _log: structlog.stdlib.BoundLogger

        def send(self, env: Envelope) -> None: ...
        def _undeliverable(self, env: Envelope, exc: MacpError) -> None: ...
        def ref(self, address: str) -> Ref: ...
        def resolve(self, address: str) -> str: ...

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
        **agent: Any,
    ) -> Ref:
        """Start an agent under a supervisor (the root by default) and return its ref.

        Extra keyword arguments (``capabilities``, ``role``, ``group``) go to the agent.
        """
        kwargs = {"config": config, **agent} if config is not None else agent
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

    def _supervisor(self, name: str | None) -> Any:
        return self._names.supervisor(name or self._supervision.name)

    def _register(self, name: str, actor: Supervised) -> None:
        self._names.register(name, actor, supervisor=isinstance(actor, Supervisor))

    def _agent_started(self, agent: Agent) -> None:
        """An agent's ``on_start`` returned (called on its thread): register it."""
        self._running[agent.name] = agent  # before reading the registrar: see Node.set_head
        if self.registrar is not None:
            self.registrar.agent_started(agent)

    def _close_mailbox(self, name: str, inbox: PriorityInbox) -> None:
        """The name is gone for good: refuse what is queued for it, and what comes later."""
        self._running.pop(name, None)
        if self.registrar is not None:
            self.registrar.agent_gone(name)
        queued = self._names.release(name, inbox)
        answer_foreign(queued, name)
        gone = ActorNotFound(f"agent {name}@{self.name} stopped before handling the message")
        for env in queued:
            if type(env) is Envelope and env.answered:
                self.send(env.error(gone, f"{SYSTEM}@{self.name}"))

    def _restart(self, env: Envelope, name: str) -> None:
        """Hand a ``restart`` command to the supervisor of agent ``name`` rather than to its
        mailbox, which an agent stuck in a handler never reads (called by ``_deliver``)."""
        if env.kind != Kind.CONTROL:
            self._undeliverable(env, UnknownMessageType(
                f"{env.type!r} is a control command: send it with Node.control"
            ))  # fmt: skip
            return
        owner = self._names.owner(name)
        if owner is not None:
            try:
                owner.tell(RestartChild(name, env))
            except pykka.ActorDeadError:  # its supervisor is restarting, and the agent with it
                pass
            else:
                return
        self._undeliverable(env, ActorNotFound(f"no actor named {name!r} on node {self.name!r}"))

    # -- events -------------------------------------------------------------------------------

    def subscribe(self, address: str, *events: str) -> None:
        """Tell ``address`` an ``event`` envelope on each of ``events`` (``node.up``,
        ``node.down``); the body is ``{"node": name, "reason": ...}``."""
        self._names.subscribe(self.resolve(address), events)

    def unsubscribe(self, address: str, *events: str) -> None:
        self._names.unsubscribe(self.resolve(address), events)

    def _on_peer_event(self, event: PeerEvent) -> None:
        """A peer went up or down (called on the I/O thread).

        Subscribers hear of a node going down before the asks waiting on it fail: an actor
        that gets both (the coordinator) handles the event first, so it knows the failures for
        what they are, and never picks an agent of that node again meanwhile.
        """
        self.publish(event.kind, {"node": event.node, "reason": event.reason})
        if event.kind == "node.down" and event.node == GATEWAY:  # a client's one member
            down = NodeDown(
                f"the node this client reaches the cluster through went down ({event.reason}) "
                "before the answer came; retry once it is back (the client reconnects by itself)"
            )
            self.counters["asks_failed_node_down"] += self._pending.fail(
                lambda _f: True, lambda _f: down
            )
        elif event.kind == "node.down":
            failed = self._pending.node_down(event.node, event.reason)
            self.counters["asks_failed_node_down"] += failed
            if self.registrar is not None:
                self.registrar.forget_node(event.node)

    def publish(self, event: str, body: Wire) -> None:
        """Tell every subscriber of ``event`` about it (at-most-once, like any tell)."""
        for address in self._names.subscribers(event):
            try:
                self.send(Envelope.new(Kind.EVENT, event, f"{SYSTEM}@{self.name}", address, body))
            except MacpError as e:
                self._log.warning(
                    "event.undeliverable", event_type=event, dst=address, error=str(e)
                )

    def peers(self) -> dict[str, dict[str, Any]]:
        """The known peers: address, state (``joining``, ``up``, ``down``), last heard."""
        return self.router.peers() if self.router is not None else {}
