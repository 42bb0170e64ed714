"""What :class:`~macp.cluster.Cluster` reads of the past: task history queries, counts, a run's
status, the alerts (the coordinator's answers, :mod:`macp.actors.coordinator.history`, and the
monitor's, :mod:`macp.actors.monitor`). Each function is given the cluster's read (an ask
that is safe to send again while the head restarts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp.actors.coordinator import COUNTS, TASKS, WORKFLOW_STATUS
from macp.actors.coordinator.history import MAX_LIMIT
from macp.actors.monitor import ALERT_LOG

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from macp.envelope import Wire

__all__ = ["MAX_LIMIT", "alerts", "history_query", "run_status", "task_counts", "task_history"]


def history_query(
    states: Sequence[str] | None,
    type: str | None,
    agent: str | None,
    since: float | None,
    limit: int | None,
) -> dict[str, Wire]:
    """A ``coordinator.tasks`` body; ``since`` is unix seconds, no ``states`` (or none) any."""
    listed: Wire = states if isinstance(states, str) else (list(states) if states else None)
    return {
        "states": listed, "type": type, "agent": agent,
        "since_ms": None if since is None else int(since * 1000), "limit": limit,
    }  # fmt: skip


def task_history(read: Callable[..., Any], body: dict[str, Wire]) -> dict[str, Any]:
    """``{tasks, total, counts}``: the tasks ``body`` (:func:`history_query`) matches."""
    return dict(read("coordinator", TASKS, body))


def task_counts(read: Callable[..., Any]) -> dict[str, Any]:
    """``{states, types, agents, total}``: every task the journal keeps, counted."""
    return dict(read("coordinator", COUNTS))


def run_status(read: Callable[..., Any], run_id: str) -> dict[str, Any]:
    """A workflow run's status: its state and steps (each with ``depends_on``)."""
    return dict(read("coordinator", WORKFLOW_STATUS, {"run_id": run_id}))


def alerts(read: Callable[..., Any]) -> dict[str, Any]:
    """``{active, recent}``: the alert rules firing now, and the newest transitions first."""
    return dict(read("monitor", ALERT_LOG))
