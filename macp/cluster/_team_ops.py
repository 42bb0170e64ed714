"""The teams' operations by the gateway's names, on :class:`~macp.Cluster`: each is the method
of ``cluster.sessions``, ``cluster.projects`` or ``cluster.goals`` it names (so
``cluster.create_collaboration_session(...)`` is ``cluster.sessions.create(...)``), for a
caller who thinks in the operations' names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.cluster._teams import Goals, Projects, Sessions

__all__ = ["TeamOperations"]


class TeamOperations:
    """The operation names of sessions, projects and goals, each its sub-object's method."""

    if TYPE_CHECKING:
        sessions: Sessions
        projects: Projects
        goals: Goals

    @property
    def create_collaboration_session(self) -> Callable[..., Any]:
        return self.sessions.create

    @property
    def join_session(self) -> Callable[..., Any]:
        return self.sessions.join

    @property
    def leave_session(self) -> Callable[..., Any]:
        return self.sessions.leave

    @property
    def send_session_message(self) -> Callable[..., Any]:
        return self.sessions.send

    @property
    def session_messages(self) -> Callable[..., Any]:
        return self.sessions.messages

    @property
    def close_session(self) -> Callable[..., Any]:
        return self.sessions.close

    @property
    def session_status(self) -> Callable[..., Any]:
        return self.sessions.status

    @property
    def list_sessions(self) -> Callable[..., Any]:
        return self.sessions.list

    @property
    def request_assistance(self) -> Callable[..., Any]:
        return self.sessions.request_assistance

    @property
    def create_project(self) -> Callable[..., Any]:
        return self.projects.create

    @property
    def update_project(self) -> Callable[..., Any]:
        return self.projects.update

    @property
    def list_projects(self) -> Callable[..., Any]:
        return self.projects.list

    @property
    def project_status(self) -> Callable[..., Any]:
        return self.projects.status

    @property
    def create_goal(self) -> Callable[..., Any]:
        return self.goals.create

    @property
    def link_to_goal(self) -> Callable[..., Any]:
        return self.goals.link

    @property
    def update_goal(self) -> Callable[..., Any]:
        return self.goals.update

    @property
    def list_goals(self) -> Callable[..., Any]:
        return self.goals.list

    @property
    def goal_status(self) -> Callable[..., Any]:
        return self.goals.status
