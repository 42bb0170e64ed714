"""``macp lineage ID``: a task's place in its tree (its parent and ancestors, its children and
the tasks below them) and what produced its result (every contributing agent and input)."""

from __future__ import annotations

from pathlib import Path  # noqa: TC003 - typer reads the annotations at run time
from typing import Annotated, Any

import typer

from macp.cli._support import fail
from macp.cli._topology import AsJson, Connect, _connect, _failed, _print, _spec
from macp.errors import MacpError
from macp.log import configure_logging

__all__ = ["lineage", "render", "tree_lines"]

_MOST = 10_000  # the coordinator's bound on the tasks listed below one


def lineage(
    task_id: Annotated[str, typer.Argument(help="The task's id (as submit printed it).")],
    file: Annotated[Path | None, typer.Argument(help="The topology file.")] = None,
    connect: Connect = None,
    limit: Annotated[int, typer.Option(help="List at most this many tasks below it.")] = 1000,
    as_json: AsJson = False,
) -> None:
    """A task's parent and ancestors, its children and the tasks below them, and every agent
    and input that produced its result."""
    configure_logging(level="warning")
    if not 1 <= limit <= _MOST:
        fail(f"--limit must be from 1 to {_MOST}, not {limit}")
    spec = _spec(file) if file is not None else None
    with _connect(spec, connect) as cluster:
        try:
            found = cluster.lineage(task_id, limit=limit)
        except MacpError as e:
            _failed(cluster, e)
    _print(found) if as_json else typer.echo(render(found))


def tree_lines(status: dict[str, Any]) -> list[str]:
    """What ``macp task`` shows of a task's tree: its parent, delegating agent and run, its
    ancestors up to the root, and the tree below it, indented by depth (its children are also
    a table of their own)."""
    lines = []
    if status.get("parent"):
        by = f" (delegated by {status['delegated_by']})" if status.get("delegated_by") else ""
        lines.append(f"  parent: {status['parent']}{by}")
    if status.get("run"):
        lines.append(f"  run: {status['run']}")
    ancestors = status.get("ancestors") or []
    if len(ancestors) > 1:
        lines.append(f"  ancestors: {' <- '.join(a['id'] for a in ancestors)} (the root last)")
    below = status.get("descendants") or []
    if below:
        more = " (truncated: macp lineage --limit shows more)" if status.get("truncated") else ""
        lines.append(f"  tree below ({len(below)} tasks){more}:")
        lines.extend(f"  {'  ' * d['depth']}{_line(d)}" for d in _tree_order(below, status["id"]))
    return lines


def _line(task: dict[str, Any]) -> str:
    agent = f" on {task['agent']}" if task.get("agent") else ""
    return f"{task['id']} {task['type']} {task['state']}{agent}"


def render(found: dict[str, Any]) -> str:
    """The lineage as lines of text: the task, its parent and ancestors, the tree below it
    (indented by depth), and its contributors."""
    task = found["task"]
    lines = [f"task {_line(task)}"]
    if task.get("delegated_by"):
        lines.append(f"delegated by {task['delegated_by']}")
    if task.get("run"):
        lines.append(f"run {task['run']}")
    ancestors = found["ancestors"]
    lines.append(f"parent: {_line(ancestors[0]) if ancestors else '-'}")
    if len(ancestors) > 1:
        lines.append(f"root: {_line(ancestors[-1])} ({len(ancestors)} levels up)")
    below = found["descendants"]
    children = [d for d in below if d["depth"] == 1]
    lines.append(f"children ({len(children)}), {len(below)} tasks below"
                 + (" (truncated)" if found["truncated"] else "") + ":")  # fmt: skip
    lines.extend(f"{'  ' * d['depth']}{_line(d)}" for d in _tree_order(below, task["id"]))
    contributors = found["contributors"]
    lines.append(f"contributors: {', '.join(contributors['agents']) or '-'}")
    return "\n".join(lines)


def _tree_order(below: list[dict[str, Any]], root: str) -> list[dict[str, Any]]:
    """The descendants (listed breadth first) depth first: each under its parent."""
    by_parent: dict[str, list[dict[str, Any]]] = {}
    for task in below:
        by_parent.setdefault(task["parent"], []).append(task)
    ordered: list[dict[str, Any]] = []
    stack = list(reversed(by_parent.get(root, [])))
    while stack:
        task = stack.pop()
        ordered.append(task)
        stack.extend(reversed(by_parent.get(task["id"], [])))
    return ordered
