"""``macp gateway``: serve the cluster's operations to other processes (JSON-RPC over TCP, MCP
over HTTP) from a member node of its own, in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
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
    _parent_to_follow,
)
from macp.cli._support import fail
from macp.errors import AskTimeout, ConfigError, MacpError

if TYPE_CHECKING:
    from macp.gateway import Gateway

__all__ = ["gateway"]

_SETTINGS = macp.Settings()
_PARENT_CHECK_S = 0.2


def gateway(
    connect: Annotated[
        str,
        typer.Option(help="Address of any node of the cluster (NAME=ADDRESS with --keys)."),
    ],
    name: Annotated[
        str | None, typer.Option(help="The gateway node's name (default: gateway-<random>).")
    ] = None,
    listen: Annotated[
        str, typer.Option(help="Where the cluster's nodes reach the gateway's node.")
    ] = "tcp://127.0.0.1:0",
    keys: Annotated[
        Path | None, typer.Option(help="Keys directory: CURVE encryption to the cluster.")
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            help="Serve --jsonrpc/--mcp-http on an address other hosts can reach (they have no "
            "authentication yet: a later part of the gateway adds it), and allow plaintext to "
            "the cluster off loopback."
        ),
    ] = False,
    jsonrpc: Annotated[
        str | None,
        typer.Option(help="Serve JSON-RPC 2.0 over TCP (one JSON message a line) on HOST:PORT."),
    ] = None,
    mcp_http: Annotated[
        str | None, typer.Option(help="Serve MCP (streamable HTTP, at /mcp) on HOST:PORT.")
    ] = None,
    http: Annotated[
        str | None,
        typer.Option(
            help="Serve HTTP on HOST:PORT: REST at /api/v1, /health, /ready, MCP at /mcp."
        ),
    ] = None,
    idle_timeout_s: Annotated[
        float, typer.Option(help="Close a JSON-RPC connection silent this long, seconds.")
    ] = 300.0,
    heartbeat_s: HeartbeatS = _SETTINGS.heartbeat_interval_s,
    acceptable_pause_s: AcceptablePauseS = _SETTINGS.acceptable_pause_s,
    max_message_bytes: MaxMessageBytes = _SETTINGS.max_message_bytes,
    log_json: LogJson = False,
    log_level: LogLevel = "info",
) -> None:
    """Join the cluster at --connect as a member node and serve its operations.

    With none of --jsonrpc, --mcp-http, --http, JSON-RPC is served on 127.0.0.1:9500. Prints
    one JSON line {"event": "gateway.ready", "name", "address", "head", "jsonrpc", "mcp_http",
    "http"} on standard output once every listener listens (with the real ports, for port 0).
    Exits 0 after SIGINT or SIGTERM (calls in flight are answered, or failed after a few
    seconds), 1 if the cluster does not answer, 2 for a bad flag or value: among them an address
    in use, and an address off loopback without --insecure.
    """
    from macp.gateway import Gateway, JsonRpcLimits, Member  # noqa: PLC0415

    _logging(log_json, log_level)
    parent = _parent_to_follow()
    jsonrpc = _checked_listeners(jsonrpc, mcp_http, insecure=insecure, http=http)
    if idle_timeout_s <= 0:
        fail(f"--idle-timeout-s must be more than 0, not {idle_timeout_s:g}")
    try:
        settings = macp.Settings(
            heartbeat_interval_s=heartbeat_s, acceptable_pause_s=acceptable_pause_s,
            max_message_bytes=max_message_bytes,
        )  # fmt: skip
        member = Member.join(connect, name=name, listen=listen, keys=keys, insecure=insecure,
                             settings=settings)  # fmt: skip
    except ConfigError as e:
        fail(e.message)
    except AskTimeout as e:
        fail(e.message, 1)
    try:
        served = Gateway(member, jsonrpc=jsonrpc, mcp_http=mcp_http, http=http,
                         limits=JsonRpcLimits(idle_timeout_s=idle_timeout_s))  # fmt: skip
    except ConfigError as e:
        member.close()
        fail(e.message)
    try:
        asyncio.run(_serve(served, parent))
    except ConfigError as e:
        fail(e.message)
    except MacpError as e:
        fail(f"{type(e).__name__}: {e.message}", 1)


def _checked_listeners(
    jsonrpc: str | None, mcp_http: str | None, *, insecure: bool, http: str | None = None
) -> str | None:
    """The JSON-RPC address to serve (the default one if no listener is asked for); exit 2 for
    an address not HOST:PORT, or off loopback without ``insecure``."""
    from macp.gateway.server import DEFAULT_JSONRPC, host_port, is_loopback  # noqa: PLC0415

    if jsonrpc is None and mcp_http is None and http is None:
        jsonrpc = DEFAULT_JSONRPC
    for flag, value in (("--jsonrpc", jsonrpc), ("--mcp-http", mcp_http), ("--http", http)):
        if value is None:
            continue
        try:
            host, _ = host_port(value, flag)
        except ConfigError as e:
            fail(e.message)
        if not is_loopback(host) and not insecure:
            fail(f"{flag} {value} can be reached from other hosts, and the gateway does not yet "
                 "authenticate its clients; serve on 127.0.0.1, or add --insecure")  # fmt: skip
    return jsonrpc


async def _serve(served: Gateway, parent: int | None) -> None:
    """Serve until SIGINT, SIGTERM, or (with ``parent``) the parent process is gone."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watch = asyncio.create_task(_follow(parent, stop)) if parent is not None else None
    try:
        await served.serve(stop, ready=lambda addresses: _announce(served, addresses))
    finally:
        if watch is not None:
            watch.cancel()


async def _follow(parent: int, stop: asyncio.Event) -> None:
    while os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _PARENT_CHECK_S)
            return
    stop.set()


def _announce(served: Gateway, addresses: dict[str, str]) -> None:
    node = served.member.node
    ready = {"event": "gateway.ready", "name": node.name, "address": node.address,
             "head": node.head, "jsonrpc": addresses.get("jsonrpc"),
             "mcp_http": addresses.get("mcp_http"), "http": addresses.get("http")}  # fmt: skip
    typer.echo(json.dumps(ready))
    sys.stdout.flush()
