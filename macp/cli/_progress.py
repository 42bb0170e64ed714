"""A live display of long work on a terminal: a task or a workflow run, until it ends.

``macp up --task``, ``macp run --task`` and ``macp run --workflow`` show it on standard error
when that is a terminal (and say nothing there when it is piped, so the JSON result on
standard output is all a script reads). One line, redrawn a few times a second by rich: what
runs and its state, a bar of the parts done of the total (a run's steps; a task's subtasks
when it has any, else its reported progress in percent), the time elapsed, and what it is on
now (the running steps, or the task's own progress message).

It follows by asking the coordinator for the status four times a second: what it reads is
what ``macp task ID`` / ``macp run-status ID`` print, and a display that falls behind or a
status that fails for a moment costs only a frame.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Final

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from macp.errors import MacpError

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.cluster import Run, Task

__all__ = ["POLL_S", "follow_run", "follow_task"]

POLL_S: Final = 0.25
"""Seconds between two reads of the status."""
_STEP_ENDED: Final = frozenset({"succeeded", "failed", "skipped", "replaced", "cancelled"})
_ENDED: Final = frozenset({"succeeded", "failed", "cancelled"})
_TASK_ENDED: Final = _ENDED


class _Frame:
    """What one line shows: filled from a status by a task's or a run's reader."""

    __slots__ = ("current", "description", "done", "ended", "total")

    def __init__(self) -> None:
        self.description = ""
        self.done = 0
        self.total = 0
        self.current = ""
        self.ended = False


def _task_frame(status: dict[str, Any]) -> _Frame:
    frame = _Frame()
    state = str(status.get("state", "?"))
    frame.description = f"task {status.get('type', '?')} {state}"
    children = status.get("children")
    if isinstance(children, list) and children:
        frame.total = len(children)
        frame.done = sum(1 for c in children if isinstance(c, dict) and c.get("state") in _ENDED)
        frame.description += " (subtasks)"
    else:
        frame.total = 100
        frame.done = round(100 * float(status.get("progress") or 0.0))
    if state == "succeeded":
        frame.done = frame.total
    message = status.get("progress_message") or ""
    wait = status.get("wait")
    if state == "pending" and isinstance(wait, dict):
        message = str(wait.get("reason", message))
    elif state == "pending" and status.get("wait_reason"):
        message = str(status["wait_reason"])
    frame.current = str(message)
    frame.ended = state in _TASK_ENDED
    return frame


def _run_frame(status: dict[str, Any]) -> _Frame:
    frame = _Frame()
    steps: dict[str, Any] = status.get("steps") or {}
    state = str(status.get("state", "?"))
    frame.description = f"workflow {status.get('workflow', '?')} {state}"
    frame.total = len(steps)
    frame.done = sum(1 for s in steps.values() if s.get("state") in _STEP_ENDED)
    running = sorted(name for name, s in steps.items() if s.get("state") == "running")
    frame.current = f"running {', '.join(running)}" if running else ""
    frame.ended = state in _ENDED
    return frame


def _follow(read: Callable[[], dict[str, Any]], frame_of: Callable[[dict[str, Any]], _Frame],
            timeout_s: float, console: Console | None) -> None:  # fmt: skip
    console = console or Console(stderr=True)
    columns = (
        SpinnerColumn(finished_text="[green]done[/]"),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[current]}"),
    )
    deadline = time.monotonic() + timeout_s
    idle = threading.Event()  # never set: the loop wakes to read the status again
    with Progress(*columns, console=console, refresh_per_second=8) as progress:
        line = progress.add_task("starting", total=None, current="")
        while time.monotonic() < deadline:
            try:
                frame = frame_of(read())
            except MacpError:  # the head restarting, a lost answer: the next read may do
                idle.wait(POLL_S)
                continue
            progress.update(line, description=frame.description, completed=frame.done,
                            total=frame.total or None, current=frame.current)  # fmt: skip
            if frame.ended:
                progress.stop_task(line)
                break
            idle.wait(POLL_S)


def follow_task(task: Task, timeout_s: float, console: Console | None = None) -> None:
    """Show ``task`` until it ends (or ``timeout_s`` passes); once it has delegated subtasks
    (a hub's parts), the bar counts them."""

    def read() -> dict[str, Any]:
        return {**task.status(), "children": task.children()}

    _follow(read, _task_frame, timeout_s, console)


def follow_run(run: Run, timeout_s: float, console: Console | None = None) -> None:
    """Show ``run`` until it ends (or ``timeout_s`` passes)."""
    _follow(run.status, _run_frame, timeout_s, console)
