"""The operations table served as an MCP server, on the official SDK's low-level server.

Each operation is a tool: its name, its summary as the description, its parameters' JSON schema
as the input schema. A call validates the arguments and runs the operation
(:meth:`~macp.gateway.table.Operation.call`); its result (a JSON object) is the tool's
structured content, and its JSON text the tool's content. A failed call is a tool result with
``isError`` (its text names the macp error code, its structured content is ``{"code",
"message", "data"}``, as :func:`~macp.gateway.table.error_of` answers it), never an error that
ends the session: an unknown tool, bad parameters and an error of the runtime alike.

Three ways to serve it: :func:`serve_stdio` (what an LLM desktop client launches), and
streamable HTTP at ``/mcp``, as an ASGI app (:func:`http_app`, to run next to other servers) or
on its own uvicorn server (:func:`serve_http`).

Every call runs through the :class:`~macp.gateway.guard.Guard`. Over stdio the caller is the
user who started the process (:meth:`~macp.gateway.guard.Principal.local`). Over HTTP, with
authentication configured, each request carries ``Authorization: Bearer <token or API key>``,
checked per request (a request without a valid one is answered 401 with ``WWW-Authenticate``
and never reaches the session); without it, the caller is the local user.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Final

import mcp_types as types
from mcp.server import Server
from mcp.server.stdio import stdio_server

from macp.errors import MacpError, Unauthorized
from macp.gateway.asgi import serve_asgi
from macp.gateway.guard import Guard, Principal, Transport
from macp.gateway.ops import OPERATIONS
from macp.gateway.quotas import ConnectionLimit
from macp.gateway.table import error_of

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from mcp.server import ServerRequestContext
    from starlette.applications import Starlette
    from starlette.types import ASGIApp, Receive, Scope, Send

    from macp.gateway.auth import Tls
    from macp.gateway.bridge import Runtime
    from macp.gateway.table import Table

__all__ = [
    "MCP_PATH",
    "BearerAuth",
    "http_app",
    "mcp_server",
    "serve_http",
    "serve_stdio",
    "tool_result",
]

_PRINCIPAL: Final = "macp.principal"
"""Where the HTTP request's scope holds the principal its bearer credential proved."""

MCP_PATH: Final = "/mcp"
"""Where the streamable HTTP endpoint is served."""

_INSTRUCTIONS: Final = (
    "macp runs supervised agents across nodes. Submit work with task_orchestrate (it answers "
    "a task_id), then follow it with task_status or fetch it with task_result; every tool acts "
    "on the real cluster. A failed call answers isError with the macp error code."
)


def mcp_server(
    runtime: Runtime, table: Table = OPERATIONS, guard: Guard | None = None
) -> Server[Any]:
    """An MCP server whose tools are ``table``'s operations, run against ``runtime`` through
    ``guard`` as the request's principal (the local user when it has none: stdio, or HTTP
    without authentication).

    Handlers run on the server's event loop (an asyncio loop): an operation waits on the
    runtime's futures without a thread (:mod:`macp.gateway.bridge`).
    """
    guard = guard or Guard()
    tools = [
        types.Tool(name=op.name, description=op.summary, input_schema=op.input_schema())
        for op in sorted(table, key=lambda op: op.name)
    ]

    async def list_tools(
        _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        request = ctx.request
        scope = getattr(request, "scope", None)
        if scope is None:
            principal, transport = Principal.local(), Transport.MCP_STDIO
        else:
            principal, transport = scope.get(_PRINCIPAL) or Principal.local(), Transport.MCP_HTTP
        return await _call(guard, runtime, table, params.name, params.arguments,
                           principal=principal, transport=transport)  # fmt: skip

    def input_schema(name: str) -> dict[str, Any] | None:
        return table[name].input_schema() if name in table else None

    return Server(
        "macp",
        version=version("macp"),
        title="macp gateway",
        instructions=_INSTRUCTIONS,
        get_tool_input_schema=input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def _call(
    guard: Guard,
    runtime: Runtime,
    table: Table,
    name: str,
    arguments: dict[str, Any] | None,
    *,
    principal: Principal,
    transport: Transport,
) -> types.CallToolResult:
    """Operation ``name`` run, as a tool result; any failure is an error result (a client's
    mistake or a bug of ours alike must not end its session)."""
    try:
        result = await guard.call(table[name], runtime, arguments, principal=principal,
                                  transport=transport)  # fmt: skip
    except MacpError as e:
        return error_result(e)
    except Exception as e:  # noqa: BLE001  # the session outlives anything a call raises
        return error_result(e)
    return tool_result(result)


def tool_result(result: Any) -> types.CallToolResult:
    """An operation's result as a tool's: structured content (a JSON object; any other value
    is ``{"result": value}``), and the same as JSON text for clients that read text only."""
    structured = result if isinstance(result, dict) else {"result": result}
    return types.CallToolResult(
        content=[types.TextContent(text=json.dumps(structured, default=str))],
        structured_content=structured,
    )


def error_result(exc: BaseException) -> types.CallToolResult:
    """A failed call as a tool result with ``isError``: its text names the code, the error's
    class and message; its structured content is ``{"code", "message", "data"}``."""
    error = error_of(exc)
    text = f"macp error {error['code']} ({error['data']['error']}): {error['message']}"
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=error, is_error=True
    )


async def serve_stdio(
    runtime: Runtime, table: Table = OPERATIONS, *, guard: Guard | None = None
) -> None:
    """Serve MCP on this process's standard input and output until the input ends, every call
    as the local user through ``guard`` (its audit log and limits).

    Nothing else may write to standard output meanwhile (macp logs to standard error).
    """
    server = mcp_server(runtime, table, guard)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def http_app(
    runtime: Runtime,
    *,
    host: str = "127.0.0.1",
    table: Table = OPERATIONS,
    guard: Guard | None = None,
) -> Starlette:
    """An ASGI app serving MCP over streamable HTTP at :data:`MCP_PATH`.

    Run it under an ASGI server that runs its lifespan (uvicorn does): the lifespan runs the
    sessions' manager. ``host`` is where it listens: on a loopback address, requests whose
    ``Host`` or ``Origin`` is not a loopback one are refused (DNS rebinding protection). With
    ``guard`` configured, every HTTP request needs ``Authorization: Bearer`` (a token or an
    API key), else 401.
    """
    app = mcp_server(runtime, table, guard).streamable_http_app(
        streamable_http_path=MCP_PATH, host=host
    )
    if guard is not None and guard.configured:
        app.add_middleware(BearerAuth, guard=guard)
    if guard is not None and guard.quotas is not None:  # outermost: counted before anything
        app.add_middleware(ConnectionLimit, quotas=guard.quotas)
    return app


class BearerAuth:
    """ASGI middleware: each HTTP request's ``Authorization: Bearer`` credential, checked by
    ``guard``, becomes the principal its calls run as; without a valid one, 401 with
    ``WWW-Authenticate`` (the reason in ``error_description`` and in the JSON body)."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, credential = header.partition(" ")
        try:
            scope[_PRINCIPAL] = self._principal(scheme, credential.strip())
        except Unauthorized as e:
            await _unauthorized(send, e)
            return
        await self.app(scope, receive, send)

    def _principal(self, scheme: str, credential: str) -> Principal:
        if scheme.lower() != "bearer" or not credential:
            raise Unauthorized("this endpoint needs Authorization: Bearer <a token or an API key>")
        return self.guard.authenticate(credential)


async def _unauthorized(send: Send, error: Unauthorized) -> None:
    reason = error.message.replace('"', "'")
    body = json.dumps({"error": error_of(error)}).encode()
    challenge = f'Bearer realm="macp", error="invalid_token", error_description="{reason}"'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"www-authenticate", challenge.encode("latin-1", "replace"))]  # fmt: skip
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_http(
    runtime: Runtime,
    host: str,
    port: int,
    *,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    table: Table = OPERATIONS,
    guard: Guard | None = None,
    tls: Tls | None = None,
) -> None:
    """Serve MCP over streamable HTTP at ``http://HOST:PORT/mcp`` until ``stop`` is set (its
    sessions are closed, within a second) or the task is cancelled.

    Signals are the caller's: the server catches none.

    Args:
        port: 0 takes a free port.
        ready: called with the endpoint's URL once it listens (on the event loop).
        stop: set it to stop the server.
        guard: who may call what (with authentication configured: a bearer credential per
            request).
        tls: serve HTTPS with this certificate and key.

    Raises:
        ConfigError: ``HOST:PORT`` cannot be listened on (taken, or not an address here).
    """
    app = http_app(runtime, host=host, table=table, guard=guard)
    await serve_asgi(app, host, port, what="MCP over HTTP", path=MCP_PATH, ready=ready,
                     stop=stop, tls=tls)  # fmt: skip
