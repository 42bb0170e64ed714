"""Projects and goals: a project has a lead agent, a status and goals; a goal links tasks,
workflow runs and sessions, and its progress is derived from them when it is read
(:mod:`macp.actors.teams.work` states the rule). Each operation is the head's ``projects``
actor's own request: every change is journaled before it is answered.

Scopes: reading projects and goals is ``tasks:read``; creating, updating and linking is
``tasks:write`` (a project is a way of organising tasks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import Field, model_validator

from macp.actors.teams.messages import (
    GOAL_CREATE,
    GOAL_LINK,
    GOAL_LIST,
    GOAL_STATUS,
    GOAL_UPDATE,
    PROJECT_CREATE,
    PROJECT_LIST,
    PROJECT_STATUS,
    PROJECT_UPDATE,
    PROJECTS,
)
from macp.gateway.ops._registry import address_of
from macp.gateway.ops._table import OPERATIONS
from macp.gateway.table import Params, Scope

if TYPE_CHECKING:
    from macp.gateway.bridge import Runtime

__all__ = [
    "GoalCreate",
    "GoalLink",
    "GoalList",
    "GoalRef",
    "GoalUpdate",
    "ProjectCreate",
    "ProjectList",
    "ProjectRef",
    "ProjectUpdate",
]

Status = Literal["planned", "active", "on_hold", "completed", "cancelled"]


class ProjectCreate(Params):
    name: str = Field(min_length=1)
    """The project's name."""
    description: str = ""
    """What it is for."""
    lead: str = Field(min_length=1)
    """The agent leading it (an address name@node, or a bare name)."""
    status: Status = "planned"
    """planned, active, on_hold, completed or cancelled."""


class ProjectRef(Params):
    project_id: str = Field(min_length=1)
    """The id create_project answered."""


class ProjectUpdate(ProjectRef):
    name: str | None = Field(None, min_length=1)
    """A new name."""
    description: str | None = None
    """A new description."""
    lead: str | None = Field(None, min_length=1)
    """A new lead agent."""
    status: Status | None = None
    """A new status."""


class ProjectList(Params):
    status: Status | None = None
    """Only the projects with this status."""


class GoalCreate(ProjectRef):
    title: str = Field(min_length=1)
    """What the goal is."""
    description: str = ""
    """More about it."""
    status: Status = "planned"
    """planned, active, on_hold, completed or cancelled."""


class GoalRef(Params):
    goal_id: str = Field(min_length=1)
    """The id create_goal answered."""


class GoalUpdate(GoalRef):
    title: str | None = Field(None, min_length=1)
    """A new title."""
    description: str | None = None
    """A new description."""
    status: Status | None = None
    """A new status."""


class GoalLink(GoalRef):
    task_id: str | None = Field(None, min_length=1)
    """A task to link (task_orchestrate's id)."""
    run_id: str | None = Field(None, min_length=1)
    """A workflow run to link (workflow_execute's id)."""
    session_id: str | None = Field(None, min_length=1)
    """A collaboration session to link."""

    @model_validator(mode="after")
    def _one(self) -> Self:
        if sum(x is not None for x in (self.task_id, self.run_id, self.session_id)) != 1:
            raise ValueError("give exactly one of task_id, run_id or session_id")
        return self


class GoalList(Params):
    project_id: str | None = Field(None, min_length=1)
    """Only this project's goals."""


def _set(p: Params, *exclude: str) -> dict[str, Any]:
    return p.model_dump(exclude_none=True, exclude=set(exclude))


@OPERATIONS.operation(
    "create_project", ProjectCreate, Scope.TASKS_WRITE,
    "Create a project with a lead agent and a status, journaled on the head.",
)  # fmt: skip
async def create_project(runtime: Runtime, p: ProjectCreate) -> dict[str, Any]:
    body = {**_set(p), "lead": await address_of(runtime, p.lead)}
    return dict(await runtime.request(PROJECTS, PROJECT_CREATE, body))


@OPERATIONS.operation(
    "update_project", ProjectUpdate, Scope.TASKS_WRITE,
    "Change a project's name, description, lead or status.",
)  # fmt: skip
async def update_project(runtime: Runtime, p: ProjectUpdate) -> dict[str, Any]:
    body = _set(p)
    if p.lead is not None:
        body["lead"] = await address_of(runtime, p.lead)
    return dict(await runtime.request(PROJECTS, PROJECT_UPDATE, body))


@OPERATIONS.operation("list_projects", ProjectList, Scope.TASKS_READ, "The projects, oldest first.")
async def list_projects(runtime: Runtime, p: ProjectList) -> dict[str, Any]:
    found = await runtime.read(PROJECTS, PROJECT_LIST, _set(p))
    return {"projects": found, "count": len(found)}


@OPERATIONS.operation(
    "project_status", ProjectRef, Scope.TASKS_READ,
    "A project, its goals with their progress, and its own progress, derived from the work.",
)  # fmt: skip
async def project_status(runtime: Runtime, p: ProjectRef) -> dict[str, Any]:
    return dict(await runtime.read(PROJECTS, PROJECT_STATUS, _set(p)))


@OPERATIONS.operation(
    "create_goal", GoalCreate, Scope.TASKS_WRITE, "Create a goal in a project, with a status."
)
async def create_goal(runtime: Runtime, p: GoalCreate) -> dict[str, Any]:
    return dict(await runtime.request(PROJECTS, GOAL_CREATE, _set(p)))


@OPERATIONS.operation(
    "link_to_goal", GoalLink, Scope.TASKS_WRITE,
    "Link a task, a workflow run or a session (it must exist) to a goal.",
)  # fmt: skip
async def link_to_goal(runtime: Runtime, p: GoalLink) -> dict[str, Any]:
    return dict(await runtime.request(PROJECTS, GOAL_LINK, _set(p)))


@OPERATIONS.operation(
    "update_goal", GoalUpdate, Scope.TASKS_WRITE, "Change a goal's title, description or status."
)
async def update_goal(runtime: Runtime, p: GoalUpdate) -> dict[str, Any]:
    return dict(await runtime.request(PROJECTS, GOAL_UPDATE, _set(p)))


@OPERATIONS.operation(
    "list_goals", GoalList, Scope.TASKS_READ,
    "The goals (of a project), each with its progress derived from its linked work.",
)  # fmt: skip
async def list_goals(runtime: Runtime, p: GoalList) -> dict[str, Any]:
    found = await runtime.read(PROJECTS, GOAL_LIST, _set(p))
    return {"goals": found, "count": len(found)}


@OPERATIONS.operation(
    "goal_status", GoalRef, Scope.TASKS_READ,
    "A goal, each linked item as it is now, and its progress and derived state.",
)  # fmt: skip
async def goal_status(runtime: Runtime, p: GoalRef) -> dict[str, Any]:
    return dict(await runtime.read(PROJECTS, GOAL_STATUS, _set(p)))
