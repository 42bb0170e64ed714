"""Trees of tasks as a :class:`~macp.Cluster` sees them: the lineage fields of a submitted task
(a task submitted on a handler's thread is a child of the task that handler runs), and the
coordinator's queries of the tree (:mod:`macp.actors.coordinator.lineage`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp.actors.context import running_task
from macp.actors.coordinator import CHILDREN, LINEAGE

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.envelope import Wire

__all__ = ["children", "lineage", "lineage_spec"]


def lineage_spec(
    *,
    parent: str | None,
    delegated_by: str | None,
    run: str | None,
    deadline: float | None,
    context: Wire,
    on_child_failure: str,
    child_retries: int,
) -> dict[str, Wire]:
    """A task spec's lineage fields: ``parent`` and ``delegated_by``, when not given, are the
    task the handler on this thread runs and its agent (none outside a task's handler)."""
    running = running_task()
    if parent is None and running is not None:
        parent, delegated_by = running.task_id, delegated_by or running.agent
    return {
        "parent": parent, "delegated_by": delegated_by, "run": run, "deadline": deadline,
        "context": context, "on_child_failure": on_child_failure,
        "child_retries": child_retries,
    }  # fmt: skip


def children(read: Callable[..., Any], task_id: str) -> list[dict[str, Any]]:
    """The tasks ``task_id`` delegated, oldest first (each as a lineage lists a task)."""
    return list(read("coordinator", CHILDREN, {"task_id": task_id})["children"])


def lineage(read: Callable[..., Any], task_id: str, limit: int | None) -> dict[str, Any]:
    """``task_id``'s ancestors, descendants and contributors (``coordinator.lineage``)."""
    body: dict[str, Wire] = {"task_id": task_id, "limit": limit}
    return dict(read("coordinator", LINEAGE, body))
