"""What an agent needs to take part in collaboration sessions: :class:`SessionMember`."""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

from macp.actors.agent import Agent, handler
from macp.actors.teams.messages import PARTICIPANT_OFFLINE, PARTICIPANT_ONLINE, SESSION_MESSAGE

__all__ = ["SessionMember"]


class SessionMember(Agent):
    """An agent that receives session messages; subclass it instead of :class:`~macp.Agent`.

    The sessions actor sends ``session.message`` only to agents that handle it, so an agent
    that is not a ``SessionMember`` (nor handles the type itself) is a participant that
    receives nothing: its messages are still in the session's log (``session_messages``).

    By default each message is kept in :attr:`session_inbox` (the newest ``inbox_size``),
    and the coordinator agent of a session keeps the presence news of its participants in
    :attr:`participant_events`; override :meth:`on_session_message` and
    :meth:`on_participant_status` to act on them. Both run in the agent's thread.
    """

    inbox_size: ClassVar[int] = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session_inbox: deque[dict[str, Any]] = deque(maxlen=self.inbox_size)
        self.participant_events: deque[dict[str, Any]] = deque(maxlen=self.inbox_size)

    def on_session_message(self, message: dict[str, Any]) -> None:
        """A message of a session: ``{session_id, seq, sender, body, to, ts_ms}``."""
        self.session_inbox.append(message)

    def on_participant_status(self, event: dict[str, Any]) -> None:
        """A participant of a session this agent coordinates went offline or came back:
        ``{session_id, agent, status, event}`` (``event``: the message type)."""
        self.participant_events.append(event)

    @handler(SESSION_MESSAGE)
    def _session_message(self, body: Any) -> None:
        if isinstance(body, dict):
            self.on_session_message(body)

    @handler(PARTICIPANT_OFFLINE)
    def _participant_offline(self, body: Any) -> None:
        if isinstance(body, dict):
            self.on_participant_status({**body, "event": PARTICIPANT_OFFLINE})

    @handler(PARTICIPANT_ONLINE)
    def _participant_online(self, body: Any) -> None:
        if isinstance(body, dict):
            self.on_participant_status({**body, "event": PARTICIPANT_ONLINE})
