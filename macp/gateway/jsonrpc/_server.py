"""The JSON-RPC listener: newline-delimited JSON-RPC 2.0 on a TCP port, one asyncio task per
connection and no thread per connection.

Each connection reads a line at a time (at most ``max_message_bytes``; a longer one is answered
-32600 and the connection closed: after a line without its end nothing that follows can be
trusted to start a message), and runs each line in a task of its own, so that a slow call does
not hold up the next line; answers carry their ids. What one connection may hold is bounded:
``max_lines`` lines read and not answered (then it is not read until one is), ``max_calls``
operations running, ``requests_per_s`` requests in any second (counted by the gateway's
limiter, :class:`~macp.gateway.quotas.Quotas`: then -32000 with ``retry_after_s``), a write
buffer of ``write_buffer_bytes`` that must drain within ``write_timeout_s`` (a client that does
not read is dropped), and ``idle_timeout_s`` with nothing received and nothing running. A
connection that misbehaves costs only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from macp.errors import ConfigError, InternalError, ProtocolError
from macp.gateway.jsonrpc._dispatch import Dispatcher, Session, encode, error_response
from macp.gateway.quotas import QuotaLimits, Quotas
from macp.gateway.table import error_of
from macp.log import get_logger

if TYPE_CHECKING:
    from macp.gateway.bridge import Runtime
    from macp.gateway.guard import Guard
    from macp.gateway.table import Table

__all__ = ["JsonRpcLimits", "JsonRpcServer"]

_log = get_logger("macp.gateway")
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class JsonRpcLimits:
    """What one connection may use of the server."""

    max_message_bytes: int = 10 * MIB
    """The longest line (one request or one batch), without its newline."""
    requests_per_s: int = 100
    """Requests admitted per second (each request of a batch counts); a server given the
    gateway's :class:`~macp.gateway.quotas.Quotas` admits its ``connection_requests_per_s``."""
    idle_timeout_s: float = 300.0
    """A connection that sends nothing this long, with no call running, is closed."""
    max_calls: int = 16
    """Operations of one connection running at once."""
    max_lines: int = 64
    """Lines read and not yet answered; then the connection is not read until one is."""
    write_buffer_bytes: int = 1 * MIB
    """Answers buffered for a client that does not read before writing waits."""
    write_timeout_s: float = 30.0
    """How long an answer may wait for the client to read before the connection is dropped."""
    stop_grace_s: float = 5.0
    """On close, how long calls in flight may take to be answered before they are failed."""


class JsonRpcServer:
    """JSON-RPC 2.0 over TCP, serving ``table`` against ``runtime``.

    Build, then ``await start()`` on the loop that serves it; ``await close()`` stops it.
    """

    def __init__(
        self,
        table: Table,
        runtime: Runtime,
        host: str = "127.0.0.1",
        port: int = 9500,
        limits: JsonRpcLimits | None = None,
        *,
        guard: Guard | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self.limits = limits or JsonRpcLimits()
        self._quotas = quotas or Quotas(
            QuotaLimits(connection_requests_per_s=self.limits.requests_per_s)
        )
        self._dispatcher = Dispatcher(table, runtime, guard)
        self._host, self._port = host, port
        self._server: asyncio.Server | None = None
        self._ids = itertools.count(1)
        self._connections: set[_Connection] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Listen (port 0: any free one).

        Raises:
            ConfigError: the address is in use, or not one of this host.
        """
        where = f"{self._host}:{self._port}"
        try:
            self._server = await asyncio.start_server(
                self._connected, self._host, self._port,
                limit=self.limits.max_message_bytes,
            )  # fmt: skip
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"JSON-RPC address already in use: {where}; choose another port or stop "
                    "what listens there"
                ) from e
            raise ConfigError(
                f"cannot listen for JSON-RPC on {where}: {e.strerror or e}; use an address of "
                "this host"
            ) from e
        _log.info("gateway.listening", transport="jsonrpc", address=self.address)

    @property
    def address(self) -> str:
        """``HOST:PORT`` it listens on (the real port when asked for port 0)."""
        if self._server is None or not self._server.sockets:
            return f"{self._host}:{self._port}"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def close(self) -> None:
        """Stop accepting, answer (or, after ``stop_grace_s``, fail) the calls in flight, and
        close every connection."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._connections):
            connection.stop()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        key = str(next(self._ids))
        session = Session(
            lambda: self._admit(key), asyncio.Semaphore(self.limits.max_calls), connection=key
        )
        connection = _Connection(
            key, reader, writer, dispatcher=self._dispatcher, session=session, limits=self.limits
        )
        self._connections.add(connection)
        try:
            await connection.serve()
        except Exception as e:  # noqa: BLE001 - a boundary: no connection takes the server down
            _log.error("gateway.connection_failed", connection=key, exc_info=e)
        finally:
            self._connections.discard(connection)
            self._handlers.discard(task)
            self._quotas.forget_connection(f"jsonrpc:{key}")

    async def _admit(self, key: str) -> float | None:
        return self._quotas.admit_connection(f"jsonrpc:{key}")


class _Connection:
    """One client: its reading loop and the tasks of the lines it sent."""

    def __init__(
        self,
        key: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        dispatcher: Dispatcher,
        session: Session,
        limits: JsonRpcLimits,
    ) -> None:
        self._limits = limits
        self._dispatcher = dispatcher
        self._session = session
        self._reader, self._writer = reader, writer
        writer.transport.set_write_buffer_limits(high=limits.write_buffer_bytes)
        self._lines = asyncio.Semaphore(limits.max_lines)
        self._write_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reading: asyncio.Task[str] | None = None
        self._stopping = False
        peer = writer.get_extra_info("peername")
        self._log = _log.bind(connection=key, peer=f"{peer[0]}:{peer[1]}" if peer else "?")

    def stop(self) -> None:
        """Read no more (the server closes); what was read is still answered."""
        self._stopping = True
        if self._reading is not None:
            self._reading.cancel()

    async def serve(self) -> None:
        self._log.debug("gateway.connection_opened")
        self._reading = asyncio.create_task(self._read_all())
        reason = "stopped"
        try:
            reason = await self._reading
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        try:
            await self._finish()
        finally:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
            self._log.debug("gateway.connection_closed", reason=reason)

    async def _read_all(self) -> str:
        """Read lines, each answered by a task of its own, until the end; why it ended."""
        while True:
            await self._lines.acquire()
            try:
                line = await self._read_line()
            except BaseException:
                self._lines.release()
                raise
            if isinstance(line, str):
                self._lines.release()
                return line
            if not line.strip():  # blank lines (keep-alives) are no requests
                self._lines.release()
                continue
            task = asyncio.create_task(self._answer(line))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _read_line(self) -> bytes | str:
        """The next line, or (a string) why there is none."""
        while True:
            try:
                return await asyncio.wait_for(
                    self._reader.readuntil(b"\n"), self._limits.idle_timeout_s
                )
            except TimeoutError:
                if self._tasks:  # waiting for its answers is not idle
                    continue
                return "idle"
            except asyncio.LimitOverrunError:
                await self._refuse(
                    f"invalid request: a message is at most {self._limits.max_message_bytes} "
                    "bytes (its newline excluded); the connection is closed"
                )
                return "too_long"
            except asyncio.IncompleteReadError as e:
                if e.partial.strip():
                    await self._refuse(
                        "invalid request: the connection ended inside a message (each ends "
                        "with a newline)"
                    )
                    return "unterminated"
                return "eof"
            except (ConnectionError, OSError):
                return "reset"

    async def _refuse(self, message: str) -> None:
        await self._write(error_response(None, error_of(ProtocolError(message))))

    async def _answer(self, line: bytes) -> None:
        try:
            response = await self._dispatcher.answer_line(line, self._session)
            if response is not None:
                await self._write(response)
        except asyncio.CancelledError:  # the server stops and the grace is spent: fail it
            stopped = InternalError("the gateway stopped before the call finished; call again")
            for request_id in _ids_of(line):
                await self._write(error_response(request_id, error_of(stopped)))
        finally:
            self._lines.release()

    async def _write(self, response: Any) -> None:
        data = _encoded(response)
        async with self._write_lock:
            if self._writer.is_closing():
                return
            self._writer.write(data)
            try:
                await asyncio.wait_for(self._writer.drain(), self._limits.write_timeout_s)
            except TimeoutError:
                self._log.warning("gateway.client_not_reading",
                                  timeout_s=self._limits.write_timeout_s)  # fmt: skip
                self._writer.transport.abort()
            except (ConnectionError, OSError):
                self._writer.transport.abort()

    async def _finish(self) -> None:
        """Answer the lines read; on a stop, fail those still running after the grace."""
        if not self._tasks:
            return
        pending = set(self._tasks)
        if self._stopping:
            _, pending = await asyncio.wait(pending, timeout=self._limits.stop_grace_s)
            for task in pending:
                task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _ids_of(line: bytes) -> list[Any]:
    """The ids of the requests in ``line`` that expect an answer."""
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return []
    requests = message if isinstance(message, list) else [message]
    return [r["id"] for r in requests if isinstance(r, dict) and "id" in r]


def _encoded(response: Any) -> bytes:
    """``response`` as a line; an answer JSON cannot say is replaced by an internal error."""
    try:
        return encode(response)
    except (ValueError, TypeError) as e:
        if isinstance(response, list):
            return b"[" + b",".join(_encoded(r)[:-1] for r in response) + b"]\n"
        request_id = response.get("id") if isinstance(response, dict) else None
        error = error_of(InternalError(f"the answer cannot be sent as JSON: {e}"))
        return encode(error_response(request_id, error))
