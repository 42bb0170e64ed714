"""``macp mcp``: serve the gateway's operations to MCP clients, over stdio or streamable HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path  # noqa: TC003  # typer reads the annotations at run time
from typing import TYPE_CHECKING, Annotated

import typer

import macp
from macp.cli._start import (
    AcceptablePauseS,
    HeartbeatS,
    LogJson,
    LogLevel,
    MaxMessageBytes,
    _logging,
)
from macp.cli._support import fail
from macp.errors import ConfigError, MacpError

if TYPE_CHECKING:
    from macp.gateway import Member

__all__ = ["mcp"]

_SETTINGS = macp.Settings()
_DEFAULT_LISTEN = "tcp://127.0.0.1:0"


def mcp(  # noqa: PLR0917  # typer's options are the parameters
    connect: Annotated[
        str,
        typer.Option(help="Address (or NAME=ADDRESS with --keys) of any member of the cluster."),
    ],
    name: Annotated[
        str | None, typer.Option(help="The gateway node's name (default: gateway-ID).")
    ] = None,
    listen: Annotated[
        str, typer.Option(help="Where the cluster's nodes reach the gateway node.")
    ] = _DEFAULT_LISTEN,
    keys: Annotated[
        Path | None, typer.Option(help="Keys directory: CURVE encryption and allow-list.")
    ] = None,
    insecure: Annotated[
        bool, typer.Option(help="Allow plaintext on a non-loopback address.")
    ] = False,
    http: Annotated[
        str | None,
        typer.Option(help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio."),
    ] = None,
    heartbeat_s: HeartbeatS = _SETTINGS.heartbeat_interval_s,
    acceptable_pause_s: AcceptablePauseS = _SETTINGS.acceptable_pause_s,
    max_message_bytes: MaxMessageBytes = _SETTINGS.max_message_bytes,
    timeout_s: Annotated[
        float, typer.Option(help="Seconds to wait for the member at --connect to answer.")
    ] = 10.0,
    log_json: LogJson = False,
    log_level: LogLevel = "warning",
) -> None:
    """Serve every gateway operation as an MCP tool, through a member node joined at --connect.

    With no --http, MCP runs on standard input and output (what an LLM desktop client
    launches); logs go to standard error. With --http HOST:PORT it serves streamable HTTP at
    /mcp, prints one JSON line {"event": "mcp.ready", "url"} on standard output once it
    listens, and runs until SIGINT or SIGTERM. Exits 2 for a bad flag or value, 1 when the
    cluster cannot be joined.
    """
    _logging(log_json, log_level)
    address = _http_address(http) if http is not None else None
    from macp.gateway import Member  # noqa: PLC0415  # the SDK loads only for this command

    try:
        settings = macp.Settings(
            heartbeat_interval_s=heartbeat_s, acceptable_pause_s=acceptable_pause_s,
            max_message_bytes=max_message_bytes,
        )  # fmt: skip
        member = Member.join(
            connect, name=name, listen=listen, keys=keys, insecure=insecure,
            settings=settings, timeout_s=timeout_s,
        )  # fmt: skip
    except ConfigError as e:
        fail(e.message)
    except MacpError as e:
        fail(e.message, 1)
    try:
        asyncio.run(_serve(member, address))
    except ConfigError as e:
        fail(e.message)
    finally:
        member.close()


def _http_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:  # noqa: PLR2004
        fail(f"--http {value!r} must be HOST:PORT, e.g. --http 127.0.0.1:8765 (port 0: any)")
    return host.strip("[]"), int(port)


async def _serve(member: Member, http: tuple[str, int] | None) -> None:
    """Serve until the client goes (stdio: its end of standard input) or a signal comes."""
    from macp.gateway.mcp import serve_http, serve_stdio  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if http is not None:
        await serve_http(member.runtime, *http, ready=_announce, stop=stop)
        return
    serving = asyncio.ensure_future(serve_stdio(member.runtime))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if serving.done():
        serving.result()
        return
    # A signal while a thread reads standard input: that read cannot be interrupted, so the
    # node is closed here and the process leaves without waiting for the thread.
    await asyncio.to_thread(member.close)
    sys.stderr.flush()
    os._exit(0)


def _announce(url: str) -> None:
    typer.echo(json.dumps({"event": "mcp.ready", "url": url}))
    sys.stdout.flush()
