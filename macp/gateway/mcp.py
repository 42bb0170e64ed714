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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Final

import mcp_types as types
import uvicorn
from mcp.server import Server
from mcp.server.stdio import stdio_server

from macp.errors import ConfigError, MacpError
from macp.gateway.ops import OPERATIONS
from macp.gateway.table import error_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from mcp.server import ServerRequestContext
    from starlette.applications import Starlette

    from macp.gateway.bridge import Runtime
    from macp.gateway.table import Table

__all__ = ["MCP_PATH", "http_app", "mcp_server", "serve_http", "serve_stdio", "tool_result"]

_BACKLOG: Final = 128

MCP_PATH: Final = "/mcp"
"""Where the streamable HTTP endpoint is served."""

_INSTRUCTIONS: Final = (
    "macp runs supervised agents across nodes. Submit work with task_orchestrate (it answers "
    "a task_id), then follow it with task_status or fetch it with task_result; every tool acts "
    "on the real cluster. A failed call answers isError with the macp error code."
)


def mcp_server(runtime: Runtime, table: Table = OPERATIONS) -> Server[Any]:
    """An MCP server whose tools are ``table``'s operations, run against ``runtime``.

    Handlers run on the server's event loop (an asyncio loop): an operation waits on the
    runtime's futures without a thread (:mod:`macp.gateway.bridge`).
    """
    tools = [
        types.Tool(name=op.name, description=op.summary, input_schema=op.input_schema())
        for op in sorted(table, key=lambda op: op.name)
    ]

    async def list_tools(
        _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        _ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        return await _call(runtime, table, params.name, params.arguments)

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
    runtime: Runtime, table: Table, name: str, arguments: dict[str, Any] | None
) -> types.CallToolResult:
    """Operation ``name`` run, as a tool result; any failure is an error result (a client's
    mistake or a bug of ours alike must not end its session)."""
    try:
        result = await table[name].call(runtime, arguments)
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


async def serve_stdio(runtime: Runtime, table: Table = OPERATIONS) -> None:
    """Serve MCP on this process's standard input and output until the input ends.

    Nothing else may write to standard output meanwhile (macp logs to standard error).
    """
    server = mcp_server(runtime, table)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def http_app(runtime: Runtime, *, host: str = "127.0.0.1", table: Table = OPERATIONS) -> Starlette:
    """An ASGI app serving MCP over streamable HTTP at :data:`MCP_PATH`.

    Run it under an ASGI server that runs its lifespan (uvicorn does): the lifespan runs the
    sessions' manager. ``host`` is where it listens: on a loopback address, requests whose
    ``Host`` or ``Origin`` is not a loopback one are refused (DNS rebinding protection).
    """
    return mcp_server(runtime, table).streamable_http_app(streamable_http_path=MCP_PATH, host=host)


async def serve_http(
    runtime: Runtime,
    host: str,
    port: int,
    *,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    table: Table = OPERATIONS,
) -> None:
    """Serve MCP over streamable HTTP at ``http://HOST:PORT/mcp`` until ``stop`` is set (its
    sessions are closed, within a second) or the task is cancelled.

    Signals are the caller's: the server catches none.

    Args:
        port: 0 takes a free port.
        ready: called with the endpoint's URL once it listens (on the event loop).
        stop: set it to stop the server.

    Raises:
        ConfigError: ``HOST:PORT`` cannot be listened on (taken, or not an address here).
    """
    sock = _listen(host, port)
    config = uvicorn.Config(
        http_app(runtime, host=host, table=table), log_config=None, access_log=False,
        lifespan="on", timeout_graceful_shutdown=1,
    )  # fmt: skip
    with sock:
        if ready is not None:  # it listens: a connection waits in the backlog until served
            bound_host, bound_port = sock.getsockname()[:2]
            ready(f"http://{_url_host(bound_host)}:{bound_port}{MCP_PATH}")
        server = _Server(config)
        watch = asyncio.ensure_future(_stop_when_set(server, stop)) if stop else None
        try:
            await server.serve(sockets=[sock])
        finally:
            if watch is not None:
                watch.cancel()


class _Server(uvicorn.Server):
    """uvicorn's server, stopped by its caller: it catches no signal (uvicorn's own would
    raise the signal again once stopped, ending the program before it closes its node)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _stop_when_set(server: uvicorn.Server, stop: asyncio.Event) -> None:
    await stop.wait()
    server.should_exit = True


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"cannot serve MCP over HTTP on {host}:{port}: {e.strerror or e}; choose another "
            "--http HOST:PORT"
        ) from e
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
