"""An agent that follows the coordinator's task events: :class:`TaskEvents`.

It holds a subscription (``tasks.subscribe``, a lease: see
:mod:`macp.actors.coordinator.events`), renews it on the node's timer thread three times per
lease, and calls :meth:`TaskEvents.on_task_event` (by default, the ``on_event`` callback it was
given) with each ``task.event``, on its own thread, in the order the coordinator told them.
Renewing is also what brings the events back after the head restarts: the new coordinator
knows no subscriber until the next renewal, and the events of the moments between are lost
(events are at most once; read ``coordinator.status`` to be sure of a task).
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any, Final

from macp.actors.agent import Agent, handler
from macp.actors.coordinator.messages import TASK_EVENT, TASKS_SUBSCRIBE, TASKS_UNSUBSCRIBE
from macp.errors import ConfigError, MacpError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from macp._timers import Timer
    from macp.envelope import Wire
    from macp.futures import AskFuture

__all__ = ["DEFAULT_LEASE_S", "TaskEvents"]

DEFAULT_LEASE_S: Final = 10.0
_RENEWALS_PER_LEASE: Final = 3


class TaskEvents(Agent):
    """Follows every task's changes of state; put one on any node of a cluster.

    Config: ``coordinator`` (its address; default ``coordinator@HEAD``, the node's head) and
    ``lease_s`` (default 10: a subscriber silent that long is dropped).

    Args:
        on_event: called with each event's body (``{task_id, state, previous, time_ms, type,
            attempt?, agent?, error?, run?, step?}``) on the agent's thread; or override
            :meth:`on_task_event`.
        config, capabilities, role, group: as for any :class:`~macp.Agent`.

    Attributes:
        subscribed: set once the coordinator has taken the first subscription.
    """

    def __init__(
        self,
        config: Mapping[str, Wire] | None = None,
        *,
        on_event: Callable[[dict[str, Any]], object] | None = None,
        capabilities: Sequence[str] | None = None,
        role: str | None = None,
        group: str | None = None,
    ) -> None:
        super().__init__(config, capabilities=capabilities, role=role, group=group)
        self._on_event = on_event
        self.subscribed = threading.Event()

    def on_start(self) -> None:
        head = self.node.head
        coordinator = self.config.get("coordinator") or (head and f"coordinator@{head}")
        if not isinstance(coordinator, str):
            raise ConfigError(
                f"{type(self).__name__} {self.name!r} needs its node's head (or config "
                "'coordinator', the coordinator's address) to subscribe to task events"
            )
        lease_s = self.config.get("lease_s", DEFAULT_LEASE_S)
        if isinstance(lease_s, bool) or not isinstance(lease_s, int | float) or lease_s <= 0:
            raise ConfigError(f"config 'lease_s' must be seconds above 0, not {lease_s!r}")
        self.coordinator = coordinator
        self.lease_s = float(lease_s)
        self._renew()
        self._timer: Timer = self.node.scheduler.call_every(
            self.lease_s / _RENEWALS_PER_LEASE, self._renew
        )

    def on_stop(self) -> None:
        self._timer.cancel()
        body = {"address": self.address}
        with contextlib.suppress(MacpError):  # not waited for: the lease ends by itself
            self.node.ask(self.coordinator, TASKS_UNSUBSCRIBE, body, src=self.address)

    def on_failure(self, *_exc: object) -> None:
        timer = getattr(self, "_timer", None)
        if timer is not None:
            timer.cancel()

    def _renew(self) -> None:
        """Take or renew the lease (on the timer thread; the answer is not waited for)."""
        body: dict[str, Wire] = {"address": self.address, "lease_s": self.lease_s}
        try:
            future = self.node.ask(self.coordinator, TASKS_SUBSCRIBE, body,
                                   timeout_s=self.lease_s, src=self.address)  # fmt: skip
        except MacpError as e:
            self.log.info("task_events.unsubscribed", error=str(e))
            return
        future.add_done_callback(self._renewed)

    def _renewed(self, future: AskFuture) -> None:
        error = future.exception()
        if error is None:
            self.subscribed.set()
        else:  # the head is down or restarting: the next renewal tries again
            self.log.info("task_events.unsubscribed", error=str(error))

    @handler(TASK_EVENT)
    def _event(self, body: dict[str, Any]) -> None:
        self.on_task_event(body)

    def on_task_event(self, event: dict[str, Any]) -> None:
        """One task's change of state (on the agent's thread); calls ``on_event``."""
        if self._on_event is not None:
            self._on_event(event)
