"""``macp mcp``: serve the gateway's operations to MCP clients, over stdio or streamable HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path  # noqa: TC003  # typer reads the annotations at run time
from typing import TYPE_CHECKING, Annotated, Any

import typer

import macp
from macp.cli._serving import (
    DEFAULT_RATE_PER_CONNECTION,
    DEFAULT_RATE_PER_PRINCIPAL,
    DEFAULT_SUBMISSIONS_PER_MIN,
    DEFAULT_WEBSOCKETS_PER_PRINCIPAL,
    Audience,
    AuditDb,
    Insecure,
    Issuer,
    JwtKeyFile,
    KeysDb,
    RatePerConnection,
    RatePerPrincipal,
    SubmissionsPerMin,
    TlsCert,
    TlsKey,
    WebsocketsPerPrincipal,
    serving_guard,
    serving_tls,
)
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
    from macp.gateway import Guard, Member
    from macp.gateway.auth import Tls

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
    insecure: Insecure = False,
    http: Annotated[
        str | None,
        typer.Option(help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio."),
    ] = None,
    jwt_key_file: JwtKeyFile = None,
    jwt_audience: Audience = "macp-gateway",
    jwt_issuer: Issuer = "macp",
    keys_db: KeysDb = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    audit_db: AuditDb = None,
    rate_per_principal: RatePerPrincipal = DEFAULT_RATE_PER_PRINCIPAL,
    rate_per_connection: RatePerConnection = DEFAULT_RATE_PER_CONNECTION,
    submissions_per_min: SubmissionsPerMin = DEFAULT_SUBMISSIONS_PER_MIN,
    websockets_per_principal: WebsocketsPerPrincipal = DEFAULT_WEBSOCKETS_PER_PRINCIPAL,
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

    Over HTTP, callers authenticate as with `macp gateway` (--jwt-key-file or
    $MACP_GATEWAY_JWT_SECRET, --keys-db; an address off loopback needs one of them, or
    --insecure); standard input is always the local user. Every call is audited (--audit-db)
    and limited (--rate-per-principal and the others; 0 turns one off), as `macp gateway` does.
    """
    _logging(log_json, log_level)
    address = _http_address(http) if http is not None else None

    tls = serving_tls(tls_cert, tls_key)
    guard = serving_guard(
        jwt_key_file=jwt_key_file, keys_db=keys_db, audience=jwt_audience, issuer=jwt_issuer,
        audit_db=audit_db, rate_per_principal=rate_per_principal,
        rate_per_connection=rate_per_connection, submissions_per_min=submissions_per_min,
        websockets_per_principal=websockets_per_principal, authenticate=http is not None,
    )  # fmt: skip
    try:
        if address is not None:
            _check_reach(address, http or "", guard, insecure=insecure)
        _run(guard, tls, address, connect, name=name, listen=listen, keys=keys,
             insecure=insecure, timeout_s=timeout_s, settings=macp.Settings(
                 heartbeat_interval_s=heartbeat_s, acceptable_pause_s=acceptable_pause_s,
                 max_message_bytes=max_message_bytes))  # fmt: skip
    finally:
        if guard.audit is not None:
            guard.audit.close()  # what is queued is written before the process ends


def _run(
    guard: Guard,
    tls: Tls | None,
    address: tuple[str, int] | None,
    connect: str,
    *,
    insecure: bool,
    **join: Any,
) -> None:
    from macp.gateway import Member  # noqa: PLC0415

    try:
        member = Member.join(connect, insecure=insecure, **join)
    except ConfigError as e:
        fail(e.message)
    except MacpError as e:
        fail(e.message, 1)
    if guard.audit is not None:
        guard.audit.gateway = member.node.name
    try:
        if address is not None:
            asyncio.run(_serve_http(member, guard, tls, address, insecure=insecure))
        else:
            asyncio.run(_serve(member, guard))
    except ConfigError as e:
        fail(e.message)
    finally:
        member.close()


def _check_reach(address: tuple[str, int], http: str, guard: Guard, *, insecure: bool) -> None:
    """Exit 2 for --http off loopback with no authentication configured and no --insecure."""
    from macp.gateway.server import check_reach  # noqa: PLC0415

    try:
        check_reach(address[0], "--http", http, guard=guard, insecure=insecure)
    except ConfigError as e:
        fail(e.message)


def _http_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:  # noqa: PLR2004
        fail(f"--http {value!r} must be HOST:PORT, e.g. --http 127.0.0.1:8765 (port 0: any)")
    return host.strip("[]"), int(port)


async def _serve_http(
    member: Member, guard: Guard, tls: Tls | None, http: tuple[str, int], *, insecure: bool
) -> None:
    """Serve MCP over HTTP (a gateway with that one listener) until a signal comes."""
    from macp.gateway import Gateway  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    host, port = http
    shown = f"[{host}]" if ":" in host else host
    try:
        served = Gateway(member, jsonrpc=None, mcp_http=f"{shown}:{port}", guard=guard,
                         insecure=insecure, tls=tls)  # fmt: skip
    except ConfigError as e:
        fail(e.message.replace("--mcp-http", "--http"))
    await served.serve(stop, ready=lambda addresses: _announce(addresses["mcp_http"]))


async def _serve(member: Member, guard: Guard) -> None:
    """Serve until the client goes (its end of standard input) or a signal comes."""
    from macp.gateway.mcp import serve_stdio  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    serving = asyncio.ensure_future(serve_stdio(member.runtime, guard=guard))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if serving.done():
        serving.result()
        return
    # A signal while a thread reads standard input: that read cannot be interrupted, so the
    # node is closed here and the process leaves without waiting for the thread.
    await asyncio.to_thread(member.close)
    if guard.audit is not None:
        await asyncio.to_thread(guard.audit.close)
    sys.stderr.flush()
    os._exit(0)


def _announce(url: str) -> None:
    typer.echo(json.dumps({"event": "mcp.ready", "url": url}))
    sys.stdout.flush()
