"""The gateway's one HTTP app: REST under ``/api/v1``, ``/health``, ``/ready``, the OpenAPI
document at ``/api/v1/openapi.json``, MCP over streamable HTTP at ``/mcp``, and the web
dashboard at ``/`` (:mod:`macp.gateway.dashboard`: ``/login``, ``/logout``, ``/static``).

``/health`` answers as long as the process does (liveness); ``/ready`` asks the head's
registry a cheap question with a short timeout and answers 503 while it gets no answer
(readiness: a load balancer sends no traffic to a gateway whose cluster is unreachable).
Neither needs a credential. An unknown path or method is a JSON error like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from macp.actors.registry import LOOKUP
from macp.errors import AskTimeout, MacpError, NodeDown, UnknownMessageType
from macp.gateway.asgi import serve_asgi
from macp.gateway.dashboard import dashboard_routes
from macp.gateway.guard import Guard
from macp.gateway.http.rest import API, _Json, error_response
from macp.gateway.http.rest_openapi import openapi
from macp.gateway.http.rest_routes import rest_routes
from macp.gateway.mcp import BearerAuth
from macp.gateway.mcp import http_app as mcp_http_app
from macp.gateway.ops import OPERATIONS
from macp.gateway.quotas import ConnectionLimit

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from macp.gateway.auth import Tls
    from macp.gateway.bridge import Runtime
    from macp.gateway.table import Table

__all__ = ["READY_TIMEOUT_S", "http_app", "serve"]

READY_TIMEOUT_S: Final = 2.0
"""How long ``/ready`` waits for the head's answer."""


def http_app(
    runtime: Runtime,
    guard: Guard | None = None,
    *,
    host: str = "127.0.0.1",
    table: Table = OPERATIONS,
    ready_timeout_s: float = READY_TIMEOUT_S,
    routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The gateway's HTTP app over ``runtime``, every call decided by ``guard``.

    Run it under an ASGI server that runs its lifespan (uvicorn does): it runs MCP's session
    manager. ``host`` is where it listens (MCP refuses a non-loopback ``Host`` or ``Origin``
    on a loopback address). ``routes`` are served too (e.g. the WebSocket's ``/ws`` route).
    """
    guard = guard or Guard()
    rest = rest_routes(table, guard)
    document = openapi(rest)

    async def health(_request: Request) -> Response:
        return _Json({"status": "ok"})

    async def ready(_request: Request) -> Response:
        try:
            await asyncio.wait_for(
                runtime.request("registry", LOOKUP, {"name": "coordinator"},
                                timeout_s=ready_timeout_s),
                ready_timeout_s + 1,
            )  # fmt: skip
        except (MacpError, TimeoutError) as e:
            reason = e.message if isinstance(e, MacpError) else "no answer in time"
            if isinstance(e, AskTimeout | TimeoutError):
                reason = f"the head did not answer within {ready_timeout_s:g} s"
            elif isinstance(e, NodeDown):
                reason = f"the head is down: {reason}"
            return _Json({"ready": False, "head": runtime.cluster.head, "reason": reason}, 503)
        return _Json({"ready": True, "head": runtime.cluster.head})

    async def served_openapi(_request: Request) -> Response:
        return _Json(document)

    mcp = mcp_http_app(runtime, host=host, table=table, guard=guard)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with mcp.router.lifespan_context(mcp):
            yield

    app = Starlette(
        routes=[
            *(Route(path, health, methods=["GET"]) for path in ("/health", f"{API}/health")),
            *(Route(path, ready, methods=["GET"]) for path in ("/ready", f"{API}/ready")),
            Route(f"{API}/openapi.json", served_openapi, methods=["GET"]),
            *(route.route(runtime, guard) for route in rest),
            *routes,
            *dashboard_routes(guard, table),
            *_guarded(mcp.routes, guard),
        ],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    if guard.quotas is not None:  # each client IP:port is a connection (see ConnectionLimit)
        app.add_middleware(ConnectionLimit, quotas=guard.quotas)
    return app


async def _http_error(request: Request, exc: Any) -> Response:
    """Starlette's own errors (no such path, method not allowed) as REST's."""
    status = getattr(exc, "status_code", 500)
    what = f"{request.method} {request.url.path}"
    message = (
        f"no route {what}; {API}/openapi.json lists them" if status == 404  # noqa: PLR2004
        else f"{what}: {getattr(exc, 'detail', '')}"
    )  # fmt: skip
    return error_response(UnknownMessageType(message), status)


async def serve(
    app: Starlette,
    host: str,
    port: int,
    *,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    tls: Tls | None = None,
) -> None:
    """Serve ``app`` with uvicorn on ``http://HOST:PORT`` (``https://`` with ``tls``) until
    ``stop`` is set (connections get a second to finish) or the task is cancelled. Signals are
    the caller's.

    Args:
        port: 0 takes a free port.
        ready: called with the base URL (``http://HOST:PORT``) once it listens.
        tls: serve HTTPS with this certificate and key.

    Raises:
        ConfigError: ``HOST:PORT`` cannot be listened on (taken, or not an address here).
    """
    await serve_asgi(app, host, port, what="HTTP", ready=ready, stop=stop, tls=tls)


def _guarded(routes: list[BaseRoute], guard: Guard) -> list[BaseRoute]:
    """The MCP app's routes, each behind :class:`~macp.gateway.mcp.BearerAuth` when ``guard``
    authenticates (the MCP app's own middleware does not come with its routes)."""
    if not guard.configured:
        return routes
    return [
        Route(r.path, BearerAuth(r.app, guard), methods=r.methods) if isinstance(r, Route) else r
        for r in routes
    ]
