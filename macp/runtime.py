"""The node as its actors see it, and refs on actors through any such node.

Agents, their contexts and controls sit above the node in the layers, and never import it:
they talk to :class:`NodeRuntime`, which :class:`~macp.node.Node` implements. So does a
:class:`Ref`, a handle on an actor by address that routes through whichever node made it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from macp._supervised import Runtime
from macp.envelope import Envelope, Kind, Priority, Wire

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp._child_spec import ChildSpec, Restart, SupervisorSpec
    from macp._supervised import Supervised
    from macp.futures import AskFuture

__all__ = ["NodeRuntime", "Ref", "Registrable"]

_MEDIUM = int(Priority.MEDIUM)
_TELL = Kind.TELL


class Registrable(Protocol):
    """An agent as the registry sees it: its name, its status and load, its record."""

    @property
    def name(self) -> str: ...

    def load(self) -> tuple[str, int]:
        """The registry status (``available``, ``busy``, ...) and the load."""
        ...

    def record(self) -> dict[str, Wire]:
        """What the registry knows about the agent."""
        ...

    def messages(self) -> int:
        """The messages the agent took since it started (handled or failed)."""
        ...


class NodeRuntime(Runtime, Protocol):
    """The node an agent runs on (``self.node``, ``ctx.node``): the public API of
    :class:`~macp.node.Node` (documented there), seen from above it."""

    @property
    def incarnation(self) -> str: ...
    @property
    def head(self) -> str | None: ...
    @property
    def address(self) -> str | None: ...
    @property
    def _client(self) -> str: ...

    def stop(self, timeout_s: float | None = None) -> None: ...
    def info(self) -> dict[str, Any]: ...
    def peers(self) -> dict[str, dict[str, Any]]: ...
    def agents(self) -> list[str]: ...
    def ref(self, address: str) -> Ref: ...
    def resolve(self, address: str) -> str: ...
    def tell(self, dst: str, type: str, body: Wire = None, *, prio: int = _MEDIUM) -> None: ...

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
    ) -> AskFuture: ...

    def control(
        self, dst: str, command: str, params: Wire = None, *, timeout_s: float | None = None
    ) -> AskFuture: ...

    def ask_node(
        self, node: str, type: str, body: Wire = None, *, timeout_s: float | None = None
    ) -> AskFuture: ...

    def spawn(
        self,
        actor: type[Supervised],
        name: str,
        *,
        config: Mapping[str, Wire] | None = None,
        restart: Restart | str = ...,
        shutdown_s: float | None = None,
        supervisor: str | None = None,
        **agent: Any,
    ) -> Ref: ...

    def start_child(
        self, spec: ChildSpec | SupervisorSpec, *, supervisor: str | None = None
    ) -> None: ...

    def terminate(self, name: str, *, supervisor: str | None = None) -> bool: ...
    def children(self, supervisor: str | None = None) -> list[dict[str, object]]: ...
    def subscribe(self, address: str, *events: str) -> None: ...
    def unsubscribe(self, address: str, *events: str) -> None: ...
    def publish(self, event: str, body: Wire) -> None: ...

    def _agent_started(self, agent: Registrable) -> None:
        """An agent's ``on_start`` returned (called on its thread): register it."""


class Ref:
    """A handle on an actor by address, local or remote: ``tell``, ``ask`` and ``control``."""

    __slots__ = ("_node", "address")

    def __init__(self, node: NodeRuntime, address: str) -> None:
        self._node = node
        self.address = address

    def __repr__(self) -> str:
        return f"Ref({self.address!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and other.address == self.address

    def __hash__(self) -> int:
        return hash(self.address)

    def tell(self, type: str, body: Wire = None, *, prio: int = _MEDIUM) -> None:
        """Send a one-way message (at-most-once)."""
        node = self._node  # the address is already resolved: straight to the node's send
        node.send(Envelope.new(_TELL, type, node._client, self.address, body, prio=prio))

    def ask(
        self, type: str, body: Wire = None, *, timeout_s: float | None = None, prio: int = _MEDIUM
    ) -> AskFuture:
        """Send a request; ``.get()`` on the result waits for the reply."""
        return self._node.ask(self.address, type, body, timeout_s=timeout_s, prio=prio)

    def control(
        self, command: str, params: Wire = None, *, timeout_s: float | None = None
    ) -> AskFuture:
        """Send a control command (start, stop, pause, resume, configure, status, reset)."""
        return self._node.control(self.address, command, params, timeout_s=timeout_s)
