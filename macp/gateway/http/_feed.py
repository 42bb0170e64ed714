"""The agent that feeds the gateway's event hub: :class:`Feed`, on the gateway's member node.

A :class:`~macp.TaskEvents` (it holds and renews the coordinator's task-events lease) that
also subscribes to the registry's changes and the monitor's alerts, each time it renews (both
subscriptions are idempotent, so asking again is also how they come back after the head
restarts), and hands every one to the hub. It is in the control plane's group, so commands
to ``all`` agents leave it alone and the hub leaves its own record out of ``agent_update``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Protocol

from macp.actors.agent import handler
from macp.actors.monitor import ALERT
from macp.actors.monitor import SUBSCRIBE as MONITOR_SUBSCRIBE
from macp.actors.registry import CHANGED, CONTROL_PLANE
from macp.actors.registry import SUBSCRIBE as REGISTRY_SUBSCRIBE
from macp.actors.task_events import TaskEvents
from macp.errors import MacpError

if TYPE_CHECKING:
    import threading
    from collections.abc import Mapping

    from macp.envelope import Wire
    from macp.futures import AskFuture

__all__ = ["Feed", "Sink"]


class Sink(Protocol):
    """Where the feed hands the changes (the :class:`~.events.EventHub`), on its thread."""

    def task_event(self, body: Mapping[str, Any]) -> None: ...
    def agent_changed(self, record: Mapping[str, Any]) -> None: ...
    def alert(self, body: Mapping[str, Any]) -> None: ...


class Feed(TaskEvents):
    """Hands the runtime's changes (tasks, agents, alerts) to ``hub``.

    Args:
        hub: the gateway's event hub.
        subscribed: set once the coordinator has taken the task-events lease.
    """

    def __init__(
        self,
        config: Mapping[str, Wire] | None = None,
        *,
        hub: Sink,
        subscribed: threading.Event,
    ) -> None:
        super().__init__(config, group=CONTROL_PLANE, on_event=hub.task_event)
        self.hub = hub
        self.subscribed = subscribed
        self._incarnation: str | None = None

    def _renew(self) -> None:
        super()._renew()
        head = self.node.head
        if head is None:
            return
        registry = {"address": self.address, "incarnation": self._incarnation}
        with contextlib.suppress(MacpError):  # the head is down: the next renewal tries again
            self.node.ask(f"registry@{head}", REGISTRY_SUBSCRIBE, registry,
                          src=self.address).add_done_callback(self._registry)  # fmt: skip
            self.node.ask(f"monitor@{head}", MONITOR_SUBSCRIBE, {"address": self.address},
                          src=self.address)  # fmt: skip

    def _registry(self, future: AskFuture) -> None:
        if future.exception() is None:
            self._incarnation = future.result()["incarnation"]

    @handler(CHANGED)
    def _agent(self, record: dict[str, Any]) -> None:
        if record.get("group") != CONTROL_PLANE:
            self.hub.agent_changed(record)

    @handler(ALERT)
    def _alert(self, body: dict[str, Any]) -> None:
        self.hub.alert(body)
