"""Teams of agents through the :class:`~macp.Cluster`: ``cluster.sessions``,
``cluster.projects`` and ``cluster.goals`` (the head's ``sessions`` and ``projects`` actors,
:mod:`macp.actors.teams`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from macp.actors.teams.assist import DEFAULT_TIMEOUT_S
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
    SESSION_ASSIST,
    SESSION_CLOSE,
    SESSION_CREATE,
    SESSION_JOIN,
    SESSION_LEAVE,
    SESSION_LIST,
    SESSION_MESSAGES,
    SESSION_SEND,
    SESSION_STATUS,
    SESSIONS,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from macp.envelope import Wire
    from macp.futures import AskFuture

__all__ = ["Goals", "Projects", "Sessions"]

_ASSIST_MARGIN_S = 5.0  # the sessions actor answers a timeout itself, this long before


class Cluster(Protocol):
    """What these need of a :class:`~macp.Cluster`."""

    def request(
        self, actor: str, type: str, body: Wire = None, *, timeout_s: float | None = None
    ) -> AskFuture: ...

    def read(
        self, actor: str, type: str, body: Wire = None, *, timeout_s: float | None = None
    ) -> Any: ...


def _given(**fields: Any) -> dict[str, Wire]:
    return {k: v for k, v in fields.items() if v is not None}


class Sessions:
    """Collaboration sessions (``cluster.sessions``): groups of agents with a coordinator.

    Every method raises :class:`~macp.errors.InvalidParams` with one sentence for bad input
    (an unknown session is :class:`~macp.errors.NotFound`, one of them).
    """

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def _write(self, type_: str, body: dict[str, Wire], timeout_s: float | None = None) -> Any:
        return self._cluster.request(SESSIONS, type_, body, timeout_s=timeout_s).get()

    def create(
        self,
        title: str,
        participants: Sequence[str],
        coordinator: str,
        *,
        description: str = "",
    ) -> dict[str, Any]:
        """Open a session of ``participants`` (registered agent addresses) led by
        ``coordinator`` (a participant too); the session, with its ``session_id``."""
        body: dict[str, Wire] = {"title": title, "description": description,
                                 "participants": list(participants),
                                 "coordinator": coordinator}  # fmt: skip
        return dict(self._write(SESSION_CREATE, body))

    def join(self, session_id: str, agent: str) -> dict[str, Any]:
        return dict(self._write(SESSION_JOIN, {"session_id": session_id, "agent": agent}))

    def leave(self, session_id: str, agent: str) -> dict[str, Any]:
        return dict(self._write(SESSION_LEAVE, {"session_id": session_id, "agent": agent}))

    def send(
        self, session_id: str, sender: str, body: Wire, *, to: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Log a participant's message and tell it to the others (or to ``to``); answers
        ``{seq, delivered, unhandled, offline}`` (see :mod:`macp.actors.teams.sessions`)."""
        message = _given(session_id=session_id, sender=sender, to=None if to is None else list(to))
        return dict(self._write(SESSION_SEND, {**message, "body": body}))

    def messages(self, session_id: str, *, after_seq: int = 0, limit: int = 100) -> list[Any]:
        """The session's logged messages numbered above ``after_seq``, oldest first."""
        body: dict[str, Wire] = {"session_id": session_id, "after_seq": after_seq, "limit": limit}
        return list(self._cluster.read(SESSIONS, SESSION_MESSAGES, body)["messages"])

    def close(self, session_id: str) -> dict[str, Any]:
        return dict(self._write(SESSION_CLOSE, {"session_id": session_id}))

    def status(self, session_id: str) -> dict[str, Any]:
        """The session: its participants (``status`` active, offline or left), who is
        ``offline``, its state (open or closed) and the presence events."""
        return dict(self._cluster.read(SESSIONS, SESSION_STATUS, {"session_id": session_id}))

    def list(self, state: str | None = None) -> list[dict[str, Any]]:
        return list(self._cluster.read(SESSIONS, SESSION_LIST, _given(state=state)))

    def request_assistance(
        self,
        capabilities: Sequence[str],
        body: Wire = None,
        *,
        type: str | None = None,
        urgency: str = "normal",
        session_id: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        requester: str | None = None,
    ) -> dict[str, Any]:
        """Have an agent with ``capabilities`` handle ``body`` as ``type`` (default: the first
        capability): a session participant first, else anyone; a task of the coordinator at
        the priority ``urgency`` maps to (low 0, normal 1, high 2, critical 3).

        Returns:
            ``{helper, task_id, answer, priority, urgency, session_id, from_session}``.

        Raises:
            ResourceUnavailable: no agent (but ``requester``) has the capabilities.
            AskTimeout: no answer within ``timeout_s`` (``data["task_id"]`` follows the task).
            MacpError: the task's own error, when it failed.
        """
        request = _given(capabilities=list(capabilities), type=type, urgency=urgency,
                         session_id=session_id, timeout_s=timeout_s,
                         requester=requester)  # fmt: skip
        wait_s = timeout_s + _ASSIST_MARGIN_S
        return dict(self._write(SESSION_ASSIST, {**request, "body": body}, timeout_s=wait_s))


class Projects:
    """Projects (``cluster.projects``): a lead agent, a status, and goals."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def create(
        self, name: str, lead: str, *, description: str = "", status: str = "planned"
    ) -> dict[str, Any]:
        """A new project (``status``: planned, active, on_hold, completed or cancelled)."""
        body = {"name": name, "lead": lead, "description": description, "status": status}
        return dict(self._cluster.request(PROJECTS, PROJECT_CREATE, body).get())

    def update(self, project_id: str, **changes: Wire) -> dict[str, Any]:
        """Change a project's ``name``, ``description``, ``lead`` or ``status``."""
        body = {**changes, "project_id": project_id}
        return dict(self._cluster.request(PROJECTS, PROJECT_UPDATE, body).get())

    def list(self, status: str | None = None) -> list[dict[str, Any]]:
        return list(self._cluster.read(PROJECTS, PROJECT_LIST, _given(status=status)))

    def status(self, project_id: str) -> dict[str, Any]:
        """The project, its goals each with its ``progress`` and ``derived`` state, and the
        project's own (see :mod:`macp.actors.teams.work` for the rule)."""
        body = {"project_id": project_id}
        return dict(self._cluster.read(PROJECTS, PROJECT_STATUS, body))


class Goals:
    """Goals of projects (``cluster.goals``), their progress derived from the linked work."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def create(
        self, project_id: str, title: str, *, description: str = "", status: str = "planned"
    ) -> dict[str, Any]:
        body = {"project_id": project_id, "title": title, "description": description,
                "status": status}  # fmt: skip
        return dict(self._cluster.request(PROJECTS, GOAL_CREATE, body).get())

    def link(
        self,
        goal_id: str,
        *,
        task_id: str | None = None,
        run_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """Link one task, workflow run or session (it must exist) to the goal."""
        body = {"goal_id": goal_id, **_given(task_id=task_id, run_id=run_id,
                                              session_id=session_id)}  # fmt: skip
        return dict(self._cluster.request(PROJECTS, GOAL_LINK, body).get())

    def update(self, goal_id: str, **changes: Wire) -> dict[str, Any]:
        """Change a goal's ``title``, ``description`` or ``status``."""
        body = {**changes, "goal_id": goal_id}
        return dict(self._cluster.request(PROJECTS, GOAL_UPDATE, body).get())

    def list(self, project_id: str | None = None) -> list[dict[str, Any]]:
        body = _given(project_id=project_id)
        return list(self._cluster.read(PROJECTS, GOAL_LIST, body))

    def status(self, goal_id: str) -> dict[str, Any]:
        """The goal, each linked item as read now, its ``progress`` and ``derived`` state."""
        return dict(self._cluster.read(PROJECTS, GOAL_STATUS, {"goal_id": goal_id}))
