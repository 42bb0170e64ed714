"""The cluster as async code sees it: the runtime's futures settle asyncio futures.

The runtime is threads and :class:`~macp.futures.AskFuture`; the gateway's servers are one
asyncio loop. A waiting call costs no thread: the ask's future, when it settles (on the
runtime's thread that got the reply, or on the node's sweep when its time is up), hands its
outcome to the loop with ``loop.call_soon_threadsafe``. Only connecting and closing, which
block by nature, run off the loop (:meth:`Runtime.blocking`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, TypeVar

from macp.cluster import RETRY_FIRST_S, RETRY_MAX_S
from macp.errors import ActorNotFound, NodeDown

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.cluster import Cluster
    from macp.envelope import Wire
    from macp.futures import AskFuture

__all__ = ["Runtime", "settled"]

T = TypeVar("T")


async def settled(future: AskFuture) -> Any:
    """The reply ``future`` settles with (or its error, raised), awaited without a thread."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[Any] = loop.create_future()

    def hand_over(done: AskFuture) -> None:  # on the settling thread
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, waiter, done)

    future.add_done_callback(hand_over)
    return await waiter


def _settle(waiter: asyncio.Future[Any], done: AskFuture) -> None:
    if waiter.done():  # the caller went away (cancelled)
        return
    exc = done.exception()
    if exc is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(done.result())


class Runtime:
    """What an operation's handler reaches the cluster through.

    Args:
        cluster: the gateway's cluster handle (its node is a member of the cluster).
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    @property
    def timeout_s(self) -> float:
        return self.cluster.timeout_s

    async def ask(
        self, address: str, type: str, body: Wire = None, *, timeout_s: float | None = None
    ) -> Any:
        """Ask any actor (``name@node``, or a bare name the registry knows); its reply."""
        return await settled(self.cluster.ask(address, type, body, timeout_s=timeout_s))

    async def request(
        self, actor: str, type: str, body: Wire = None, *, timeout_s: float | None = None
    ) -> Any:
        """Ask a control-plane actor (``coordinator``, ``registry``, ...) on the head, once."""
        return await settled(self.cluster.request(actor, type, body, timeout_s=timeout_s))

    async def read(
        self, actor: str, type: str, body: Wire = None, *, timeout_s: float | None = None
    ) -> Any:
        """:meth:`request` for an ask safe to send again (a read, or an idempotent write):
        while the head is down or its actor is restarting, it is sent again with a backoff
        until ``timeout_s`` is spent, so a restart of the head is a pause, not an error."""
        wait_s = timeout_s or self.timeout_s
        deadline = time.monotonic() + wait_s
        pause_s = RETRY_FIRST_S
        while True:
            try:
                return await self.request(actor, type, body, timeout_s=wait_s)
            except (NodeDown, ActorNotFound):
                if deadline - time.monotonic() <= pause_s:
                    raise
            await asyncio.sleep(pause_s)
            pause_s = min(pause_s * 2, RETRY_MAX_S)
            wait_s = max(deadline - time.monotonic(), 0.001)

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread: for what blocks by nature (connect, close)."""
        return await asyncio.to_thread(fn, *args)
