"""Waits with deadlines: `wait_until` for a condition, `Recorder` for events from actors."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from macp.errors import AskTimeout

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Recorder", "wait_until"]


def wait_until(
    predicate: Callable[[], object],
    timeout_s: float = 5.0,
    message: str = "",
    poll_s: float = 0.005,
) -> None:
    """Poll ``predicate`` until it is true; raise :class:`AskTimeout` with ``message`` at the
    deadline. For conditions no event or future can signal (a thread ending, a file appearing).
    """
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AskTimeout(message or f"condition not met within {timeout_s:g} s: {predicate!r}")
        time.sleep(poll_s)


class Recorder:
    """A thread-safe log of events that tests wait on and assert against.

    Actors call :meth:`record`; the test calls :meth:`wait_for` to block until enough events
    (or a given one) have arrived, then reads :attr:`events`.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.events: list[Any] = []

    def record(self, event: Any) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[list[Any]], object], timeout_s: float = 5.0
    ) -> list[Any]:
        """Wait until ``predicate(events)`` is true; return a copy of the events."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.events), timeout_s):
                raise AskTimeout(
                    f"events did not satisfy the condition in {timeout_s:g} s: {self.events!r:.500}"
                )
            return list(self.events)

    def wait_count(self, n: int, timeout_s: float = 5.0) -> list[Any]:
        """Wait until at least ``n`` events have been recorded."""
        return self.wait_for(lambda events: len(events) >= n, timeout_s)

    def clear(self) -> None:
        with self._cond:
            self.events.clear()
