"""The Projects actor: projects and their goals, journaled, with progress derived from the
work linked to each goal (the rule is in :mod:`.work`).

=================  ===========================================================  ===============
type               body                                                         reply
=================  ===========================================================  ===============
``project.create`` ``{name, description?, lead, status?}``                      the project
``project.update`` ``{project_id, name?, description?, lead?, status?}``        the project
``project.list``   ``{status?}``                                                ``[project]``
``project.status`` ``{project_id}``                                             the project,
                                                                                its goals and
                                                                                progress
``goal.create``    ``{project_id, title, description?, status?}``               the goal
``goal.link``      ``{goal_id, task_id | run_id | session_id}``                 the goal
``goal.update``    ``{goal_id, title?, description?, status?}``                 the goal
``goal.list``      ``{project_id?}``                                            ``[goal]`` with
                                                                                progress
``goal.status``    ``{goal_id}``                                                the goal, its
                                                                                items, progress
=================  ===========================================================  ===============

A status defaults to ``planned``. Linked work must exist when it is linked (the coordinator
or the sessions actor is asked). Progress is read at the time of each query: one ask per
linked item to the coordinator (``coordinator.status``, ``workflow.status``) or the sessions
actor (``session.status``), all sent at once and awaited together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from macp.actors._params import body_map, text
from macp.actors.agent import Agent, handler
from macp.actors.coordinator.messages import STATUS, WORKFLOW_STATUS
from macp.actors.registry import CONTROL_PLANE
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
    SESSION_STATUS,
    SESSIONS,
)
from macp.actors.teams.watch import check_address
from macp.actors.teams.work import (
    LINK_KINDS,
    Goal,
    Item,
    LinkKind,
    Project,
    goal_progress,
    item_progress,
    project_progress,
    work_status,
)
from macp.envelope import Wire, new_id, now_ms
from macp.errors import InternalError, InvalidParams, NotFound
from macp.store import open_journal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp.futures import AskFuture
    from macp.store import Journal

__all__ = ["Projects"]

_READ_S: Final = 5.0
_ASKS: Final = {
    LinkKind.TASK: ("coordinator", STATUS, "task_id"),
    LinkKind.RUN: ("coordinator", WORKFLOW_STATUS, "run_id"),
    LinkKind.SESSION: (SESSIONS, SESSION_STATUS, "session_id"),
}


def _optional_text(type_: str, body: dict[str, Wire], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidParams(f"{type_} '{name}' must be a string, not {value!r:.40}")
    return value


class Projects(Agent):
    """Projects and goals on the head (named ``projects``); see the module's notes.

    Config:
        journal: the journal file's path (default: the node's).

    Threading: everything runs in the actor's thread, which alone uses its journal.
    """

    capabilities = ("projects",)
    group = CONTROL_PLANE
    role = "projects"

    def __init__(self, config: Mapping[str, Wire] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._journal: Journal | None = None
        self._projects: dict[str, Project] = {}
        self._goals: dict[str, Goal] = {}

    def on_start(self) -> None:
        """Open the journal and load the projects and goals (a record that is not one is set
        aside as a dead letter)."""
        journal = self._journal = open_journal(self.config.get("journal"), self.node.name)
        for record in journal.projects():
            try:
                project = Project.from_record(record)
            except (KeyError, ValueError, TypeError) as e:
                journal.set_aside("projects", (record.get("id"),), f"not a project: {e}")
                continue
            self._projects[project.id] = project
        for record in journal.goals():
            try:
                goal = Goal.from_record(record)
            except (KeyError, ValueError, TypeError) as e:
                journal.set_aside("goals", (record.get("id"),), f"not a goal: {e}")
                continue
            self._goals[goal.id] = goal
        self.log.info("projects.loaded", projects=len(self._projects), goals=len(self._goals))

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *_exc_info: object) -> None:
        self._close()

    def _close(self) -> None:
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            raise InternalError("the projects actor has no open journal; start it first")
        return self._journal

    # -- look-ups -----------------------------------------------------------------------------

    def _project(self, type_: str, body: dict[str, Wire]) -> Project:
        project_id = text(type_, body, "project_id")
        project = self._projects.get(project_id)
        if project is None:
            raise NotFound(f"no project {project_id!r}; list_projects names the projects",
                           data={"project_id": project_id})  # fmt: skip
        return project

    def _goal(self, type_: str, body: dict[str, Wire]) -> Goal:
        goal_id = text(type_, body, "goal_id")
        goal = self._goals.get(goal_id)
        if goal is None:
            raise NotFound(f"no goal {goal_id!r}; list_goals names the goals",
                           data={"goal_id": goal_id})  # fmt: skip
        return goal

    # -- projects -----------------------------------------------------------------------------

    @handler(PROJECT_CREATE)
    def _on_create_project(self, body: Wire) -> Wire:
        got = body_map(PROJECT_CREATE, body, "{'name': 'launch', 'lead': 'lead@node'}")
        now = now_ms()
        project = Project(
            id=new_id(), name=text(PROJECT_CREATE, got, "name"),
            description=_optional_text(PROJECT_CREATE, got, "description") or "",
            lead=check_address("lead", got.get("lead")),
            status=work_status(PROJECT_CREATE, got.get("status", "planned")),
            created_ms=now, updated_ms=now,
        )  # fmt: skip
        self.journal.put_project(project.id, project.record())
        self._projects[project.id] = project
        return project.record()

    @handler(PROJECT_UPDATE)
    def _on_update_project(self, body: Wire) -> Wire:
        got = body_map(PROJECT_UPDATE, body, "{'project_id': '...', 'status': 'active'}")
        project = self._project(PROJECT_UPDATE, got)
        name = _optional_text(PROJECT_UPDATE, got, "name")
        if name == "":
            raise InvalidParams(f"{PROJECT_UPDATE} 'name' must not be empty")
        description = _optional_text(PROJECT_UPDATE, got, "description")
        lead = check_address("lead", got["lead"]) if got.get("lead") is not None else None
        status = work_status(PROJECT_UPDATE, got["status"]) if "status" in got else None
        project.name = name or project.name
        project.description = project.description if description is None else description
        project.lead = lead or project.lead
        project.status = status or project.status
        project.updated_ms = now_ms()
        self.journal.put_project(project.id, project.record())
        return project.record()

    @handler(PROJECT_LIST)
    def _on_list_projects(self, body: Wire) -> Wire:
        status = (body or {}).get("status") if isinstance(body, dict | None) else None
        wanted = None if status is None else work_status(PROJECT_LIST, status)
        found: list[Wire] = [
            p.record()
            for p in sorted(self._projects.values(), key=lambda p: (p.created_ms, p.id))
            if wanted is None or p.status is wanted
        ]
        return found

    @handler(PROJECT_STATUS)
    def _on_project_status(self, body: Wire) -> Wire:
        """The project, each of its goals with its progress, and the project's progress."""
        project = self._project(PROJECT_STATUS, body_map(PROJECT_STATUS, body, "{'project_id'}"))
        goals = self._in(project.id)
        shown = self._progress(goals)
        overall = project_progress((g.status, s) for g, s in zip(goals, shown, strict=True))
        listed = [{**g.record(), **s} for g, s in zip(goals, shown, strict=True)]
        return {**project.record(), **overall, "goals": listed}

    def _in(self, project_id: str | None) -> list[Goal]:
        return sorted(
            (g for g in self._goals.values() if project_id is None or g.project_id == project_id),
            key=lambda g: (g.created_ms, g.id),
        )

    # -- goals --------------------------------------------------------------------------------

    @handler(GOAL_CREATE)
    def _on_create_goal(self, body: Wire) -> Wire:
        got = body_map(GOAL_CREATE, body, "{'project_id': '...', 'title': 'ship it'}")
        project = self._project(GOAL_CREATE, got)
        now = now_ms()
        goal = Goal(
            id=new_id(), project_id=project.id, title=text(GOAL_CREATE, got, "title"),
            description=_optional_text(GOAL_CREATE, got, "description") or "",
            status=work_status(GOAL_CREATE, got.get("status", "planned")),
            created_ms=now, updated_ms=now,
        )  # fmt: skip
        self.journal.put_goal(goal.id, goal.record())
        self._goals[goal.id] = goal
        return goal.record()

    @handler(GOAL_UPDATE)
    def _on_update_goal(self, body: Wire) -> Wire:
        got = body_map(GOAL_UPDATE, body, "{'goal_id': '...', 'status': 'active'}")
        goal = self._goal(GOAL_UPDATE, got)
        title = _optional_text(GOAL_UPDATE, got, "title")
        if title == "":
            raise InvalidParams(f"{GOAL_UPDATE} 'title' must not be empty")
        description = _optional_text(GOAL_UPDATE, got, "description")
        status = work_status(GOAL_UPDATE, got["status"]) if "status" in got else None
        goal.title = title or goal.title
        goal.description = goal.description if description is None else description
        goal.status = status or goal.status
        goal.updated_ms = now_ms()
        self.journal.put_goal(goal.id, goal.record())
        return goal.record()

    @handler(GOAL_LINK)
    def _on_link(self, body: Wire) -> Wire:
        """Link a task, a workflow run or a session (one of them) to a goal; it must exist."""
        got = body_map(GOAL_LINK, body, "{'goal_id': '...', 'task_id': '...'}")
        goal = self._goal(GOAL_LINK, got)
        given = [name for name in LINK_KINDS if got.get(name) is not None]
        if len(given) != 1:
            raise InvalidParams(
                f"{GOAL_LINK} needs exactly one of task_id, run_id or session_id, "
                f"not {len(given)}; link each piece of work in a call of its own"
            )
        kind = LINK_KINDS[given[0]]
        work_id = text(GOAL_LINK, got, given[0])
        actor, type_, field = _ASKS[kind]
        self._ask(actor, type_, {field: work_id}).get(_READ_S)  # NotFound if it does not exist
        if goal.link(kind, work_id, now_ms()):
            self.journal.put_goal(goal.id, goal.record())
        return goal.record()

    @handler(GOAL_LIST)
    def _on_list_goals(self, body: Wire) -> Wire:
        got = body_map(GOAL_LIST, body or {}, "{'project_id': '...'}")
        project_id = None
        if got.get("project_id") is not None:
            project_id = self._project(GOAL_LIST, got).id
        goals = self._in(project_id)
        shown = self._progress(goals)
        listed: list[Wire] = [
            {**g.record(), **s, "items": len(g.links)} for g, s in zip(goals, shown, strict=True)
        ]
        return listed

    @handler(GOAL_STATUS)
    def _on_goal_status(self, body: Wire) -> Wire:
        """The goal, each linked item as read now, its progress and derived state."""
        goal = self._goal(GOAL_STATUS, body_map(GOAL_STATUS, body, "{'goal_id': '...'}"))
        items = self._items(goal.links)
        return {**goal.record(), **goal_progress(items),
                "items": [i.record() for i in items]}  # fmt: skip

    # -- reading the linked work --------------------------------------------------------------

    def _ask(self, actor: str, type_: str, body: Wire) -> AskFuture:
        return self.ask(f"{actor}@{self.node.name}", type_, body, timeout_s=_READ_S)

    def _items(self, links: list[dict[str, Wire]]) -> list[Item]:
        """Each link's work as read now: the asks are sent together, then awaited.

        Raises:
            MacpError: the coordinator or the sessions actor did not answer (restarting, say:
                ``ActorNotFound``, which a client's read sends again); nothing derived from
                a part of the work is answered.
        """
        futures = []
        for link in links:
            actor, type_, field = _ASKS[LinkKind(str(link["kind"]))]
            futures.append(self._ask(actor, type_, {field: link["id"]}))
        items = []
        for link, future in zip(links, futures, strict=True):
            try:
                found = future.get(_READ_S)
            except NotFound:  # no longer kept (the journal's retention): unknown, 0
                found = None
            kind, id_ = str(link["kind"]), str(link["id"])
            items.append(item_progress(kind, id_, found if isinstance(found, dict) else None))
        return items

    def _progress(self, goals: list[Goal]) -> list[dict[str, Wire]]:
        everything = [link for goal in goals for link in goal.links]
        items = iter(self._items(everything))
        return [goal_progress([next(items) for _ in goal.links]) for goal in goals]
