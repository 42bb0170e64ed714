"""The ``macp`` command.

Every bad flag or file gets one sentence naming it and the fix, and a non-zero exit: 2 for a bad
flag or value, 1 for a topology file with errors (one line each, as ``macp validate`` prints
them) and for a failure at run time. Logs go to standard error: a console renderer on a
terminal, JSON lines otherwise or with ``--log-json``; results go to standard output.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

import macp
from macp.cli._gateway import gateway_app
from macp.cli._gateway_audit import audit
from macp.cli._history import register as register_history
from macp.cli._mcp import mcp
from macp.cli._start import start
from macp.cli._support import fail
from macp.cli._topology import register
from macp.errors import ConfigError, MacpError
from macp.log import configure_logging

__all__ = ["app", "main"]

app = typer.Typer(
    name="macp",
    help="Multi-Agent Control Protocol: run supervised agents on one host or many.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
node_app = typer.Typer(help="Run or query one node.", no_args_is_help=True)
keys_app = typer.Typer(help="Make CURVE key pairs for nodes.", no_args_is_help=True)
app.add_typer(node_app, name="node")
app.add_typer(keys_app, name="keys")
register(app)
register_history(app)  # tasks, task, runs, run-status, alerts, agents
node_app.command("start")(start)
gateway_app.command("audit")(audit)  # macp gateway audit
app.add_typer(gateway_app, name="gateway")
app.command("mcp")(mcp)


def _print_version(given: bool) -> None:
    if given:
        typer.echo(macp.__version__)
        raise typer.Exit


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Multi-Agent Control Protocol: run supervised agents on one host or many."""


@app.command()
def version() -> None:
    """Print the macp version."""
    typer.echo(macp.__version__)


@node_app.command("ping")
def node_ping(
    address: Annotated[str, typer.Argument(help="The node's address (NAME=ADDRESS with --keys).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    keys: Annotated[
        Path | None, typer.Option(help="Keys directory holding a 'client' key pair.")
    ] = None,
    timeout_s: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 3.0,
) -> None:
    """Ask a node for its name, uptime, peers and actors."""
    configure_logging(level="warning")
    try:
        client = macp.Node.client(address, keys=keys).start()
    except ConfigError as e:
        fail(e.message)
    try:
        info = client.ask_node("*", "node.info", timeout_s=timeout_s).get()
    except macp.AskTimeout:
        fail(f"no answer from {address} within {timeout_s:g} s; is the node running there?", 1)
    except MacpError as e:
        fail(f"{address} answered with an error: {e.message}", 1)
    finally:
        client.stop()
    if as_json:
        typer.echo(json.dumps(info, sort_keys=True))
        return
    typer.echo(f"node     {info['name']} at {info['address']}")
    typer.echo(f"uptime   {info['uptime_s']:.1f} s")
    peers = info.get("peers") or {}
    for peer_name, peer in sorted(peers.items()):
        typer.echo(f"peer     {peer_name:<16} {peer['state']:<8} {peer['address']}")
    typer.echo(f"actors   {', '.join(info.get('actors') or []) or '(none)'}")


@keys_app.command("generate")
def keys_generate(
    directory: Annotated[Path, typer.Argument(help="Directory to write the key pair into.")],
    name: Annotated[
        str | None, typer.Option(help="Node name for the key (default: this host's name).")
    ] = None,
) -> None:
    """Write NAME.key (public, copy to every node) and NAME.key_secret (keep on this host)."""
    from macp.transport.security import generate_keys  # noqa: PLC0415

    key_name = name or socket.gethostname().split(".")[0]
    try:
        public, secret = generate_keys(directory, key_name)
    except ConfigError as e:
        fail(e.message)
    typer.echo(f"public key: {public}\nsecret key: {secret}")


def main() -> None:
    """Entry point of the ``macp`` console script: an error no command expected is still one
    sentence and exit code 1, never a traceback."""
    try:
        app()
    except MacpError as e:
        typer.echo(f"error: {type(e).__name__}: {e.message}", err=True)
        sys.exit(1)
