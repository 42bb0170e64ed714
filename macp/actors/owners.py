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


class _Resubscribe(NamedTuple):
    pass


class OwnerWatch:
    """Mixed into :class:`~macp.actors.resources.ResourceManager`."""

    if TYPE_CHECKING:
        address: str
        node: Any
        config: dict[str, Any]
        log: Any

        def subscribe(self, *events: str) -> None: ...
        def release_owner(self, owner: str) -> dict[str, Wire]: ...
        def owners(self) -> set[str]: ...
        def _tell_self(self, message: Any) -> None: ...

    def _watch_owners(self) -> None:
        """Start watching (from ``on_start``); stop with :meth:`_unwatch_owners`."""
        self.subscribe("node.down")
        self._registry = str(self.config.get("registry") or f"registry@{self.node.name}")
        self._registry_incarnation: str | None = None
        self._resubscribe()
        self._watch_timer = self.node.scheduler.call_every(2.0, self._tell_self, _Resubscribe())

    def _unwatch_owners(self) -> None:
        timer = getattr(self, "_watch_timer", None)
        if timer is not None:
            timer.cancel()

    def _resubscribe(self) -> None:
        """Subscribe to the registry; after a (re)start of either, reap once nodes re-registered."""
        body = {"address": self.address, "incarnation": self._registry_incarnation}
        try:
            reply = self.node.ask(self._registry, SUBSCRIBE, body, timeout_s=2).get()
        except MacpError as e:
            self.log.info("resources.registry_unreachable", error=str(e))
            return
        if reply["incarnation"] != self._registry_incarnation:
            self._registry_incarnation = reply["incarnation"]
            # A node re-registers within one heartbeat, after its pending one times out.
            interval = self.node.settings.heartbeat_interval_s
            grace_s = max(1.0, 2 * interval) + 3 * interval
            self.node.scheduler.call_later(grace_s, self._tell_self, _Reap())

    def _owner_message(self, message: Any) -> bool:
        if isinstance(message, _Resubscribe):
            self._resubscribe()
            return True
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
        self.log.info("resources.releasing_owner", owner=owner, why=why)
        self.release_owner(owner)

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
