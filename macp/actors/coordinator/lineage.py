"""Trees of tasks: who delegated what to whom, what a parent's end does to its children, and
what a child's failure does to its parent; and the lineage of a result, on the coordinator's
thread, with no I/O.

A task may name a ``parent`` (a task that has not finished: a subtask is submitted while its
parent runs), the agent that delegated it (``delegated_by``), a workflow ``run`` (a step's task
has its run as ``workflow``; a subtask inherits its parent's run), a ``deadline`` (epoch
seconds) and a ``context`` for its handler (``ctx.context``). All are journaled with the task.

- **A parent's end.** A parent that is cancelled or fails cancels its open children (and so on
  down the tree), each journaled; after a restart of the head, an unfinished child whose parent
  was cancelled or failed is cancelled on replay. A parent that succeeds leaves its open
  children running (work it delegated and did not wait for).
- **A child's failure** reaches its parent by the parent's ``on_child_failure``: ``fail`` (the
  default: the parent fails with an :class:`~macp.AgentError` naming the child, if it has not
  finished), ``ignore`` (the parent goes on; a handler that waits on the child gets its error),
  or ``retry`` (the child's failed attempt, once the child would fail, resubmits it instead: the
  same task, queued again with a fresh round of its ``max_retries``, up to the parent's
  ``child_retries`` times, 2 by default; then the parent fails as with ``fail``). Either way a
  handler waiting on the child's result gets the child's error (the result it waits for raises).
- **A deadline** fails its task with :class:`~macp.AskTimeout` once passed (checked every tick
  of the coordinator, a quarter of a second), and a task past it is not retried.

The tree is known for the tasks the coordinator holds (every unfinished task, and the newest
:data:`~.table.KEPT_TASKS` finished ones); ancestors are followed into the journal too.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from macp.actors.coordinator.task import FINAL, Task, TaskState
from macp.envelope import now_ms
from macp.errors import AgentError, AskTimeout, Cancelled, InvalidParams, NotFound

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from macp.actors.coordinator.table import TaskTable
    from macp.envelope import Wire

__all__ = ["DESCENDANTS_LIMIT", "Consequence", "Lineage", "summary"]

DESCENDANTS_LIMIT: Final = 1000
"""The descendants a lineage lists by default (``limit`` up to :data:`_MOST`)."""
_MOST: Final = 10_000
_ANCESTORS: Final = 1000  # a bound on the walk up, should a journal hold a loop
_CANCELLED: Final = TaskState.CANCELLED
_FAILED: Final = TaskState.FAILED
_SUCCEEDED: Final = TaskState.SUCCEEDED
_ENDS_CHILDREN: Final = frozenset({_CANCELLED, _FAILED})

Consequence = tuple[Task, TaskState, BaseException]
"""A task to end (it has not finished yet when this is decided), how, and with what error."""


def summary(task: Task) -> dict[str, Wire]:
    """A task as a lineage lists it (its body is in ``contributors``)."""
    return {
        "id": task.id, "type": task.type, "state": task.state.value, "agent": task.agent,
        "parent": task.parent, "delegated_by": task.delegated_by,
        "run": task.workflow or task.run, "step": task.step, "deadline": task.deadline,
        "created_ms": task.created_ms, "finished_ms": task.finished_ms,
    }  # fmt: skip


class Lineage:
    """The parent/child links of the tasks a :class:`~.table.TaskTable` holds.

    Args:
        table: the tasks.
        find: a task by id, held or read from the journal (``None`` if neither has it).
        has_run: whether a workflow run of that id exists.
        clock: the time now, in epoch seconds (for deadlines).
    """

    def __init__(
        self,
        table: TaskTable,
        find: Callable[[str], Task | None],
        has_run: Callable[[str], bool],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self._find = find
        self._has_run = has_run
        self._clock = clock
        self._open: dict[str, set[str]] = {}  # parent id -> its unfinished children's ids
        self._deadlines: set[str] = set()  # unfinished tasks with a deadline

    # -- tasks coming in ----------------------------------------------------------------------

    def admit(self, task: Task) -> None:
        """Check a new task's place in its tree (its parent, its run) and hold it there; a
        subtask with no run or delegating agent of its own inherits its parent's run and has
        the parent's agent as the one that delegated it.

        Raises:
            NotFound: its parent or run is not there.
            InvalidParams: its parent has finished.
        """
        if task.run is not None and not self._has_run(task.run):
            raise NotFound(
                f"task field 'run' names no workflow run {task.run!r}; give a run id that "
                "workflow.run answered, or leave it out"
            )
        if task.parent is not None:
            parent = self._find(task.parent)
            if parent is None:
                raise NotFound(
                    f"task field 'parent' names no task {task.parent!r}; give the id of a "
                    "task that has not finished (submit answered it)"
                )
            if parent.state in FINAL:
                raise InvalidParams(
                    f"task field 'parent' is task {parent.id}, which has {parent.state.value} "
                    "already; a subtask needs a parent that has not finished"
                )
            if task.run is None and task.workflow is None:
                task.run = parent.workflow or parent.run
            if task.delegated_by is None:  # the agent running the parent delegates it
                task.delegated_by = parent.agent
        self.hold(task)

    def hold(self, task: Task) -> None:
        """Follow an unfinished task (new, or read back from the journal)."""
        if task.state in FINAL:
            return
        if task.parent is not None:
            self._open.setdefault(task.parent, set()).add(task.id)
        if task.deadline is not None:
            self._deadlines.add(task.id)

    def recovered(self, tasks: Iterable[Task]) -> list[Consequence]:
        """After a restart: follow the unfinished tasks read back; those whose parent was
        cancelled or failed meanwhile are to be cancelled."""
        ends: list[Consequence] = []
        for task in tasks:
            self.hold(task)
            parent = None if task.parent is None else self._find(task.parent)
            if parent is not None and parent.state in _ENDS_CHILDREN:
                ends.append((task, _CANCELLED, _with_parent(task, parent)))
        return ends

    # -- tasks ending -------------------------------------------------------------------------

    def ended(self, task: Task) -> list[Consequence]:
        """``task`` has just ended: its open children to cancel (it was cancelled or failed),
        and its parent to fail (it failed, and its parent's policy says so)."""
        self._deadlines.discard(task.id)
        if task.parent is not None:
            siblings = self._open.get(task.parent)
            if siblings is not None:
                siblings.discard(task.id)
                if not siblings:
                    del self._open[task.parent]
        ends: list[Consequence] = []
        if task.state in _ENDS_CHILDREN:
            for child_id in sorted(self._open.pop(task.id, ())):
                child = self.table.get(child_id)
                if child is not None and child.state not in FINAL:
                    ends.append((child, _CANCELLED, _with_parent(child, task)))
        if task.state is _FAILED and task.parent is not None:
            parent = self.table.get(task.parent)
            fails = parent is not None and parent.on_child_failure != "ignore"
            if parent is not None and fails and parent.state not in FINAL:
                ends.append((parent, _FAILED, _child_failed(parent, task)))
        return ends

    def resubmit(self, task: Task, error: BaseException) -> bool:
        """Whether ``task``, about to fail with ``error``, is resubmitted instead (its parent's
        policy is ``retry`` and has resubmits left); counted and noted if it is."""
        parent = None if task.parent is None else self.table.get(task.parent)
        if (
            parent is None
            or parent.state in FINAL
            or parent.on_child_failure != "retry"
            or task.resubmits >= parent.child_retries
            or isinstance(error, Cancelled)
            or self.past_deadline(task) is not None
        ):
            return False
        task.resubmits += 1
        task.note("resubmitted", now_ms(), by=parent.id, resubmits=task.resubmits,
                  error=f"{type(error).__name__}: {error}")  # fmt: skip
        return True

    def past_deadline(self, task: Task) -> AskTimeout | None:
        """The error ``task`` fails with if its deadline has passed; ``None`` if not."""
        if task.deadline is None or self._clock() < task.deadline:
            return None
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(task.deadline))
        return AskTimeout(
            f"task {task.id} ({task.type}) passed its deadline {when} ({task.deadline:.3f}) "
            "and is not retried",
            data={"task_id": task.id, "deadline": task.deadline},
        )

    def overdue(self) -> list[Consequence]:
        """The unfinished tasks past their deadline, each to fail."""
        ends: list[Consequence] = []
        for task_id in sorted(self._deadlines):
            task = self.table.get(task_id)
            error = None if task is None else self.past_deadline(task)
            if task is not None and error is not None and task.state not in FINAL:
                ends.append((task, _FAILED, error))
        return ends

    # -- queries ------------------------------------------------------------------------------

    def children(self, task: Task) -> dict[str, Wire]:
        """``coordinator.children``: the tasks ``task`` delegated, oldest first."""
        found = sorted((t for t in self.table if t.parent == task.id), key=_age)
        return {"task_id": task.id, "children": [summary(t) for t in found]}

    def lineage(self, task: Task, body: Wire) -> dict[str, Wire]:
        """``coordinator.lineage``: ``task``'s ancestors (its parent first, up to the root), its
        descendants (the tree below it, breadth first, each with its ``depth``, at most
        ``limit``), and what produced its result: every contributing agent and input (the
        body of the task and of each descendant that succeeded, with its agent)."""
        limit = body.get("limit", DESCENDANTS_LIMIT) if isinstance(body, dict) else None
        if limit is None:
            limit = DESCENDANTS_LIMIT
        if type(limit) is not int or not 1 <= limit <= _MOST:
            raise InvalidParams(f"'limit' must be an integer from 1 to {_MOST}, not {limit!r:.40}")
        ancestors = self._ancestors(task)
        below, truncated = self._descendants(task, limit)
        inputs = [_input(task)] + [_input(t) for t, _ in below if t.state is _SUCCEEDED]
        agents = sorted({str(i["agent"]) for i in inputs if i["agent"] is not None})
        descendants: list[Wire] = [{**summary(t), "depth": depth} for t, depth in below]
        return {
            "task": summary(task),
            "root": ancestors[-1]["id"] if ancestors else task.id,
            "ancestors": list(ancestors),
            "descendants": descendants,
            "truncated": truncated,
            "contributors": {"agents": list(agents), "inputs": list(inputs)},
        }

    def _ancestors(self, task: Task) -> list[dict[str, Wire]]:
        found: list[dict[str, Wire]] = []
        seen = {task.id}
        parent_id = task.parent
        while parent_id is not None and parent_id not in seen and len(found) < _ANCESTORS:
            parent = self._find(parent_id)
            if parent is None:  # pruned from the journal: the walk ends there
                break
            found.append(summary(parent))
            seen.add(parent_id)
            parent_id = parent.parent
        return found

    def _descendants(self, task: Task, limit: int) -> tuple[list[tuple[Task, int]], bool]:
        below: dict[str, list[Task]] = {}
        for held in self.table:
            if held.parent is not None:
                below.setdefault(held.parent, []).append(held)
        found: list[tuple[Task, int]] = []
        level, depth = [task], 0
        while level:
            depth += 1
            following = []
            for parent in level:
                for child in sorted(below.get(parent.id, ()), key=_age):
                    if len(found) == limit:
                        return found, True
                    found.append((child, depth))
                    following.append(child)
            level = following
        return found, False


def _age(task: Task) -> tuple[int, str]:
    return task.created_ms, task.id


def _input(task: Task) -> dict[str, Any]:
    return {"task_id": task.id, "type": task.type, "agent": task.agent, "body": task.body,
            "state": task.state.value}  # fmt: skip


def _with_parent(child: Task, parent: Task) -> Cancelled:
    return Cancelled(
        f"task {child.id} was cancelled with its parent {parent.id} ({parent.state.value})",
        data={"parent": parent.id},
    )


def _child_failed(parent: Task, child: Task) -> AgentError:
    message = (child.error or {}).get("message", "it failed")
    return AgentError(
        f"task {parent.id} failed because its child task {child.id} ({child.type}) failed: "
        f"{message}",
        data={"child": child.id, "child_type": child.type},
    )
