"""``macp node start``: run one node in the foreground, from flags or from a topology file."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

import macp
from macp.actors.monitor import MonitorOptions
from macp.cli._support import STOP_WITH_PARENT, fail
from macp.errors import ConfigError, MacpError
from macp.log import configure_logging, get_logger

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["start"]

# node.ready waits this many heartbeats (at least this long) for the registry to take the
# node's agents; a head that is not up yet does not hold the node back longer.
_REGISTER_WAIT_HEARTBEATS = 3
_REGISTER_WAIT_MIN_S = 1.0
# The defaults of the flags are the library's own (one source each).
_SETTINGS = macp.Settings()
_PROMETHEUS_ADDR: str = MonitorOptions.model_fields["prometheus_addr"].default
_DEFAULT_SOURCES = frozenset({"DEFAULT", "DEFAULT_MAP"})  # click's ParameterSource names

LogJson = Annotated[bool, typer.Option("--log-json", help="Log JSON lines even on a terminal.")]
LogLevel = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]
# The liveness and message limit a node agrees on with its cluster (node start, gateway, mcp).
HeartbeatS = Annotated[float, typer.Option(help="Heartbeat interval, seconds (the cluster's).")]
AcceptablePauseS = Annotated[
    float, typer.Option(help="Extra silence tolerated before a peer is down (the cluster's).")
]
MaxMessageBytes = Annotated[
    int, typer.Option(help="Largest payload a message may carry (packed), bytes (the cluster's).")
]


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            fail(f"{flag} {value!r} must be NAME=VALUE, e.g. {flag} worker=tcp://10.0.0.2:5555")
        result[name] = rest
    return result


def _logging(log_json: bool, log_level: str) -> None:
    if log_level.lower() not in {"debug", "info", "warning", "error"}:
        fail(f"--log-level {log_level!r} is not one of debug, info, warning, error")
    configure_logging(json=True if log_json else None, level=log_level)


def start(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Option(help="This node's name, unique in the cluster.")
    ] = None,
    listen: Annotated[
        str | None, typer.Option(help="Address to listen on, tcp://HOST:PORT.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="A topology file: run its node --node from it.")
    ] = None,
    node_name: Annotated[
        str | None, typer.Option("--node", help="Which node of --config this is.")
    ] = None,
    address: Annotated[
        list[str] | None,
        typer.Option(help="With --config: NAME=ADDRESS overriding a node's address."),
    ] = None,
    join: Annotated[
        str | None,
        typer.Option(
            help="Address (or NAME=ADDRESS) of any cluster member; its head is this node's "
            "unless --head names one."
        ),
    ] = None,
    peer: Annotated[
        list[str] | None, typer.Option(help="A peer as NAME=ADDRESS; repeatable.")
    ] = None,
    agent: Annotated[
        list[str] | None,
        typer.Option(help="An agent to run, NAME=package.module:Class; repeatable."),
    ] = None,
    spawnable: Annotated[
        list[str] | None,
        typer.Option(help="A class others may spawn here, package.module:Class; repeatable."),
    ] = None,
    keys: Annotated[
        Path | None, typer.Option(help="Keys directory: CURVE encryption and allow-list.")
    ] = None,
    insecure: Annotated[
        bool, typer.Option(help="Allow plaintext on a non-loopback address.")
    ] = False,
    head: Annotated[
        str | None, typer.Option(help="The node hosting the control plane (register there).")
    ] = None,
    control_plane: Annotated[
        bool, typer.Option(help="Run the control plane (registry, coordinator, ...) here.")
    ] = False,
    journal: Annotated[
        Path | None, typer.Option(help="The control plane's SQLite journal (with --control-plane).")
    ] = None,
    prometheus_port: Annotated[
        int | None,
        typer.Option(help="Serve the monitor's metrics for Prometheus on this port (0: any)."),
    ] = None,
    prometheus_addr: Annotated[
        str, typer.Option(help="The address --prometheus-port listens on.")
    ] = _PROMETHEUS_ADDR,
    heartbeat_s: HeartbeatS = _SETTINGS.heartbeat_interval_s,
    acceptable_pause_s: AcceptablePauseS = _SETTINGS.acceptable_pause_s,
    max_message_bytes: MaxMessageBytes = _SETTINGS.max_message_bytes,
    log_json: LogJson = False,
    log_level: LogLevel = "info",
) -> None:
    """Run one node in the foreground until SIGINT or SIGTERM.

    Prints one JSON line {"event": "node.ready", "name", "address", "registered"} on standard
    output once the node listens and the head's registry holds its agents (or, "registered":
    false, after three heartbeats, at least 1 s, without an answer, or at once for a node with
    no head); a node started with --join and no --head takes the head of the member it joined.
    Exits 0 after a clean stop, 1 if its root supervisor gave up, 2 for a bad flag or value:
    among them a name held by a live node, and a listen address in use.
    """
    _logging(log_json, log_level)
    stop = _stop_on_signals()  # before anything starts, so no signal finds it half-made
    parent = _parent_to_follow()
    from macp._loader import load_class  # noqa: PLC0415

    if config is not None:
        clash = _given(
            ctx, "listen", "join", "peer", "agent", "spawnable", "keys", "insecure", "head",
            "control_plane", "journal", "heartbeat_s", "prometheus_port", "prometheus_addr",
            "acceptable_pause_s", "max_message_bytes",
        )  # fmt: skip
        if name is not None and node_name is not None:
            clash.append("--name and --node together")
        if clash:
            fail(f"--config takes these from the file, so drop {', '.join(clash)}; "
                 "or leave out --config")  # fmt: skip
        node = _node_of_file(config, node_name or name, _pairs(address or [], "--address"))
        _announce(node)
        raise typer.Exit(_serve(node, stop, parent))
    if name is None or listen is None:
        fail("give --name and --listen (or --config FILE --node NAME)")
    if node_name is not None or address:
        fail("--node and --address go with --config FILE; use --name without a file")
    monitor = _monitor_options(ctx, control_plane, prometheus_port, prometheus_addr)
    try:
        settings = macp.Settings(
            heartbeat_interval_s=heartbeat_s,
            acceptable_pause_s=acceptable_pause_s,
            max_message_bytes=max_message_bytes,
        )
        agents = {
            n: load_class(p, f"--agent {n}") for n, p in _pairs(agent or [], "--agent").items()
        }
        node = macp.Node(
            name,
            listen=listen,
            peers=_pairs(peer or [], "--peer"),
            join=join,
            keys=keys,
            insecure=insecure,
            head=head,
            settings=settings,
            spawnable=spawnable or (),
        )
        node.start()
    except ConfigError as e:
        fail(e.message)
    try:
        if control_plane:
            macp.start_control_plane(node, journal=journal, monitor=monitor)
        for agent_name, cls in agents.items():
            node.spawn(cls, agent_name)
    except MacpError as e:
        node.stop()
        fail(e.message)
    _announce(node)
    raise typer.Exit(_serve(node, stop, parent))


def _given(ctx: typer.Context, *names: str) -> list[str]:
    """The flags, among those of parameters ``names``, given on the command line (a flag's
    default is written once, where it is declared)."""
    flags = {param.name: param.opts[0] for param in ctx.command.params}
    given = []
    for name in names:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name not in _DEFAULT_SOURCES:
            given.append(flags[name])
    return given


def _monitor_options(
    ctx: typer.Context, control_plane: bool, prometheus_port: int | None, prometheus_addr: str
) -> dict[str, macp.Wire]:
    """The monitor's settings from the flags, which all need --control-plane."""
    extra = _given(ctx, "journal", "prometheus_port", "prometheus_addr")
    if not control_plane and extra:
        fail(f"{', '.join(extra)} configure the control plane: add --control-plane, or drop them")
    if prometheus_port is None:
        return {}
    return {"prometheus_port": prometheus_port, "prometheus_addr": prometheus_addr}


def _announce(node: macp.Node) -> None:
    """Print node.ready once the registry holds the node's agents, so that a program started
    after it finds them; if the head does not answer soon, print it anyway and say so. A node
    that joined without --head learns the head from the member it joined first."""
    wait_s = max(
        _REGISTER_WAIT_MIN_S, _REGISTER_WAIT_HEARTBEATS * node.settings.heartbeat_interval_s
    )
    deadline = time.monotonic() + wait_s
    joined = True
    if node.head is None and node.router is not None:
        joined = node.router.joined.wait(wait_s)
    registrar = node.registrar
    registered = False
    if registrar is not None:
        registered = registrar.wait_registered(max(0.0, deadline - time.monotonic()))
        if not registered:
            get_logger("macp.cli").warning(
                "node.unregistered",
                head=registrar.head,
                detail="the registry has not answered; the agents register once it does",
            )
    elif not joined:
        get_logger("macp.cli").warning(
            "node.unregistered",
            head=None,
            detail="the member joined has not answered; the agents register once a head is known",
        )
    ready = {"event": "node.ready", "name": node.name, "address": node.address}
    typer.echo(json.dumps({**ready, "registered": registered}))
    sys.stdout.flush()


def _node_of_file(config: Path, name: str | None, addresses: dict[str, str]) -> macp.Node:
    from macp.topologies.deploy import start_node  # noqa: PLC0415
    from macp.topologies.load import load_spec  # noqa: PLC0415

    if name is None:
        fail("with --config, say which node this is: --node NAME")
    try:
        return start_node(load_spec(config), name, addresses=addresses)
    except MacpError as e:
        fail(e.message)


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop


def _parent_to_follow() -> int | None:
    """The process whose end stops this node, from ``MACP_STOP_WITH_PARENT`` (``macp up`` sets
    it for its nodes, so that a ``macp up`` killed with SIGKILL leaves none behind)."""
    value = os.environ.get(STOP_WITH_PARENT)
    if not value:
        return None
    if not value.isdigit():
        fail(f"{STOP_WITH_PARENT} must be a process id, not {value!r}; or leave it unset")
    return int(value)


def _serve(node: macp.Node, stop: threading.Event, parent: int | None = None) -> int:
    """Run ``node`` until ``stop`` (a signal), its root supervisor gives up, or process
    ``parent`` is no longer its parent; its exit code."""
    macp.tune_gc()  # this process is the node's: tune it for throughput
    while not stop.wait(0.2):
        if node.wait(0) is not None:
            break
        if parent is not None and os.getppid() != parent:
            get_logger("macp.cli").warning("node.parent_gone", node=node.name, parent=parent)
            break
    node.stop()
    left = _macp_threads(deadline=time.monotonic() + 2.0)
    if left:
        get_logger("macp.cli").warning("node.threads_left", threads=left)
    return node.exit_code or 0


def _macp_threads(deadline: float) -> list[str]:
    """The macp threads still running once ``deadline`` passes (or none, as soon as none)."""
    while True:
        left = [
            t.name for t in threading.enumerate() if t.name.startswith("macp-") and t.is_alive()
        ]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)
