"""The messages of the teams actors, and what is told to the agents of a session.

The sessions actor (``sessions`` on the head, :mod:`.sessions`):

=====================  ===========================================================  ===========
type                   body                                                         reply
=====================  ===========================================================  ===========
``session.create``     ``{title, description?, participants, coordinator}``         the session
``session.join``       ``{session_id, agent}``                                      the session
``session.leave``      ``{session_id, agent}``                                      the session
``session.send``       ``{session_id, sender, body, to?}``                          ``{seq,
                                                                                    delivered,
                                                                                    unhandled,
                                                                                    offline}``
``session.messages``   ``{session_id, after_seq?, limit?}``                         ``{messages,
                                                                                    last_seq}``
``session.close``      ``{session_id}``                                             the session
``session.status``     ``{session_id}``                                             the session
``session.list``       ``{state?}``                                                 ``[session]``
``session.assist``     ``{capabilities, body, type?, urgency?, session_id?,         ``{helper,
                       timeout_s?, requester?}``                                    task_id,
                                                                                    answer, ...}``
=====================  ===========================================================  ===========

Told to agents (handled by :class:`~macp.actors.teams.SessionMember`): ``session.message``
``{session_id, seq, sender, body, to, ts_ms}`` to the participants a message is for, and
``session.participant_offline`` / ``session.participant_online`` ``{session_id, agent,
status}`` to the session's coordinator agent.

The projects actor (``projects`` on the head, :mod:`.projects`): ``project.create``,
``project.update``, ``project.list``, ``project.status``; ``goal.create``, ``goal.link``,
``goal.update``, ``goal.list``, ``goal.status`` (see :mod:`.projects`).
"""

from __future__ import annotations

from typing import Final

from macp.envelope import Priority

__all__ = [
    "GOAL_CREATE", "GOAL_LINK", "GOAL_LIST", "GOAL_STATUS", "GOAL_UPDATE", "PARTICIPANT_OFFLINE",
    "PARTICIPANT_ONLINE", "PROJECTS", "PROJECT_CREATE", "PROJECT_LIST", "PROJECT_STATUS",
    "PROJECT_UPDATE", "SESSIONS", "SESSION_ASSIST", "SESSION_CLOSE", "SESSION_CREATE",
    "SESSION_JOIN", "SESSION_LEAVE", "SESSION_LIST", "SESSION_MESSAGE", "SESSION_MESSAGES",
    "SESSION_SEND", "SESSION_STATUS", "URGENCY",
]  # fmt: skip

SESSIONS: Final = "sessions"
"""The sessions actor's name on the head."""
PROJECTS: Final = "projects"
"""The projects actor's name on the head."""

SESSION_CREATE: Final = "session.create"
SESSION_JOIN: Final = "session.join"
SESSION_LEAVE: Final = "session.leave"
SESSION_SEND: Final = "session.send"
SESSION_MESSAGES: Final = "session.messages"
SESSION_CLOSE: Final = "session.close"
SESSION_STATUS: Final = "session.status"
SESSION_LIST: Final = "session.list"
SESSION_ASSIST: Final = "session.assist"

SESSION_MESSAGE: Final = "session.message"
"""Told to each participant a session message is for."""
PARTICIPANT_OFFLINE: Final = "session.participant_offline"
"""Told to a session's coordinator agent when a participant goes offline."""
PARTICIPANT_ONLINE: Final = "session.participant_online"
"""Told to a session's coordinator agent when an offline participant is back."""

PROJECT_CREATE: Final = "project.create"
PROJECT_UPDATE: Final = "project.update"
PROJECT_LIST: Final = "project.list"
PROJECT_STATUS: Final = "project.status"
GOAL_CREATE: Final = "goal.create"
GOAL_LINK: Final = "goal.link"
GOAL_UPDATE: Final = "goal.update"
GOAL_LIST: Final = "goal.list"
GOAL_STATUS: Final = "goal.status"

URGENCY: Final = {
    "low": int(Priority.LOW),
    "normal": int(Priority.MEDIUM),
    "high": int(Priority.HIGH),
    "critical": int(Priority.CRITICAL),
}
"""A request for assistance's urgency, as the priority of the task it submits (0 to 3)."""
