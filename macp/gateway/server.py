"""The gateway as one object: its member node, its event loop and the listeners it serves.

:class:`Gateway` owns the :class:`~macp.gateway.member.Member` it is given (it leaves the
cluster on close) and runs its listeners on one asyncio loop: the caller's
(``await gateway.serve(stop)``, as ``macp gateway`` does under ``asyncio.run``) or a thread of
its own (:meth:`Gateway.start` / :meth:`Gateway.stop`, for a program or a test that has no
loop to give). Listeners are the JSON-RPC server (:mod:`macp.gateway.jsonrpc`), the HTTP app
(:mod:`macp.gateway.http`: REST, health, MCP at /mcp) and MCP alone over streamable HTTP
(:func:`macp.gateway.mcp.serve_http`), each a :class:`Listener`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from typing import TYPE_CHECKING, Any, Final, Protocol, Self

from macp.errors import ConfigError
from macp.gateway.guard import Guard, Principal
from macp.gateway.jsonrpc import JsonRpcLimits, JsonRpcServer
from macp.gateway.ops import OPERATIONS
from macp.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from macp.gateway.auth import Tls
    from macp.gateway.bridge import Runtime
    from macp.gateway.member import Member
    from macp.gateway.quotas import Quotas
    from macp.gateway.table import Table

__all__ = ["DEFAULT_JSONRPC", "Gateway", "Listener", "check_reach", "host_port", "is_loopback"]

DEFAULT_JSONRPC: Final = "127.0.0.1:9500"
"""Where the JSON-RPC listener listens unless told otherwise."""

_log = get_logger("macp.gateway")


class Listener(Protocol):
    """A server the gateway runs on its loop: started, then closed, once each."""

    @property
    def address(self) -> str:
        """``HOST:PORT`` it listens on (the real port once started)."""
        ...

    async def start(self) -> None:
        """Listen. Raises ConfigError naming the address when it cannot."""
        ...

    async def close(self) -> None:
        """Stop accepting, answer or fail what is in flight, close the connections."""
        ...


def host_port(text: str, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) split.

    Raises:
        ConfigError: not of that form; the message names ``flag``.
    """
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:  # noqa: PLR2004
        raise ConfigError(f"{flag} {text!r} must be HOST:PORT, e.g. {flag} {DEFAULT_JSONRPC}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_reach(host: str, flag: str, value: str, *, guard: Guard, insecure: bool) -> None:
    """Refuse a listener other hosts can reach when nothing authenticates its callers.

    Raises:
        ConfigError: ``host`` is off loopback, ``guard`` has no authentication configured, and
            not ``insecure``; the message names the flag and both fixes.
    """
    if is_loopback(host) or guard.configured or insecure:
        return
    raise ConfigError(
        f"{flag} {value} can be reached from other hosts, and no authentication is configured "
        "(--jwt-key-file, $MACP_GATEWAY_JWT_SECRET or --keys-db); configure it, serve on "
        "127.0.0.1, or add --insecure"
    )


class _HttpListener:
    """An HTTP server as a listener: MCP alone (:func:`macp.gateway.mcp.serve_http`), or the
    gateway's HTTP app (:func:`macp.gateway.http.app.serve`: REST, health, MCP, /ws)."""

    def __init__(
        self,
        serve: Callable[..., Coroutine[Any, Any, None]],
        host: str,
        port: int,
        path: str = "",
        tls: Tls | None = None,
    ) -> None:
        self._serve = serve
        self._host, self._port, self._path, self._tls = host, port, path, tls
        self._url: str | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        """Its URL (``http://HOST:PORT``, and the MCP endpoint's path for MCP alone)."""
        scheme = "https" if self._tls else "http"
        return self._url or f"{scheme}://{self._host}:{self._port}{self._path}"

    async def start(self) -> None:
        listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._serve(
            self._host, self._port, ready=listening.set_result, stop=self._stop, tls=self._tls
        ))  # fmt: skip
        either: set[asyncio.Future[Any]] = {self._task, listening}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not listening.done():
            listening.cancel()
            await self._task  # raises why it could not listen
            raise ConfigError(f"HTTP on {self._host}:{self._port} ended at once")
        self._url = listening.result()

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


def _mcp_alone(
    table: Table, runtime: Runtime, guard: Guard
) -> Callable[..., Coroutine[Any, Any, None]]:
    async def serve(host: str, port: int, **kwargs: Any) -> None:
        from macp.gateway.mcp import serve_http  # noqa: PLC0415 - the SDK only when served

        await serve_http(runtime, host, port, table=table, guard=guard, **kwargs)

    return serve


def _http_app(
    table: Table, member: Member, guard: Guard
) -> Callable[..., Coroutine[Any, Any, None]]:
    async def serve(host: str, port: int, **kwargs: Any) -> None:
        # the SDK, Starlette and uvicorn load only when served
        from macp.gateway.external import run_agent_session  # noqa: PLC0415
        from macp.gateway.http.app import http_app  # noqa: PLC0415
        from macp.gateway.http.app import serve as serve_app  # noqa: PLC0415
        from macp.gateway.http.events import EventHub  # noqa: PLC0415
        from macp.gateway.http.ws import ws_route  # noqa: PLC0415

        async def register(websocket: Any, hello: dict[str, Any], _principal: Principal) -> None:
            await run_agent_session(websocket, hello, member=member, guard=guard)

        hub = EventHub(member.runtime)
        await hub.start(member)
        try:
            events = ws_route(hub, guard, register=register)
            app = http_app(member.runtime, guard, host=host, table=table, routes=[events])
            await serve_app(app, host, port, **kwargs)
        finally:
            await hub.close()

    return serve


class Gateway:
    """The gateway: a member node of the cluster, serving ``table`` on its listeners.

    Args:
        member: the gateway's node (:meth:`Member.join`); the gateway closes it.
        jsonrpc: ``HOST:PORT`` of the JSON-RPC listener (port 0: any free one), or ``None``.
        http: ``HOST:PORT`` of the HTTP listener (REST under /api/v1, /health, /ready, MCP at
            /mcp: :func:`macp.gateway.http.http_app`), or ``None``.
        mcp_http: ``HOST:PORT`` of a listener serving MCP alone (at /mcp), or ``None``.
        limits: the JSON-RPC listener's per-connection limits.
        guard: who may call what (:class:`~macp.gateway.guard.Guard`); by default one with no
            authentication, which serves every caller as the local user: then a listener off
            loopback is refused unless ``insecure``.
        insecure: serve off loopback without authentication.
        tls: the certificate and key the HTTP listener serves HTTPS with.
        quotas: the gateway's limiter (:class:`~macp.gateway.quotas.Quotas`), which the
            JSON-RPC listener admits each connection's requests with.

    Raises:
        ConfigError: a listener address is not ``HOST:PORT``, or it is off loopback with no
            authentication configured and not ``insecure``.
    """

    def __init__(
        self,
        member: Member,
        *,
        jsonrpc: str | None = DEFAULT_JSONRPC,
        mcp_http: str | None = None,
        limits: JsonRpcLimits | None = None,
        table: Table = OPERATIONS,
        guard: Guard | None = None,
        insecure: bool = False,
        tls: Tls | None = None,
        quotas: Quotas | None = None,
        http: str | None = None,
    ) -> None:
        self.member = member
        self.guard = guard = guard or Guard()
        self.insecure, self.tls = insecure, tls
        self.listeners: dict[str, Listener] = {}
        if jsonrpc is not None:
            host, port = host_port(jsonrpc, "--jsonrpc")
            check_reach(host, "--jsonrpc", jsonrpc, guard=guard, insecure=insecure)
            self.listeners["jsonrpc"] = JsonRpcServer(
                table,
                member.runtime,
                host,
                port,
                limits,
                guard=guard,
                quotas=quotas or guard.quotas,
            )
        if mcp_http is not None:
            host, port = host_port(mcp_http, "--mcp-http")
            check_reach(host, "--mcp-http", mcp_http, guard=guard, insecure=insecure)
            alone = _mcp_alone(table, member.runtime, guard)
            self.listeners["mcp_http"] = _HttpListener(alone, host, port, "/mcp", tls)
        if http is not None:
            host, port = host_port(http, "--http")
            check_reach(host, "--http", http, guard=guard, insecure=insecure)
            app = _http_app(table, member, guard)
            self.listeners["http"] = _HttpListener(app, host, port, "", tls)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._opened: list[Listener] = []

    @property
    def addresses(self) -> dict[str, str]:
        """Where each listener is reached, by kind: ``jsonrpc`` (``HOST:PORT``), ``http``
        (``http://HOST:PORT``), ``mcp_http`` (the endpoint's URL, ``http://HOST:PORT/mcp``)."""
        return {kind: listener.address for kind, listener in self.listeners.items()}

    async def open(self) -> dict[str, str]:
        """Start every listener on the running loop; their addresses.

        Raises:
            ConfigError: an address is in use or not of this host (those opened are closed).
        """
        try:
            for listener in self.listeners.values():
                await listener.start()
                self._opened.append(listener)
        except BaseException:
            await self._close_listeners()
            raise
        _log.info("gateway.ready", node=self.member.node.name, **self.addresses)
        return self.addresses

    async def close(self) -> None:
        """Stop every listener (calls in flight are answered, or failed after a grace), then
        leave the cluster."""
        await self._close_listeners()
        await asyncio.to_thread(self.member.close)

    async def _close_listeners(self) -> None:
        while self._opened:
            await self._opened.pop().close()

    async def serve(
        self, stop: asyncio.Event, ready: Callable[[dict[str, str]], Any] | None = None
    ) -> None:
        """Open, call ``ready(addresses)``, serve until ``stop`` is set, then close. The member
        is closed however it ends."""
        try:
            addresses = await self.open()
            if ready is not None:
                ready(addresses)
            await stop.wait()
        finally:
            await self.close()

    def start(self, timeout_s: float = 10.0) -> Self:
        """Serve on a thread of its own; return once every listener listens.

        Raises:
            ConfigError: a listener could not listen (the member is closed).
        """
        opened = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self.open())
            except BaseException as e:  # noqa: BLE001 - handed to the starting thread
                failure.append(e)
                opened.set()
                loop.close()
                return
            opened.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

        self._thread = threading.Thread(target=run, name="macp-gateway", daemon=True)
        self._thread.start()
        if not opened.wait(timeout_s):
            raise ConfigError(f"the gateway's listeners did not open within {timeout_s:g} s")
        if failure:
            self._thread.join()
            self.member.close()
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop what :meth:`start` started: listeners, loop thread, then the member."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            self.member.close()
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close_listeners(), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            self.member.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
