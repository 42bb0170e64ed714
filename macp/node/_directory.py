"""A node's names: the mailbox of each agent and the supervisor it belongs to, the ref of each
supervisor, who hears what event.

Names are per node (never Pykka's process-global registry), so several nodes can share one
process. A name's mailbox outlives restarts of its agent; it is closed when the name goes.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from macp.errors import ConfigError

if TYPE_CHECKING:
    from macp._inbox import PriorityInbox
    from macp._supervised import Supervised

__all__ = ["Directory"]


class Directory:
    """Thread-safe tables of one node's names."""

    def __init__(self, node: str) -> None:
        self._node = node
        self._lock = threading.Lock()
        self.mailboxes: dict[str, PriorityInbox] = {}
        self.supervisors: dict[str, Any] = {}
        self._owners: dict[str, Any] = {}  # an agent's name -> its supervisor's ref
        self._subscribers: dict[str, set[str]] = {}

    def register(self, name: str, actor: Supervised, *, supervisor: bool) -> None:
        """Claim ``name`` for ``actor`` (an agent's mailbox, or a supervisor's ref).

        Raises:
            ConfigError: the name is taken on this node.
        """
        with self._lock:
            if name in self.mailboxes or (
                name in self.supervisors and self.supervisors[name].is_alive()
            ):
                raise ConfigError(
                    f"node {self._node!r} already has an actor named {name!r}; pick another name"
                )
            if supervisor:
                self.supervisors[name] = actor.actor_ref
            else:
                self.mailboxes[name] = actor.inbox
                self._owners[name] = actor.parent

    def release(self, name: str, inbox: PriorityInbox) -> list[Any]:
        """The name goes: close its mailbox; what was queued in it."""
        with self._lock:
            if self.mailboxes.get(name) is inbox:
                del self.mailboxes[name]
                self._owners.pop(name, None)
        return inbox.close()

    def owner(self, name: str) -> Any:
        """The ref of the supervisor of agent ``name``, or ``None`` (no such agent)."""
        return self._owners.get(name)

    def supervisor(self, name: str) -> Any:
        """The ref of running supervisor ``name``.

        Raises:
            ConfigError: there is none.
        """
        ref = self.supervisors.get(name)
        if ref is None or not ref.is_alive():
            raise ConfigError(f"node {self._node!r} has no running supervisor {name!r}")
        return ref

    def subscribe(self, address: str, events: tuple[str, ...]) -> None:
        with self._lock:
            for event in events:
                self._subscribers.setdefault(event, set()).add(address)

    def unsubscribe(self, address: str, events: tuple[str, ...]) -> None:
        with self._lock:
            for event in events:
                self._subscribers.get(event, set()).discard(address)

    def subscribers(self, event: str) -> list[str]:
        with self._lock:
            return sorted(self._subscribers.get(event, ()))
