"""``macp sessions``, ``macp projects`` and ``macp goals``: the collaboration sessions, projects
and goals of a running cluster (the head's ``sessions`` and ``projects`` actors), as tables
or, with ``--json``, as JSON.

Each command connects through ``--connect ADDRESS`` (any node; ``MACP_KEYS`` names the keys
directory on a secured cluster). An unknown id is one sentence and exit 1.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

import macp
from macp.cli._support import fail
from macp.errors import ConfigError, MacpError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["register_teams"]

Connect = Annotated[str, typer.Option("--connect", help="Address of any node of the cluster.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

sessions_app = typer.Typer(help="Collaboration sessions: groups of agents with a coordinator.")
projects_app = typer.Typer(help="Projects: a lead agent, a status, and goals.")
goals_app = typer.Typer(help="Goals of projects, their progress derived from the linked work.")


def _ask(connect: str, read: Callable[[macp.Cluster], Any]) -> Any:
    try:
        with macp.connect(connect, keys=os.environ.get("MACP_KEYS")) as cluster:
            return read(cluster)
    except ConfigError as e:
        fail(e.message)
    except MacpError as e:
        fail(f"{type(e).__name__}: {e.message}", 1)


def _show(value: Any, as_json: bool, columns: list[str], title: str) -> None:
    """``value`` as JSON, or its rows (a list, or ``value[title]``) as a table."""
    if as_json:
        typer.echo(json.dumps(value, sort_keys=True, indent=2 if sys.stdout.isatty() else None))
        return
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    rows = value if isinstance(value, list) else value.get(title, [])
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 120)
    if isinstance(value, dict):
        for key in sorted(k for k in value if not isinstance(value[k], dict | list)):
            console.print(f"{key}: {value[key]}")
    table = Table(title=f"{title} ({len(rows)})", title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(table)


# -- sessions -------------------------------------------------------------------------------------


@sessions_app.command("list")
def sessions_list(
    connect: Connect,
    state: Annotated[str | None, typer.Option(help="Only open or closed sessions.")] = None,
    as_json: AsJson = False,
) -> None:
    """The sessions, oldest first."""
    found = _ask(connect, lambda c: c.sessions.list(state))
    _show(found, as_json, ["session_id", "title", "coordinator", "state", "participants",
                           "offline", "last_seq"], "sessions")  # fmt: skip


@sessions_app.command("show")
def sessions_show(
    session_id: Annotated[str, typer.Argument(help="The session's id.")],
    connect: Connect,
    as_json: AsJson = False,
) -> None:
    """A session: its participants (active, offline or left) and its state."""
    found = _ask(connect, lambda c: c.sessions.status(session_id))
    rows = [{"agent": a, **p} for a, p in found["participants"].items()]
    _show({**found, "participants": rows} if not as_json else found, as_json,
          ["agent", "status", "since_ms"], "participants")  # fmt: skip


@sessions_app.command("messages")
def sessions_messages(
    session_id: Annotated[str, typer.Argument(help="The session's id.")],
    connect: Connect,
    after_seq: Annotated[int, typer.Option(help="Only the messages numbered above this.")] = 0,
    as_json: AsJson = False,
) -> None:
    """A session's logged messages, oldest first."""
    found = _ask(connect, lambda c: c.sessions.messages(session_id, after_seq=after_seq))
    _show(found, as_json, ["seq", "sender", "to", "body"], "messages")


# -- projects and goals ---------------------------------------------------------------------------


@projects_app.command("list")
def projects_list(
    connect: Connect,
    status: Annotated[str | None, typer.Option(help="Only projects with this status.")] = None,
    as_json: AsJson = False,
) -> None:
    """The projects, oldest first."""
    found = _ask(connect, lambda c: c.projects.list(status))
    _show(found, as_json, ["project_id", "name", "lead", "status"], "projects")


@projects_app.command("show")
def projects_show(
    project_id: Annotated[str, typer.Argument(help="The project's id.")],
    connect: Connect,
    as_json: AsJson = False,
) -> None:
    """A project, its goals with their progress, and its own."""
    found = _ask(connect, lambda c: c.projects.status(project_id))
    _show(found, as_json, ["goal_id", "title", "status", "progress", "derived"], "goals")


@goals_app.command("list")
def goals_list(
    connect: Connect,
    project: Annotated[str | None, typer.Option(help="Only this project's goals.")] = None,
    as_json: AsJson = False,
) -> None:
    """The goals, each with its progress derived from its linked work."""
    found = _ask(connect, lambda c: c.goals.list(project))
    _show(found, as_json, ["goal_id", "project_id", "title", "status", "progress", "derived"],
          "goals")  # fmt: skip


@goals_app.command("show")
def goals_show(
    goal_id: Annotated[str, typer.Argument(help="The goal's id.")],
    connect: Connect,
    as_json: AsJson = False,
) -> None:
    """A goal, each linked item as it is now, its progress and derived state."""
    found = _ask(connect, lambda c: c.goals.status(goal_id))
    _show(found, as_json, ["kind", "id", "state", "outcome", "progress"], "items")


def register_teams(app: typer.Typer) -> None:
    """Add ``sessions``, ``projects`` and ``goals`` to ``app``."""
    app.add_typer(sessions_app, name="sessions", no_args_is_help=True)
    app.add_typer(projects_app, name="projects", no_args_is_help=True)
    app.add_typer(goals_app, name="goals", no_args_is_help=True)
