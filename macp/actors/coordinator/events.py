"""Task events: who follows the tasks' changes of state, and what they are told.

A subscriber holds a lease (``tasks.subscribe`` ``{address, lease_s}``), renewed by asking
again before it ends; one that stops renewing (it died, or its node did) is dropped when the
lease ends, and a coordinator that restarts has none until they renew, so renewing is also how
a subscriber survives a restart of the head (Erlang's monitors, Akka's watch, by lease).

At each change of a task's state (:class:`~.table.TaskTable` calls :meth:`Subscribers.moved`,
only while someone subscribes) an event is queued; the queue is told to every subscriber once
the change is journaled (persist, then act), in transition order: ``task.event`` ``{task_id,
state, previous, time_ms, type, attempt?, agent?, error?, run?, step?}`` (``previous`` is
null for a new task; ``attempt`` once it has one; ``agent`` while one has it; ``error`` when it
failed, retries or was cancelled; ``run`` and ``step`` when it is a workflow run's step, so a
follower sees the run's progress in its steps' events: runs have no events of their own).
Events are tells: at most once, so a subscriber that must be sure of a task's state reads
``coordinator.status``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from macp._storable import is_number
from macp.actors.coordinator.messages import TASK_EVENT
from macp.address import check_address
from macp.errors import ConfigError, InvalidParams, MacpError

if TYPE_CHECKING:
    from collections.abc import Callable

    import structlog

    from macp.actors.coordinator.table import TaskTable
    from macp.actors.coordinator.task import Task, TaskState
    from macp.envelope import Wire

__all__ = ["MAX_LEASE_S", "Subscribers"]

MAX_LEASE_S: Final = 3600.0
"""The longest lease a subscriber may hold."""


def _address(body: Wire, message: str) -> str:
    address = body.get("address") if isinstance(body, dict) else None
    if not isinstance(address, str) or "@" not in address:
        raise InvalidParams(f"{message} needs the subscriber's 'address' as name@node")
    try:
        return check_address(address)
    except ConfigError as e:
        raise InvalidParams(f"{message}: {e}") from None


class Subscribers:
    """The subscribers to task events, by lease, and the events not yet told.

    Args:
        table: the task table; its ``watch`` is set while there are subscribers (with none,
            a move costs the table one test of ``None``).
        tell: the coordinator's ``tell`` (``address, type, body``).
        log: the coordinator's logger.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        table: TaskTable,
        tell: Callable[[str, str, Wire], None],
        log: structlog.stdlib.BoundLogger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = table
        self._tell = tell
        self._log = log
        self._clock = clock
        self._leases: dict[str, float] = {}  # address -> when its lease ends
        self._queued: list[dict[str, Wire]] = []

    def __bool__(self) -> bool:
        return bool(self._leases)

    def subscribe(self, body: Wire) -> Wire:
        """Take (or renew) a lease: ``{address, lease_s}``.

        Raises:
            InvalidParams: no ``address`` as ``name@node``, or ``lease_s`` is not a number of
                seconds above 0 and at most :data:`MAX_LEASE_S`.
        """
        address = _address(body, "tasks.subscribe")
        assert isinstance(body, dict)
        lease_s = body.get("lease_s")
        if not is_number(lease_s) or not 0 < lease_s <= MAX_LEASE_S:
            raise InvalidParams(
                f"tasks.subscribe needs 'lease_s', seconds above 0 and at most {MAX_LEASE_S:g} "
                f"(renew before it ends), not {lease_s!r}"
            )
        self._leases[address] = self._clock() + lease_s
        self._table.watch = self.moved
        return {"address": address, "lease_s": lease_s}

    def unsubscribe(self, body: Wire) -> Wire:
        """End a lease: ``{address}`` -> ``{unsubscribed}`` (false if it held none)."""
        address = _address(body, "tasks.unsubscribe")
        held = self._leases.pop(address, None) is not None
        if not self._leases:
            self._table.watch = None
        return {"unsubscribed": held}

    def listing(self) -> Wire:
        """The subscribers, and the seconds left on each one's lease."""
        now = self._clock()
        return [{"address": a, "lease_left_s": round(max(end - now, 0.0), 3)}
                for a, end in sorted(self._leases.items())]  # fmt: skip

    def expire(self) -> list[str]:
        """Drop the subscribers whose lease has ended; their addresses."""
        if not self._leases:
            return []
        now = self._clock()
        gone = [address for address, end in self._leases.items() if end <= now]
        for address in gone:
            del self._leases[address]
            self._log.info("coordinator.subscriber_dropped", subscriber=address)
        if not self._leases:
            self._table.watch = None
        return gone

    def moved(self, task: Task, previous: TaskState | None, time_ms: int) -> None:
        """Queue the event of ``task``'s move from ``previous`` to its state now."""
        state = task.state._value_
        event: dict[str, Any] = {
            "task_id": task.id, "state": state,
            "previous": None if previous is None else previous._value_,
            "time_ms": time_ms, "type": task.type,
        }  # fmt: skip
        if task.attempts:
            event["attempt"] = task.attempts
        if task.agent is not None:
            event["agent"] = task.agent
        if task.error is not None and state in _WITH_ERROR:
            event["error"] = task.error
        if task.workflow is not None:
            event["run"], event["step"] = task.workflow, task.step
        self._queued.append(event)

    def send(self) -> None:
        """Tell every subscriber the queued events, in order (once they are journaled)."""
        if not self._queued:
            return
        queued, self._queued = self._queued, []
        for address in list(self._leases):
            try:
                for event in queued:
                    self._tell(address, TASK_EVENT, event)
            except MacpError as e:  # at most once: this one misses them
                self._log.info("coordinator.event_undelivered", subscriber=address, error=str(e))


_WITH_ERROR: Final = frozenset({"failed", "retrying", "cancelled"})
