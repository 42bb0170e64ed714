"""``macp status``: what a running topology is doing, as JSON or as tables."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from macp.errors import MacpError

if TYPE_CHECKING:
    from macp.cluster import Cluster

__all__ = ["gather", "render"]

_ACTIVE = ["pending", "assigned", "running", "retrying"]
_DEAD_LETTERS_SHOWN = 5


def gather(cluster: Cluster) -> dict[str, Any]:
    """Nodes (state, uptime), agents (status, load, tasks done and failed: the journal's
    counts), tasks in flight (a pending one with its ``wait``: why), workflow runs, and the
    journal's dead letters (a count and the newest few)."""
    node = cluster.node
    head = node.ask_node("*", "node.info", timeout_s=cluster.timeout_s).get()
    nodes = [{"name": head["name"], "state": "up", "address": head["address"],
              "uptime_s": head["uptime_s"]}]  # fmt: skip
    for name, peer in sorted(head["peers"].items()):
        entry = {"name": name, "state": peer["state"], "address": peer["address"], "uptime_s": None}
        if peer["state"] == "up":
            try:
                entry["uptime_s"] = node.ask_node(name, "node.info", timeout_s=2).get()["uptime_s"]
            except MacpError:
                entry["state"] = "unreachable"
        nodes.append(entry)
    agents = [{  # the counts are the journal's: the same after a restart of the head
        "address": r["address"], "status": r["status"], "load": r["load"], "role": r["role"],
        "group": r["group"], "done": r["succeeded"], "failed": r["failed"],
    } for r in cluster.agents()]  # fmt: skip
    runs = cluster.runs()
    return {
        "nodes": nodes,
        "agents": agents,
        "tasks": cluster.tasks(states=_ACTIVE),
        "workflows": [
            _waiting_steps(cluster, r) for r in runs["runs"] if r["state"] in {"running", "paused"}
        ],
        "workflow_definitions": runs["definitions"],
        "dead_letters": cluster.dead_letters(limit=_DEAD_LETTERS_SHOWN),
    }


def _waiting_steps(cluster: Cluster, run: dict[str, Any]) -> dict[str, Any]:
    """``run`` with ``waiting``: each of its steps that waits, and why (``{step: wait}``: a
    step whose task waits for an agent, or that waits for a lease of an exhausted pool)."""
    try:
        steps = cluster.run_status(run["id"])["steps"]
    except MacpError:  # ended and gone meanwhile: nothing waits
        steps = {}
    waits = {
        name: step["wait"] for name, step in steps.items() if isinstance(step.get("wait"), dict)
    }
    return {**run, "waiting": waits}


def render(report: dict[str, Any]) -> None:
    """Tables on a terminal (rich), plain columns otherwise."""
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 120)
    sections = [
        ("nodes", ["name", "state", "address", "uptime_s"]),
        ("agents", ["address", "status", "load", "done", "failed", "role", "group"]),
        (
            "tasks",
            ["id", "type", "state", "attempts", "node_failures", "agent", "progress", "waiting"],
        ),
        ("workflows", ["id", "workflow", "state", "waiting"]),
    ]
    for title, columns in sections:
        table = Table(title=f"{title} ({len(report[title])})", title_justify="left")
        for column in columns:
            table.add_column(column, overflow="fold")
        for given in report[title]:
            row = dict(given)
            if isinstance(row.get("wait"), dict):  # why a pending task waits
                row["waiting"] = f"{row['wait']['code']}: {row['wait']['reason']}"
            elif isinstance(row.get("waiting"), dict):  # a run's steps that wait, and why
                row["waiting"] = (
                    "; ".join(
                        f"{step}: {wait['code']}: {wait['reason']}"
                        for step, wait in row["waiting"].items()
                    )
                    or None
                )
            table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
        console.print(table)
    letters = report["dead_letters"]
    if letters["count"]:  # shown only when there are any
        title = (
            f"dead letters ({letters['count']}; journal records set aside, not replayed; "
            f"the newest {len(letters['newest'])})"
        )
        table = Table(title=title, title_justify="left")
        for column in ("source", "key", "time", "reason"):
            table.add_column(column, overflow="fold")
        for letter in letters["newest"]:
            when = datetime.fromtimestamp(letter["time_ms"] / 1000, UTC)
            table.add_row(letter["source"], letter["key"], f"{when:%Y-%m-%d %H:%M:%S}Z",
                          letter["reason"])  # fmt: skip
        console.print(table)
