"""``macp gateway``: serve the cluster's operations to other processes (JSON-RPC over TCP, MCP
over HTTP) from a member node of its own, in the foreground until SIGINT or SIGTERM; and its
subcommands: ``token`` and ``keys`` (:mod:`macp.cli._gateway_auth`), ``audit``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

import macp
from macp.cli._gateway_auth import keys_app, token
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
    _parent_to_follow,
)
from macp.cli._support import fail
from macp.errors import AskTimeout, ConfigError, MacpError

if TYPE_CHECKING:
    from macp.gateway import Gateway, Member

__all__ = ["gateway", "gateway_app"]

gateway_app = typer.Typer(
    help="Serve the cluster's operations (bare call, with --connect); issue credentials."
)
gateway_app.command("token")(token)
gateway_app.add_typer(keys_app, name="keys")
# macp gateway audit: macp/cli/_gateway_audit.py's command registers here, in one line.

_SETTINGS = macp.Settings()
_PARENT_CHECK_S = 0.2


@gateway_app.callback(invoke_without_command=True)
def gateway(
    ctx: typer.Context,
    connect: Annotated[
        str | None,
        typer.Option(
            help="Address of any node of the cluster (NAME=ADDRESS with --keys); required to serve."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="The gateway node's name (default: gateway-<random>).")
    ] = None,
    listen: Annotated[
        str, typer.Option(help="Where the cluster's nodes reach the gateway's node.")
    ] = "tcp://127.0.0.1:0",
    keys: Annotated[
        Path | None, typer.Option(help="Keys directory: CURVE encryption to the cluster.")
    ] = None,
    insecure: Insecure = False,
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
    in use, and an address off loopback with no authentication configured and no --insecure.

    Authentication: bearer tokens (JWT) with --jwt-key-file or $MACP_GATEWAY_JWT_SECRET; API
    keys with --keys-db, or the default store once `macp gateway keys create` made it.

    Every call, allowed or refused, is recorded in the audit log (--audit-db; `macp gateway
    audit` reads it) and counted against the limits (--rate-per-principal and the others; 0
    turns one off); over a limit is error -32000 with data.retry_after_s (HTTP: 429 and
    Retry-After).
    """
    if ctx.invoked_subcommand is not None:
        return
    if connect is None:
        fail("--connect is required to serve: the address of any node of the cluster")
    from macp.gateway import Gateway, JsonRpcLimits  # noqa: PLC0415

    _logging(log_json, log_level)
    parent = _parent_to_follow()
    if idle_timeout_s <= 0:
        fail(f"--idle-timeout-s must be more than 0, not {idle_timeout_s:g}")
    tls = serving_tls(tls_cert, tls_key)
    guard = serving_guard(
        jwt_key_file=jwt_key_file, keys_db=keys_db, audience=jwt_audience, issuer=jwt_issuer,
        audit_db=audit_db, rate_per_principal=rate_per_principal,
        rate_per_connection=rate_per_connection, submissions_per_min=submissions_per_min,
        websockets_per_principal=websockets_per_principal,
    )  # fmt: skip
    try:
        jsonrpc = _checked_listeners(
            jsonrpc, mcp_http, insecure=insecure or guard.configured, http=http
        )
        settings = macp.Settings(
            heartbeat_interval_s=heartbeat_s, acceptable_pause_s=acceptable_pause_s,
            max_message_bytes=max_message_bytes,
        )  # fmt: skip
        member = _join(connect, name=name, listen=listen, keys=keys, insecure=insecure,
                       settings=settings)  # fmt: skip
        if guard.audit is not None:
            guard.audit.gateway = member.node.name
        try:
            served = Gateway(member, jsonrpc=jsonrpc, mcp_http=mcp_http, http=http, guard=guard,
                             insecure=insecure, tls=tls,
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
    finally:
        if guard.audit is not None:
            guard.audit.close()  # what is queued is written before the process ends


def _join(connect: str, *, settings: macp.Settings, **options: Any) -> Member:
    """The gateway's member node, joined at ``connect``; exit 2 for a bad value, 1 if the
    cluster does not answer."""
    from macp.gateway import Member  # noqa: PLC0415

    try:
        return Member.join(connect, settings=settings, **options)
    except ConfigError as e:
        fail(e.message)
    except AskTimeout as e:
        fail(e.message, 1)


def _checked_listeners(
    jsonrpc: str | None, mcp_http: str | None, *, insecure: bool, http: str | None = None
) -> str | None:
    """The JSON-RPC address to serve (the default one if no listener is asked for); exit 2 for
    an address not HOST:PORT, or off loopback unless ``insecure`` (or authentication is
    configured: the caller says so through ``insecure``)."""
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
            fail(f"{flag} {value} can be reached from other hosts, and no authentication is "
                 "configured (--jwt-key-file, $MACP_GATEWAY_JWT_SECRET or --keys-db); configure "
                 "it, serve on 127.0.0.1, or add --insecure")  # fmt: skip
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
