"""A node's actors under its supervisors: starting and stopping them, and their names.

Supervisors do the starting and restarting (:mod:`macp.supervisor`); this is the node's side:
it hands a supervisor its orders, claims and releases names in the node's directory, and hands
a ``restart`` command to the supervisor of its agent rather than to the agent's mailbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pykka

from macp._supervised import answer_foreign
from macp.envelope import Envelope, Kind
from macp.errors import ActorNotFound, MacpError, UnknownMessageType
from macp.supervisor import (
    ChildSpec,
    Restart,
    RestartChild,
    StartChild,
    Supervisor,
    TerminateChild,
    WhichChildren,
)
from macp.transport.router import SYSTEM

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from macp._child_spec import SupervisorSpec
    from macp._inbox import PriorityInbox
    from macp._supervised import Supervised
    from macp.envelope import Wire
    from macp.node._directory import Directory

__all__ = ["Spawner"]


class Spawner:
    """Orders to one node's supervisors, and the names of what they start.

    Args:
        node: the node's name.
        names: the node's directory.
        root: the name of the node's root supervisor (the default one).
        send: the node's ``send``, for the answers to what waited on a name that went.
    """

    def __init__(
        self, node: str, names: Directory, root: str, send: Callable[[Envelope], None]
    ) -> None:
        self._node = node
        self._names = names
        self._root = root
        self._send = send

    def spawn(
        self,
        actor: type[Supervised],
        name: str,
        *,
        config: Mapping[str, Wire] | None,
        restart: Restart | str,
        shutdown_s: float | None,
        supervisor: str | None,
        agent: dict[str, Any],
    ) -> None:
        """Start an agent under a supervisor (``agent``: more keyword arguments for it)."""
        kwargs = {"config": config, **agent} if config is not None else agent
        spec = ChildSpec(
            actor, name, kwargs=kwargs, restart=Restart(restart), shutdown_s=shutdown_s
        )
        self.start_child(spec, supervisor)

    def start_child(self, spec: ChildSpec | SupervisorSpec, supervisor: str | None) -> None:
        """Add a child to a running supervisor (waits until it has started)."""
        self._supervisor(supervisor).ask(StartChild(spec))

    def terminate(self, name: str, supervisor: str | None) -> bool:
        """Stop a child for good; ``False`` if there is no such child."""
        return bool(self._supervisor(supervisor).ask(TerminateChild(name)))

    def children(self, supervisor: str | None) -> list[dict[str, object]]:
        """A supervisor's children: name, alive, restarts, whether it is a supervisor."""
        return list(self._supervisor(supervisor).ask(WhichChildren()))

    def _supervisor(self, name: str | None) -> Any:
        return self._names.supervisor(name or self._root)

    def register(self, name: str, actor: Supervised) -> None:
        """Claim ``name`` for ``actor`` (raises ``ConfigError`` if it is taken)."""
        self._names.register(name, actor, supervisor=isinstance(actor, Supervisor))

    def release(self, name: str, inbox: PriorityInbox) -> None:
        """The name is gone for good: refuse what is queued for it, and what comes later."""
        queued = self._names.release(name, inbox)
        answer_foreign(queued, name)
        gone = ActorNotFound(f"agent {name}@{self._node} stopped before handling the message")
        for env in queued:
            if type(env) is Envelope and env.answered:
                self._send(env.error(gone, f"{SYSTEM}@{self._node}"))

    def restart(self, env: Envelope, name: str) -> MacpError | None:
        """Hand a ``restart`` command to the supervisor of agent ``name`` rather than to its
        mailbox, which an agent stuck in a handler never reads; why it could not be, if so."""
        if env.kind != Kind.CONTROL:
            return UnknownMessageType(
                f"{env.type!r} is a control command: send it with Node.control"
            )
        owner = self._names.owner(name)
        if owner is not None:
            try:
                owner.tell(RestartChild(name, env))
            except pykka.ActorDeadError:  # its supervisor is restarting, and the agent with it
                pass
            else:
                return None
        return ActorNotFound(f"no actor named {name!r} on node {self._node!r}")
