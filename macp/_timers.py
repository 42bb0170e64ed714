"""A node's timer thread: callbacks after a delay or every interval.

Callbacks run on the timer thread and must be quick (typically a ``tell`` to an actor); one that
raises is logged and the timer thread carries on.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import TYPE_CHECKING, Any

from macp.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Scheduler", "Timer"]

_log = get_logger("macp.timers")


class Timer:
    """A scheduled callback; :meth:`cancel` stops it (and, for a repeating one, its repeats)."""

    __slots__ = ("args", "cancelled", "fn", "interval_s")

    def __init__(
        self, fn: Callable[..., object], args: tuple[Any, ...], interval_s: float | None
    ) -> None:
        self.fn = fn
        self.args = args
        self.interval_s = interval_s
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """One thread running timed callbacks in deadline order.

    Build, then :meth:`start`; :meth:`stop` ends the thread and drops pending timers.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"macp-timers-{self._name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._heap.clear()
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def call_later(self, delay_s: float, fn: Callable[..., object], *args: Any) -> Timer:
        """Run ``fn(*args)`` on the timer thread after ``delay_s`` seconds."""
        timer = Timer(fn, args, None)
        self._push(time.monotonic() + delay_s, timer)
        return timer

    def call_every(self, interval_s: float, fn: Callable[..., object], *args: Any) -> Timer:
        """Run ``fn(*args)`` every ``interval_s`` seconds, first after one interval."""
        timer = Timer(fn, args, interval_s)
        self._push(time.monotonic() + interval_s, timer)
        return timer

    def _push(self, at: float, timer: Timer) -> None:
        with self._cond:
            if self._stopping:
                return
            heapq.heappush(self._heap, (at, next(self._seq), timer))
            if self._heap[0][2] is timer:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        at, _, timer = heapq.heappop(self._heap)
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                else:
                    return
            if timer.cancelled:
                continue
            try:
                timer.fn(*timer.args)
            except Exception:  # noqa: BLE001 - one bad callback must not stop every timer
                _log.exception("timer.failed", node=self._name, callback=repr(timer.fn))
            if timer.interval_s is not None and not timer.cancelled:
                self._push(max(at + timer.interval_s, time.monotonic()), timer)
