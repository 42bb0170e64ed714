"""Projects, goals, and the rule that derives a goal's progress from its linked work.

A project (a lead agent, a status) holds goals; a goal (a status) links work: tasks,
workflow runs and collaboration sessions. Statuses are set by their callers
(:class:`WorkStatus`: planned, active, on_hold, completed, cancelled); progress is derived,
never stored, from the linked work as the coordinator and the sessions actor report it at
the time of the query:

- a task: 1.0 once it succeeded, else the progress its agent reported (``ctx.progress``);
  ``done`` when it succeeded, ``failed`` when it failed or was cancelled, ``running`` once
  assigned, else ``pending``;
- a workflow run: its steps succeeded or skipped over its steps (fallbacks on standby not
  counted), 1.0 once the run succeeded; ``done``, ``failed`` (failed or cancelled),
  ``running`` or ``pending`` as its state says;
- a session: 1.0 and ``done`` once closed, else 0.0 and ``running``;
- work the journal no longer has (pruned by retention) or that cannot be read: 0.0, ``unknown``.

A goal's ``progress`` is the mean of its items' progress (0.0 with none), and its derived
``state``: ``no_work`` (nothing linked), ``blocked`` (an item failed), ``done`` (every item
done), ``in_progress`` (an item done, running or with progress), else ``pending``. A
project's ``progress`` is the mean of its goals' (its cancelled goals left out; 0.0 with
none), and its state: ``no_goals``, ``blocked`` (a goal blocked), ``done`` (every goal done),
``in_progress`` (a goal in progress or done), else ``pending``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from macp.errors import InvalidParams

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from macp.envelope import Wire

__all__ = [
    "LINK_KINDS", "Goal", "Item", "LinkKind", "Project", "WorkStatus", "goal_progress",
    "item_progress", "project_progress", "work_status",
]  # fmt: skip


class WorkStatus(enum.StrEnum):
    """A project's or a goal's status, as its callers set it."""

    PLANNED = "planned"
    ACTIVE = "active"
    ON_HOLD = "on_hold"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class LinkKind(enum.StrEnum):
    TASK = "task"
    RUN = "run"
    SESSION = "session"


LINK_KINDS: Final = {"task_id": LinkKind.TASK, "run_id": LinkKind.RUN,
                     "session_id": LinkKind.SESSION}  # fmt: skip
"""The field of ``goal.link`` that names each kind of work."""


def work_status(what: str, value: object) -> WorkStatus:
    """``value`` as a status.

    Raises:
        InvalidParams: it is not one (the message lists them).
    """
    try:
        return WorkStatus(str(value)) if isinstance(value, str) else WorkStatus("")
    except ValueError:
        raise InvalidParams(
            f"{what} 'status' must be one of {', '.join(WorkStatus)}, not {value!r:.40}"
        ) from None


@dataclass(slots=True, kw_only=True)
class Project:
    id: str
    name: str
    description: str
    lead: str
    status: WorkStatus
    created_ms: int
    updated_ms: int

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Project:
        return cls(id=str(r["id"]), name=str(r["name"]), description=str(r["description"]),
                   lead=str(r["lead"]), status=WorkStatus(r["status"]),
                   created_ms=int(r["created_ms"]), updated_ms=int(r["updated_ms"]))  # fmt: skip

    def record(self) -> dict[str, Wire]:
        return {"id": self.id, "project_id": self.id, "name": self.name,
                "description": self.description, "lead": self.lead,
                "status": self.status.value, "state": self.status.value,
                "created_ms": self.created_ms, "updated_ms": self.updated_ms}  # fmt: skip


@dataclass(slots=True, kw_only=True)
class Goal:
    id: str
    project_id: str
    title: str
    description: str
    status: WorkStatus
    created_ms: int
    updated_ms: int
    links: list[dict[str, Wire]] = field(default_factory=list)

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Goal:
        links = [dict(link) for link in r["links"]]
        for link in links:
            LinkKind(link["kind"])
            str(link["id"])
        return cls(id=str(r["id"]), project_id=str(r["project_id"]), title=str(r["title"]),
                   description=str(r["description"]), status=WorkStatus(r["status"]),
                   created_ms=int(r["created_ms"]), updated_ms=int(r["updated_ms"]),
                   links=links)  # fmt: skip

    def record(self) -> dict[str, Wire]:
        return {"id": self.id, "goal_id": self.id, "project_id": self.project_id,
                "title": self.title, "description": self.description,
                "status": self.status.value, "state": self.status.value,
                "created_ms": self.created_ms, "updated_ms": self.updated_ms,
                "links": [dict(link) for link in self.links]}  # fmt: skip

    def link(self, kind: LinkKind, id_: str, now_ms: int) -> bool:
        """Link work; ``False`` if it was linked already."""
        if any(link["kind"] == kind.value and link["id"] == id_ for link in self.links):
            return False
        self.links.append({"kind": kind.value, "id": id_, "linked_ms": now_ms})
        self.updated_ms = now_ms
        return True


@dataclass(frozen=True, slots=True)
class Item:
    """One linked piece of work as read now."""

    kind: str
    id: str
    state: str  # the work's own state (a task's, a run's, a session's), or "unknown"
    outcome: str  # done, failed, running, pending, unknown
    progress: float

    def record(self) -> dict[str, Wire]:
        return {"kind": self.kind, "id": self.id, "state": self.state,
                "outcome": self.outcome, "progress": self.progress}  # fmt: skip


_FAILED: Final = frozenset({"failed", "cancelled"})


def _fraction(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return min(1.0, max(0.0, float(value)))


def item_progress(kind: str, id_: str, found: Mapping[str, Any] | None) -> Item:
    """What one linked piece of work counts for (``found``: its status now, or ``None``)."""
    if found is None:
        return Item(kind, id_, "unknown", "unknown", 0.0)
    state = str(found.get("state"))
    if kind == LinkKind.SESSION:
        closed = state == "closed"
        return Item(kind, id_, state, "done" if closed else "running", 1.0 if closed else 0.0)
    if kind == LinkKind.RUN:
        steps = [s for s in dict(found.get("steps") or {}).values() if isinstance(s, dict)]
        counted = [s for s in steps if s.get("state") != "standby"]
        done = sum(s.get("state") in ("succeeded", "skipped") for s in counted)
        progress = done / len(counted) if counted else 0.0
        started = any(s.get("state") != "waiting" for s in counted)
    else:
        progress = _fraction(found.get("progress"))
        started = state != "pending"
    if state == "succeeded":
        return Item(kind, id_, state, "done", 1.0)
    if state in _FAILED:
        return Item(kind, id_, state, "failed", progress)
    return Item(kind, id_, state, "running" if started or progress else "pending", progress)


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def goal_progress(items: Iterable[Item]) -> dict[str, Wire]:
    """A goal's ``{progress, derived}`` from its items (see the module's rule)."""
    listed = list(items)
    outcomes = {i.outcome for i in listed}
    if not listed:
        derived = "no_work"
    elif "failed" in outcomes:
        derived = "blocked"
    elif outcomes == {"done"}:
        derived = "done"
    elif outcomes & {"done", "running"} or any(i.progress for i in listed):
        derived = "in_progress"
    else:
        derived = "pending"
    return {"progress": _mean([i.progress for i in listed]), "derived": derived}


def project_progress(goals: Iterable[tuple[WorkStatus, Mapping[str, Any]]]) -> dict[str, Wire]:
    """A project's ``{progress, derived}`` from its goals' (status, ``goal_progress``)."""
    counted = [g for status, g in goals if status is not WorkStatus.CANCELLED]
    derived_states = {g["derived"] for g in counted}
    if not counted:
        derived = "no_goals"
    elif "blocked" in derived_states:
        derived = "blocked"
    elif derived_states == {"done"}:
        derived = "done"
    elif derived_states & {"done", "in_progress"}:
        derived = "in_progress"
    else:
        derived = "pending"
    return {"progress": _mean([float(g["progress"]) for g in counted]), "derived": derived}
