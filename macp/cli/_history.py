"""The ``macp`` commands that tell what happened: ``tasks``, ``task``, ``runs``, ``run-status``,
``alerts`` and ``agents``. Each reads a running topology (its file, or ``--connect ADDRESS``,
as ``macp status``) and prints tables, or JSON with ``--json``."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from macp.actors.coordinator.history import MAX_LIMIT
from macp.actors.coordinator.task import TaskState
from macp.actors.registry import CONTROL_PLANE
from macp.cli._lineage import tree_lines
from macp.cli._support import fail
from macp.cli._topology import AsJson, Connect, _connect, _failed, _print, _spec
from macp.errors import MacpError
from macp.log import configure_logging

if TYPE_CHECKING:
    from collections.abc import Callable

    import macp

__all__ = ["parse_since", "register"]

FileArg = Annotated[Path | None, typer.Argument(help="The topology file.")]
_STATES: Final = tuple(s.value for s in TaskState)
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION: Final = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_since(text: str, now_s: float | None = None) -> float:
    """``--since`` as unix seconds: a duration back from now (``90s``, ``10m``, ``2h``,
    ``1d``), an ISO 8601 time (UTC unless it says), or unix seconds.

    Raises:
        ValueError: none of these.
    """
    text = text.strip()
    match = _DURATION.match(text)
    if match is not None:
        now = time.time() if now_s is None else now_s
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    when = datetime.fromisoformat(text)  # ValueError if not ISO (3.11 reads a final Z)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _since(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_since(text)
    except ValueError:
        fail(
            f"--since must be a duration back from now (90s, 10m, 2h, 1d), an ISO time "
            f"(2026-01-31T12:00:00Z) or unix seconds, not {text!r}"
        )


def _when(ms: Any) -> str:
    if not isinstance(ms, int):
        return ""
    return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%d %H:%M:%S}Z"


def _why(row: dict[str, Any]) -> str:
    """Why a task waits, or why it failed."""
    wait, error = row.get("wait"), row.get("error")
    if isinstance(wait, dict):
        return f"{wait.get('code')}: {wait.get('reason')}"
    if isinstance(error, dict):
        return str(error.get("message", ""))
    return ""


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160).print(table)


def _read(file: Path | None, connect: str | None, ask: Callable[[macp.Cluster], Any]) -> Any:
    configure_logging(level="warning")
    spec = _spec(file) if file is not None else None
    with _connect(spec, connect) as cluster:
        try:
            return ask(cluster)
        except MacpError as e:
            _failed(cluster, e)


def tasks(
    file: FileArg = None,
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Only this state (repeat for several).")
    ] = None,
    type: Annotated[str | None, typer.Option("--type", help="Only this task type.")] = None,
    agent: Annotated[
        str | None, typer.Option(help="Only tasks run by this agent (NAME@NODE, or NAME).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only tasks updated since: 10m, 2h, an ISO time, epoch s.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
    connect: Connect = None,
    as_json: AsJson = False,
) -> None:
    """Tasks, newest first, with why each waits or failed (the journal's finished ones too)."""
    bad = [s for s in state or [] if s not in _STATES]
    if bad:
        fail(f"--state must be one of {', '.join(_STATES)}, not {bad[0]!r}")
    if not 1 <= limit <= MAX_LIMIT:
        fail(f"--limit must be from 1 to {MAX_LIMIT}, not {limit}")
    since_s = _since(since)
    answer = _read(file, connect, lambda c: c.task_history(
        state or None, type=type, agent=agent, since=since_s, limit=limit))  # fmt: skip
    if as_json:
        _print(answer)
        return
    counts = ", ".join(f"{k} {v}" for k, v in sorted(answer["counts"].items())) or "none"
    rows = [[t["id"], t["type"], t["state"], t["attempts"], t["agent"], _when(t["created_ms"]),
             _why(t)] for t in answer["tasks"]]  # fmt: skip
    title = f"tasks ({len(rows)} of {answer['total']}: {counts})"
    _table(title, ["id", "type", "state", "attempts", "agent", "created", "why"], rows)


_TREE_SHOWN = 200  # the most descendants ``macp task`` shows (``macp lineage --limit``: more)


def task(
    task_id: Annotated[str, typer.Argument(help="The task's id.")],
    file: FileArg = None,
    connect: Connect = None,
    as_json: AsJson = False,
) -> None:
    """One task: its attempts (agent, node, times, outcome), timings, progress, result or
    error, and why it waits."""

    def ask(c: macp.Cluster) -> dict[str, Any]:
        tree = c.lineage(task_id, limit=_TREE_SHOWN)
        return {**c.status(task_id), "children": c.children(task_id),
                **{k: tree[k] for k in ("ancestors", "descendants", "truncated")}}  # fmt: skip

    status = _read(file, connect, ask)
    if as_json:
        _print(status)
        return
    finished = _when(status["finished_ms"]) or "-"
    lines = [
        f"task {status['id']} ({status['type']}): {status['state']}",
        (f"  agent: {status.get('agent') or '-'}; attempts {status['attempts']} "
         f"(lost with a node: {status['node_failures']})"),
        (f"  created {_when(status['created_ms'])}, finished {finished}; "
         f"waited {status['wait_ms']} ms, ran {status['run_ms']} ms"),
        f"  progress: {status['progress']:.0%} {status.get('progress_message') or ''}".rstrip(),
    ]  # fmt: skip
    if "wait" in status:
        lines.append(f"  waiting ({status['wait']['code']}): {status['wait']['reason']}")
    lines.extend(tree_lines(status))
    if status["state"] == "succeeded":
        lines.append(f"  result: {json.dumps(status.get('result'), default=str)}")
    elif status.get("error"):
        lines.append(f"  error: {status['error'].get('error')}: {status['error'].get('message')}")
    typer.echo("\n".join(lines))
    rows = [[a.get("attempt"), a.get("agent"), a.get("node"), _when(a.get("assigned_ms")),
             _when(a.get("started_ms")), _when(a.get("ended_ms")), a.get("outcome"),
             (a.get("error") or {}).get("message")]
            for a in status.get("attempt_history", [])]  # fmt: skip
    columns = ["attempt", "agent", "node", "assigned", "started", "ended", "outcome", "error"]
    _table(f"attempts ({len(rows)})", columns, rows)
    children = [[c["id"], c["type"], c["state"], c.get("agent")] for c in status["children"]]
    _table(f"children ({len(children)})", ["id", "type", "state", "agent"], children)


def runs(file: FileArg = None, connect: Connect = None, as_json: AsJson = False) -> None:
    """Workflow definitions and runs, newest first."""
    listing = _read(file, connect, lambda c: c.runs())
    if as_json:
        _print(listing)
        return
    ordered = sorted(listing["runs"], key=lambda r: -r["created_ms"])
    rows = [[r["id"], r["workflow"], r["state"], _when(r["created_ms"])] for r in ordered]
    _table(f"runs ({len(rows)}; workflows: {', '.join(listing['definitions']) or 'none'})",
           ["id", "workflow", "state", "created"], rows)  # fmt: skip


def run_status(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    file: FileArg = None,
    connect: Connect = None,
    as_json: AsJson = False,
) -> None:
    """A workflow run: its state, and each step's state, dependencies and task."""
    status = _read(file, connect, lambda c: c.run_status(run_id))
    if as_json:
        _print(status)
        return
    typer.echo(f"run {status['id']} of {status['workflow']}: {status['state']} "
               f"({status['chosen']['strategy']})")  # fmt: skip
    if status.get("error"):
        typer.echo(f"  error: {status['error'].get('message')}")
    rows = [[name, s["state"], ", ".join(s.get("depends_on", [])), s.get("task_id"),
             (s.get("wait") or {}).get("reason") or (s.get("error") or {}).get("message")]
            for name, s in status["steps"].items()]  # fmt: skip
    _table(f"steps ({len(rows)})", ["step", "state", "depends on", "task", "why"], rows)


def alerts(file: FileArg = None, connect: Connect = None, as_json: AsJson = False) -> None:
    """Alerts: the rules firing now, and the recent transitions (newest first)."""
    answer = _read(file, connect, lambda c: c.alerts())
    if as_json:
        _print(answer)
        return
    active = [[a["rule"], a["metric"], f"{a['op']} {a['threshold']:g}", a.get("value")]
              for a in answer["active"]]  # fmt: skip
    _table(f"firing ({len(active)})", ["rule", "metric", "condition", "value"], active)
    recent = [[_when(a["time_ms"]), a["rule"], a["state"], a["metric"],
               f"{a['op']} {a['threshold']:g}", a.get("value")]
              for a in answer["recent"]]  # fmt: skip
    _table(f"recent ({len(recent)})", ["time", "rule", "state", "metric", "condition", "value"],
           recent)  # fmt: skip


def agents(file: FileArg = None, connect: Connect = None, as_json: AsJson = False) -> None:
    """Agents: status, load, and the tasks each succeeded and failed (from the journal)."""

    def ask(cluster: macp.Cluster) -> list[dict[str, Any]]:
        return [a for a in cluster.agents() if a.get("group") != CONTROL_PLANE]

    listed = _read(file, connect, ask)
    if as_json:
        _print(listed)
        return
    rows = [[a["address"], a["status"], a["load"], a["succeeded"], a["failed"], a.get("role"),
             a.get("group")] for a in listed]  # fmt: skip
    columns = ["address", "status", "load", "succeeded", "failed", "role", "group"]
    _table(f"agents ({len(rows)})", columns, rows)


def register(app: typer.Typer) -> None:
    """Add the history commands to ``app``."""
    app.command("tasks")(tasks)
    app.command("task")(task)
    app.command("runs")(runs)
    app.command("run-status")(run_status)
    app.command("alerts")(alerts)
    app.command("agents")(agents)
