"""Handles on what the control plane runs: a submitted :class:`Task` and a workflow
:class:`Run`, each its id and the ways to follow it through the cluster it came from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from macp.actors.coordinator import (
    WORKFLOW_CANCEL,
    WORKFLOW_PAUSE,
    WORKFLOW_RESULT,
    WORKFLOW_RESUME,
    WORKFLOW_STATUS,
)

if TYPE_CHECKING:
    from macp.envelope import Wire

__all__ = ["Run", "Task"]


class _Asking(Protocol):
    """What a run's handle asks of its cluster: the control plane's answers."""

    def _ask(
        self, actor: str, type: str, body: Wire = None, timeout_s: float | None = None
    ) -> Any: ...
    def _read(
        self, actor: str, type: str, body: Wire = None, timeout_s: float | None = None
    ) -> Any: ...


class _Cluster(_Asking, Protocol):
    """What a task's handle asks of its cluster (:class:`~macp.cluster.Cluster` is one)."""

    def result(self, task_id: str, *, timeout_s: float = ...) -> Any: ...
    def status(self, task_id: str) -> dict[str, Any]: ...
    def cancel(self, task_id: str) -> bool: ...
    def children(self, task_id: str) -> list[dict[str, Any]]: ...
    def lineage(self, task_id: str, *, limit: int | None = None) -> dict[str, Any]: ...


class Task:
    """A submitted task: its id, and ways to follow it."""

    __slots__ = ("_cluster", "id")

    def __init__(self, cluster: _Cluster, task_id: str) -> None:
        self._cluster = cluster
        self.id = task_id

    def __repr__(self) -> str:
        return f"Task({self.id!r})"

    def result(self, timeout_s: float = 60.0) -> Any:
        """Wait for the task to finish; its result, or its error raised as its own class.
        A restart of the head meanwhile is waited out (within ``timeout_s``)."""
        return self._cluster.result(self.id, timeout_s=timeout_s)

    def status(self) -> dict[str, Any]:
        """State, progress, attempts, agent, timings, the log, and why it waits (if it does)."""
        return self._cluster.status(self.id)

    def cancel(self) -> bool:
        """Cancel it (and its open subtasks, down its tree); ``False`` if it had finished."""
        return self._cluster.cancel(self.id)

    def children(self) -> list[dict[str, Any]]:
        """The subtasks it delegated, oldest first."""
        return self._cluster.children(self.id)

    def lineage(self, limit: int | None = None) -> dict[str, Any]:
        """Its ancestors, the tree below it, and every agent and input its result came from."""
        return self._cluster.lineage(self.id, limit=limit)


class Run:
    """A workflow run: its id, and ways to follow and steer it."""

    __slots__ = ("_cluster", "id")

    def __init__(self, cluster: _Asking, run_id: str) -> None:
        self._cluster = cluster
        self.id = run_id

    def __repr__(self) -> str:
        return f"Run({self.id!r})"

    def _ask(self, type: str, timeout_s: float | None = None) -> Any:
        return self._cluster._ask("coordinator", type, {"run_id": self.id}, timeout_s=timeout_s)

    def result(self, timeout_s: float = 120.0) -> Any:
        """Wait for the run to end: its result, or its error raised as its own class (waiting
        on across a restart of the head)."""
        body = {"run_id": self.id}
        return self._cluster._read("coordinator", WORKFLOW_RESULT, body, timeout_s=timeout_s)

    def status(self) -> dict[str, Any]:
        """The run's state, the chosen strategy (and why), and each step's state and output."""
        return dict(self._cluster._read("coordinator", WORKFLOW_STATUS, {"run_id": self.id}))

    def pause(self) -> str:
        """Start no more steps (those running finish); the run's state."""
        return str(self._ask(WORKFLOW_PAUSE)["state"])

    def resume(self) -> str:
        return str(self._ask(WORKFLOW_RESUME)["state"])

    def cancel(self) -> bool:
        """End the run: running steps are cancelled, the others never start."""
        return bool(self._ask(WORKFLOW_CANCEL)["cancelled"])
