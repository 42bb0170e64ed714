"""Releasing what dead agents held: the resource manager's watch on lease and lock owners.

An owner that is an agent address (``name@node``) is watched: its leases and locks are
released when the registry drops the agent (stopped for good, or crashed without a restart),
when its node goes down, and, after a restart of the manager, when the agent has not
re-registered within a grace period (three heartbeat intervals). Owners that are not agent
addresses (a script's name) are never released on anyone's behalf.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from macp.actors.agent import handler
from macp.actors.registry import CHANGED, GONE, LIST, SUBSCRIBE
from macp.errors import MacpError

if TYPE_CHECKING:
    from macp.envelope import Wire

__all__ = ["OwnerWatch"]


class _Reap(NamedTuple):
    pass


class OwnerWatch:
    """Mixed into :class:`~macp.actors.resources.ResourceManager`."""

    if TYPE_CHECKING:
        address: str
        node: Any
        config: dict[str, Wire]
        log: Any

        def subscribe(self, *events: str) -> None: ...
        def release_owner(self, owner: str) -> dict[str, Wire]: ...
        def owners(self) -> set[str]: ...
        def _tell_self(self, message: Any) -> None: ...

    def _watch_owners(self) -> None:
        """Start watching (from ``on_start``)."""
        self.subscribe("node.down")
        self._registry = str(self.config.get("registry") or f"registry@{self.node.name}")
        try:
            self.node.ask(self._registry, SUBSCRIBE, {"address": self.address}, timeout_s=2).get()
        except MacpError as e:
            self.log.info("resources.registry_unreachable", error=str(e))
        grace_s = 3 * self.node.settings.heartbeat_interval_s
        self.node.scheduler.call_later(grace_s, self._tell_self, _Reap())

    def _owner_message(self, message: Any) -> bool:
        if not isinstance(message, _Reap):
            return False
        try:
            records = self.node.ask(self._registry, LIST, timeout_s=2).get()
        except MacpError as e:
            self.log.info("resources.reap_skipped", error=str(e))
            return True
        alive = {r["address"] for r in records}
        for owner in sorted(self.owners()):
            if "@" in owner and owner not in alive:
                self._release(owner, "not registered after a restart")
        return True

    def _release(self, owner: str, why: str) -> None:
        released = self.release_owner(owner)
        if released.get("released") or released.get("locks"):
            self.log.info("resources.owner_released", owner=owner, why=why, **released)

    @handler(CHANGED)
    def _owner_changed(self, record: dict[str, Any]) -> None:
        if record.get("status") == GONE and record.get("address") in self.owners():
            self._release(record["address"], "deregistered")

    @handler("node.down")
    def _owner_node_down(self, body: dict[str, Any]) -> None:
        suffix = f"@{body.get('node')}"
        for owner in sorted(self.owners()):
            if owner.endswith(suffix):
                self._release(owner, "its node is down")
