"""The ``macp`` commands that work on a topology file: validate, up, run, status, control."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

import macp
from macp.cli._nodes import GATEWAY_NODE, NodeChild, start_all, stop_all
from macp.cli._progress import follow_run, follow_task
from macp.cli._support import fail, parse_json
from macp.commands import Command
from macp.errors import ConfigError, MacpError, NodeDown
from macp.log import configure_logging
from macp.topologies import builders
from macp.topologies.load import load_spec

if TYPE_CHECKING:
    from macp.topologies.spec import TopologySpec

__all__ = ["register"]

File = Annotated[Path, typer.Argument(help="The topology file (YAML).")]
Connect = Annotated[
    str | None, typer.Option("--connect", help="Address of any node of the running topology.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _spec(file: Path) -> TopologySpec:
    try:
        return load_spec(file)
    except ConfigError as e:
        for line in e.message.splitlines():
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(1) from None


def summary(spec: TopologySpec) -> str:
    """What ``macp validate`` prints for a valid file."""
    instances = spec.placement()
    kind = spec.topology.kind if spec.topology is not None else "no topology"
    counts = f"{len(spec.nodes)} nodes, {len(spec.agents)} agents, {len(instances)} instances"
    lines = [f"topology {spec.name} ({kind}): {counts}", "nodes:"]
    lines += [f"  {n.name:<12} {n.listen:<26} {'head' if n is spec.head else ''}".rstrip()
              for n in spec.nodes]  # fmt: skip
    lines.append("agents:")
    for agent in spec.agents:
        where = ", ".join(sorted({node for _, node in agent.instances(spec.head.name)}))
        caps = ", ".join(agent.capabilities or [])
        lines.append(f"  {agent.name:<12} x{agent.replicas:<3} on {where:<16} {agent.class_}"
                     + (f" [{caps}]" if caps else ""))  # fmt: skip
    lines.append(f"workflows: {', '.join(w.name for w in spec.workflows) or '(none)'}")
    return "\n".join(lines)


def _wait_registered(cluster: macp.Cluster, spec: TopologySpec, timeout_s: float) -> None:
    expected = {f"{inst}@{node}" for inst, _, node in spec.placement()}
    expected |= {f"{e.name}@{e.node}" for e in builders.extras(spec)}

    def show(done: int, total: int) -> None:
        typer.echo(f"\ragents registered: {done}/{total}", err=True, nl=done == total)

    try:
        cluster.wait_for_agents(expected, timeout_s, progress=show if sys.stderr.isatty() else None)
    except macp.AskTimeout as e:
        missing = e.data.get("missing")
        listed = ", ".join(missing) if isinstance(missing, list) else e.message
        raise MacpError(f"agents not registered within {timeout_s:g} s: {listed}") from None


def _task_body(task: str | None, task_file: Path | None) -> Any:
    if task is not None and task_file is not None:
        fail("give --task or --task-file, not both")
    if task_file is not None:
        try:
            return parse_json(task_file.read_text(encoding="utf-8"), "--task-file")
        except OSError as e:
            fail(f"--task-file {task_file}: {e.strerror}")
    return parse_json(task, "--task") if task is not None else None


def _submit(cluster: macp.Cluster, spec: TopologySpec, body: Any, timeout_s: float) -> Any:
    entry = builders.entry(spec)
    if entry is None:
        fail(f"{spec.path} declares no topology to submit a task to; use --workflow NAME")
    task = cluster.submit(entry["type"], body, capabilities=entry.get("capabilities") or (),
                          agent=entry.get("agent"), timeout_s=timeout_s, max_retries=1)  # fmt: skip
    try:
        if sys.stderr.isatty():
            follow_task(task, timeout_s + 5)
        return task.result(timeout_s=timeout_s + 5)
    except _Interrupted:
        with contextlib.suppress(MacpError):
            task.cancel()
        raise


class _Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; raised in the main thread, wherever it waits."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, _frame: object) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # stopping the nodes is not interrupted again
        signal.signal(sig, signal.SIG_IGN)
    raise _Interrupted(signum)


def _print(value: Any) -> None:
    indent = 2 if sys.stdout.isatty() else None
    typer.echo(json.dumps(value, sort_keys=True, indent=indent, default=str))


def validate(file: File) -> None:
    """Check a topology file; print a summary, or every error (exit 1)."""
    typer.echo(summary(_spec(file)))


def up(
    file: File,
    task: Annotated[str | None, typer.Option(help="A task (JSON) to run, then stop.")] = None,
    task_file: Annotated[Path | None, typer.Option(help="A file holding the task (JSON).")] = None,
    timeout_s: Annotated[float, typer.Option(help="How long the task may take.")] = 300.0,
    verbose: Annotated[bool, typer.Option(help="Show the nodes' info logs.")] = False,
    log_json: Annotated[bool, typer.Option("--log-json")] = False,
) -> None:
    """Start every node of FILE on this host (one process each) and wait until all agents
    are registered; with --task, run it, print the result and stop; else run until Ctrl-C."""
    configure_logging(json=True if log_json else None, level="warning")
    spec = _spec(file)
    body = _task_body(task, task_file)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    processes: list[NodeChild] = []
    code = 0
    try:
        addresses = start_all(spec, "info" if verbose else "warning", processes)
        with macp.connect(addresses[spec.head.name]) as cluster:
            _wait_registered(cluster, spec, 60.0)
            if task is not None or task_file is not None:
                _print(_submit(cluster, spec, body, timeout_s))
                return
            typer.echo(_up_line(spec, addresses[spec.head.name], processes), err=True)
            idle = threading.Event()  # never set: the loop wakes to check the nodes
            while not any(p.proc.poll() is not None for p in processes):
                idle.wait(0.2)
            typer.echo("error: a node stopped; stopping the others", err=True)
            code = 1
    except _Interrupted as e:  # serving until a signal is the normal end; a task cut short not
        code = 0 if task is None and task_file is None else 128 + e.signum
    except MacpError as e:
        typer.echo(f"error: {type(e).__name__}: {e.message}", err=True)
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        stop_all(processes)
    raise typer.Exit(code)


def _up_line(spec: TopologySpec, head: str, processes: list[NodeChild]) -> str:
    """What ``macp up`` prints once everything is up: nodes, head, the gateway's listeners."""
    served = ""
    for process in processes:
        if process.node == GATEWAY_NODE:
            ready = process.ready_line
            kinds = ("jsonrpc", "mcp_http", "http")
            served += "".join(f", gateway {kind} at {ready[kind]}"
                              for kind in kinds if ready.get(kind))  # fmt: skip
    return f"{spec.name} is up: {len(spec.nodes)} nodes, head at {head}{served}; Ctrl-C stops it"


def run(
    file: File,
    task: Annotated[str | None, typer.Option(help="A task (JSON) for the topology.")] = None,
    task_file: Annotated[Path | None, typer.Option(help="A file holding the task (JSON).")] = None,
    workflow: Annotated[str | None, typer.Option(help="Run this workflow of FILE.")] = None,
    input: Annotated[
        str | None, typer.Option("--input", help="The workflow's input (JSON).")
    ] = None,
    connect: Connect = None,
    timeout_s: Annotated[float, typer.Option(help="How long it may take.")] = 300.0,
) -> None:
    """Submit a task (or run a workflow) on a running topology; print the result as JSON."""
    configure_logging(level="warning")
    spec = _spec(file)
    body = _task_body(task, task_file)
    given = parse_json(input, "--input") if input else None  # bad input before any wait
    with _connect(spec, connect, min(timeout_s, 10.0)) as cluster:
        try:
            if workflow is not None:
                started = cluster.run(workflow, given)
                if sys.stderr.isatty():
                    follow_run(started, timeout_s)
                _print(started.result(timeout_s=timeout_s))
            else:
                _print(_submit(cluster, spec, body, timeout_s))
        except MacpError as e:
            _failed(cluster, e)


def status(
    file: Annotated[Path | None, typer.Argument(help="The topology file.")] = None,
    connect: Connect = None,
    as_json: AsJson = False,
) -> None:
    """Nodes, agents, tasks in flight and workflows of a running topology."""
    from macp.cli._status import gather, render  # noqa: PLC0415

    configure_logging(level="warning")
    spec = _spec(file) if file is not None else None
    with _connect(spec, connect) as cluster:
        try:
            report = gather(cluster)
        except MacpError as e:
            _failed(cluster, e)
    _print(report) if as_json else render(report)


def control(
    command: Annotated[
        str,
        typer.Argument(
            help="start, stop, pause, resume, configure, status, reset or restart (handled by "
            "the agent's supervisor: it works on an agent stuck in a handler)."
        ),
    ],
    target: Annotated[str, typer.Argument(help="An agent, group:NAME, role:NAME or all.")],
    file: Annotated[Path | None, typer.Argument(help="The topology file.")] = None,
    params: Annotated[str | None, typer.Option(help="The command's params (JSON).")] = None,
    connect: Connect = None,
) -> None:
    """Send a control command to an agent, a group or every agent; print each answer."""
    configure_logging(level="warning")
    try:  # bad input before any wait
        Command.named(command)
    except ConfigError as e:
        fail(e.message)
    body = parse_json(params, "--params") if params else None
    spec = _spec(file) if file is not None else None
    with _connect(spec, connect) as cluster:
        try:
            answers = cluster.control(command, target, body)
        except MacpError as e:
            _failed(cluster, e)
    _print(answers)
    if not all(a["ok"] for a in answers.values()):
        raise typer.Exit(1)


def _failed(cluster: macp.Cluster, error: MacpError) -> NoReturn:
    """Exit 1 with one sentence about ``error`` (these commands ask the head's control plane,
    so a node down on their way is, by name, the head)."""
    if isinstance(error, NodeDown) and repr(cluster.head) in error.message:
        fail(f"the head node {cluster.head!r} is down, and with it the control plane; start it "
             "again, then retry", 1)  # fmt: skip
    fail(f"{type(error).__name__}: {error.message}", 1)


def register(app: typer.Typer) -> None:
    """Add the topology commands to ``app``."""
    for command in (validate, up, run, status, control):
        app.command()(command)


def _connect(
    spec: TopologySpec | None, connect: str | None, timeout_s: float = 10.0
) -> macp.Cluster:
    address = connect
    keys = os.environ.get("MACP_KEYS")
    if address is None and spec is not None:
        address = spec.head.listen if keys is None else f"{spec.head.name}={spec.head.listen}"
        if address.endswith(":0"):
            fail(f"the head's address in {spec.path} has port 0 (chosen by `macp up`); "
                 "pass --connect ADDRESS")  # fmt: skip
    if address is None:
        fail("give the topology file or --connect ADDRESS")
    try:
        return macp.connect(address, keys=keys, timeout_s=timeout_s)
    except ConfigError as e:  # a malformed address or keys directory: bad input
        fail(e.message)
    except MacpError as e:
        fail(e.message, 1)
