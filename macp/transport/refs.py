"""Refs and replies: the caller's side of messaging, the same for local and remote actors.

A :class:`Ref` names an actor by address (``name@node``) and routes through its node, so the
actor may live in this process or on another host. An ``ask`` returns an :class:`AskFuture`,
kept in the node's :class:`PendingAsks` until the reply, an error, the deadline, or the
target node going down settles it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from macp.envelope import Envelope, Kind, Priority, Wire

if TYPE_CHECKING:
    from macp.futures import AskFuture
    from macp.node import Node

__all__ = ["Ref"]

_MEDIUM = int(Priority.MEDIUM)
_TELL = Kind.TELL


class Ref:
    """A handle on an actor by address, local or remote: ``tell``, ``ask`` and ``control``."""

    __slots__ = ("_node", "address")

    def __init__(self, node: Node, address: str) -> None:
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
