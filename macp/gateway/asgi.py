"""Serving an ASGI app with uvicorn the way every HTTP listener of the gateway does: on a socket
bound first (so an address in use is one sentence at once, and port 0 is known before
anything is served), stopped by its caller (it catches no signal), HTTPS with a certificate."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Any, Final

import uvicorn

from macp.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from macp.gateway.auth import Tls

__all__ = ["serve_asgi"]

_BACKLOG: Final = 128


async def serve_asgi(
    app: Any,
    host: str,
    port: int,
    *,
    what: str,
    path: str = "",
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    tls: Tls | None = None,
) -> None:
    """Serve ``app`` on ``HOST:PORT`` until ``stop`` is set (connections get a second to
    finish) or the task is cancelled.

    Args:
        what: what is served, for the error (``"MCP over HTTP"``, ``"HTTP"``).
        path: added to the URL ``ready`` is called with (``/mcp``).
        port: 0 takes a free port.
        ready: called with the URL (``http://HOST:PORT`` and ``path``) once it listens.
        tls: serve HTTPS with this certificate and key.

    Raises:
        ConfigError: ``HOST:PORT`` cannot be listened on (taken, or not an address here).
    """
    sock = _listen(host, port, what)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=1,
        **(tls.uvicorn_options() if tls else {}),
    )  # fmt: skip
    with sock:
        if ready is not None:  # it listens: a connection waits in the backlog until served
            bound_host, bound_port = sock.getsockname()[:2]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            ready(f"{'https' if tls else 'http'}://{shown}:{bound_port}{path}")
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


def _listen(host: str, port: int, what: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"cannot serve {what} on {host}:{port}: {e.strerror or e}; choose another "
            "--http HOST:PORT"
        ) from e
    return sock
