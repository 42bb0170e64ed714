"""Futures: the pending reply to an ask, and the asks of one node that wait for theirs.

An ``ask`` returns an :class:`AskFuture`, kept in the node's :class:`PendingAsks` until the
reply, an error, the deadline, or the target node going down settles it. Both know nothing of
nodes or transports: whoever sends the ask adds its future, and whoever receives the answer
settles it.
"""

from __future__ import annotations

import threading
import time
from _thread import allocate_lock as _allocate_lock
from typing import TYPE_CHECKING, Any

from macp.errors import AskTimeout, MacpError, NodeDown
from macp.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["AskFuture", "PendingAsks"]

_log = get_logger("macp.futures")
_callbacks_lock = threading.Lock()  # short: orders a callback's registration and settlement


class AskFuture:
    """The pending reply to an ask.

    ``get()`` waits at most until the ask's own deadline; the future also fails by itself with
    :class:`AskTimeout` shortly after that deadline, so callbacks always run. Settled once:
    by the reply, an error, the deadline or the target node going down, whichever comes first.

    The waiting is a plain lock (released when settled): handing the reply to the waiting
    thread costs a third of what a ``concurrent.futures.Future``'s condition variable does.
    """

    __slots__ = (
        "_callbacks", "_done", "_exc", "_guard", "_value", "deadline", "dst", "node",
        "timeout_s", "type",
    )  # fmt: skip

    def __init__(self, dst: str, type: str, timeout_s: float) -> None:
        self.dst = dst
        self.type = type
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.node = dst.partition("@")[2]
        self._done = _allocate_lock()
        self._done.acquire()  # released once settled
        self._guard = _allocate_lock()  # taken by the one settlement that counts
        self._value: Any = None
        self._exc: BaseException | None = None
        self._callbacks: list[Callable[[AskFuture], object]] | None = None

    def get(self, timeout_s: float | None = None) -> Any:
        """The reply's body.

        Args:
            timeout_s: wait at most this long; by default until the ask's deadline.

        Raises:
            AskTimeout: no reply in time.
            MacpError: the receiver answered with an error (raised as its own class), or the
                receiver's node went down (:class:`NodeDown`).
        """
        wait_s = max(0.0, self.deadline - time.monotonic()) if timeout_s is None else timeout_s
        if not self._done.acquire(timeout=wait_s):
            raise self.timeout_error()
        self._done.release()  # for any other waiter
        if self._exc is not None:
            raise self._exc
        return self._value

    def done(self) -> bool:
        return self._guard.locked() and not self._done.locked()

    def result(self) -> Any:
        """The reply's body, once settled (raises its error); see :meth:`get` to wait."""
        return self.get(0)

    def exception(self) -> BaseException | None:
        """The error it settled with (``None`` for a reply); it must be settled."""
        return self._exc

    def add_done_callback(self, fn: Callable[[AskFuture], object]) -> None:
        """Call ``fn(self)`` once settled (at once if it is already), on the settling thread."""
        with _callbacks_lock:
            if not self.done():
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        fn(self)

    def timeout_error(self) -> AskTimeout:
        return AskTimeout(f"no reply from {self.dst} to {self.type!r} within {self.timeout_s:g} s")

    def settle(self, value: Any = None, exc: BaseException | None = None) -> None:
        """Set the result (or ``exc``); only the first settlement counts."""
        if not self._guard.acquire(blocking=False):
            return
        self._value, self._exc = value, exc
        with _callbacks_lock:
            self._done.release()
            callbacks, self._callbacks = self._callbacks, None
        for fn in callbacks or ():
            try:
                fn(self)
            except Exception:  # noqa: BLE001 - one bad callback must not stop the others
                _log.exception("future.callback_failed", callback=repr(fn))


class PendingAsks:
    """The asks of one node that wait for a reply, by message id (thread-safe)."""

    def __init__(self) -> None:
        self._futures: dict[str, AskFuture] = {}

    def __len__(self) -> int:
        return len(self._futures)

    def add(self, msg_id: str, future: AskFuture) -> None:
        self._futures[msg_id] = future

    def pop(self, msg_id: str | None) -> AskFuture | None:
        return self._futures.pop(msg_id, None) if msg_id is not None else None

    def fail(
        self, match: Callable[[AskFuture], bool], error: Callable[[AskFuture], MacpError]
    ) -> int:
        """Fail every pending ask that ``match`` selects with ``error(future)``; how many."""
        count = 0
        for msg_id, future in list(self._futures.items()):
            if match(future) and self._futures.pop(msg_id, None) is not None:
                future.settle(exc=error(future))
                count += 1
        return count

    def expire(self) -> int:
        """Fail the asks whose deadline has passed with :class:`AskTimeout`."""
        now = time.monotonic()
        return self.fail(lambda f: f.deadline < now, AskFuture.timeout_error)

    def node_down(self, node: str, reason: str) -> int:
        """Fail the asks addressed to ``node`` with :class:`NodeDown`."""
        return self.fail(
            lambda f: f.node == node,
            lambda f: NodeDown(f"node {node!r} went down ({reason}) before {f.dst} answered"),
        )
