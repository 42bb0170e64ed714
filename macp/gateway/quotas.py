"""Rate limits and quotas: one limiter per gateway (the ``limits`` library's moving window over
its memory storage), shared by every transport.

What is limited (:class:`QuotaLimits`, each 0 for no limit):

- requests per second per principal: every operation a principal calls, on any transport
  (checked by :meth:`macp.gateway.guard.Guard.call`, before the scope check, so refused calls
  count too);
- requests per second per connection: each transport admits each request of a connection it
  serves (:meth:`Quotas.admit_connection`; JSON-RPC does it for every line's requests);
- task submissions per minute per principal: ``task_orchestrate`` and ``workflow_execute``;
- WebSockets open at once per principal (:meth:`Quotas.websocket`, which the ``/ws`` endpoint
  holds while its socket is open).

Over a limit is :class:`~macp.errors.RateLimited` (code -32000, ``data["retry_after_s"]``: when
the same call is admitted again; HTTP answers it 429 with ``Retry-After``). The windows move:
once the oldest request of a window is older than it, calls pass again.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from macp.errors import ConfigError, RateLimited

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, MutableMapping

    _Message = MutableMapping[str, Any]
    _App = Callable[
        [_Message, Callable[[], Awaitable[_Message]], Callable[[_Message], Awaitable[None]]],
        Awaitable[None],
    ]

__all__ = ["SUBMISSIONS", "ConnectionLimit", "QuotaLimits", "Quotas"]

SUBMISSIONS: Final = frozenset({"task_orchestrate", "workflow_execute"})
"""The operations that count as task submissions."""

_WEBSOCKET_RETRY_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """A gateway's limits (``macp gateway --rate-per-principal ...``, or the topology file's
    ``gateway:`` section); 0 turns one off."""

    requests_per_s: int = 200
    """Operations one principal may call in any second, all its connections together."""
    connection_requests_per_s: int = 100
    """Requests one connection may send in any second."""
    submissions_per_min: int = 120
    """Tasks and workflow runs one principal may submit in any minute."""
    websockets: int = 16
    """WebSockets one principal may hold open at once."""

    def __post_init__(self) -> None:
        for name in ("requests_per_s", "connection_requests_per_s", "submissions_per_min",
                     "websockets"):  # fmt: skip
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ConfigError(
                    f"gateway limit {name!r} must be a whole number, 0 or more (0: no limit), "
                    f"not {value!r}"
                )


class Quotas:
    """The limiter of one gateway. Thread-safe: the memory storage locks each key."""

    def __init__(self, limits: QuotaLimits | None = None) -> None:
        self.limits = limits or QuotaLimits()
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_principal = _item(RateLimitItemPerSecond, self.limits.requests_per_s)
        self._per_connection = _item(RateLimitItemPerSecond, self.limits.connection_requests_per_s)
        self._submissions = _item(RateLimitItemPerMinute, self.limits.submissions_per_min)
        self._sockets: Counter[str] = Counter()
        self._lock = threading.Lock()

    def admit(self, principal: str, operation: str) -> None:
        """Count one call of ``operation`` by ``principal``, or refuse it (nothing is counted).

        Raises:
            RateLimited: over the principal's requests per second, or (a submission) over its
                submissions per minute.
        """
        checks: list[tuple[RateLimitItem, str, str]] = []
        if self._per_principal is not None:
            why = f"{principal} calls more than {self._per_principal.amount} operations a second"
            checks.append((self._per_principal, "principal", why))
        if operation in SUBMISSIONS and self._submissions is not None:
            why = f"{principal} submits more than {self._submissions.amount} tasks a minute"
            checks.append((self._submissions, "submissions", why))
        for item, kind, why in checks:
            if not self._limiter.test(item, kind, principal):
                retry_after_s = self._retry_after(item, kind, principal)
                raise RateLimited(
                    f"{why}; retry {operation} after {retry_after_s:g} s",
                    retry_after_s=retry_after_s,
                )
        for item, kind, _ in checks:
            self._limiter.hit(item, kind, principal)

    def admit_connection(self, connection: str) -> float | None:
        """Count one request of ``connection``: ``None`` if admitted, else the seconds until
        one more would be (nothing is counted)."""
        item = self._per_connection
        if item is None or self._limiter.hit(item, "connection", connection):
            return None
        return self._retry_after(item, "connection", connection)

    def forget_connection(self, connection: str) -> None:
        """Drop what is counted for ``connection`` (it closed)."""
        if self._per_connection is not None:
            self._limiter.clear(self._per_connection, "connection", connection)

    @contextlib.contextmanager
    def websocket(self, principal: str) -> Iterator[None]:
        """Hold one of ``principal``'s WebSocket slots while the block runs.

        Raises:
            RateLimited: ``principal`` holds all of its slots already.
        """
        cap = self.limits.websockets
        with self._lock:
            if cap and self._sockets[principal] >= cap:
                raise RateLimited(
                    f"{principal} has {cap} WebSockets open, the most it may; close one, then "
                    f"retry after {_WEBSOCKET_RETRY_S:g} s",
                    retry_after_s=_WEBSOCKET_RETRY_S,
                )
            self._sockets[principal] += 1
        try:
            yield
        finally:
            with self._lock:
                self._sockets[principal] -= 1
                if not self._sockets[principal]:
                    del self._sockets[principal]

    def _retry_after(self, item: RateLimitItem, *keys: str) -> float:
        stats = self._limiter.get_window_stats(item, *keys)
        return max(round(stats.reset_time - time.time(), 3), 0.001)


def _item(kind: type[RateLimitItem], amount: int) -> RateLimitItem | None:
    return kind(amount) if amount else None


class ConnectionLimit:
    """ASGI middleware: each HTTP request admitted against its connection's requests per second
    (:meth:`Quotas.admit_connection`), else answered 429 with ``Retry-After`` and the
    :class:`~macp.errors.RateLimited` error as JSON.

    A connection is the client's ``IP:port``: the requests of one keep-alive connection share a
    budget, and a new TCP connection (a new port) has its own; the per-principal limit bounds a
    client that opens many. Nothing is forgotten on close (ASGI does not say when a connection
    closes): a connection's count ages out of the one-second window by itself.
    """

    def __init__(self, app: _App, quotas: Quotas) -> None:
        self.app, self.quotas = app, quotas

    async def __call__(
        self,
        scope: _Message,
        receive: Callable[[], Awaitable[_Message]],
        send: Callable[[_Message], Awaitable[None]],
    ) -> None:
        client = scope.get("client") if scope["type"] == "http" else None
        if client is not None:
            connection = f"{client[0]}:{client[1]}"
            retry_after_s = self.quotas.admit_connection(connection)
            if retry_after_s is not None:
                await _too_many(send, connection, retry_after_s)
                return
        await self.app(scope, receive, send)


async def _too_many(
    send: Callable[[_Message], Awaitable[None]], connection: str, retry_after_s: float
) -> None:
    from macp.gateway.table import error_of  # noqa: PLC0415 - the table only when answering

    error = RateLimited(
        f"too many requests on this connection ({connection}); retry after {retry_after_s:g} s",
        retry_after_s=retry_after_s,
    )
    body = json.dumps({"error": error_of(error)}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()),
               (b"retry-after", str(max(1, math.ceil(retry_after_s))).encode())]  # fmt: skip
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
