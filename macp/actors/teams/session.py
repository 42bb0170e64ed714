"""A collaboration session as the sessions actor keeps it: a group of agents with a
coordinator, its participants' presence, and the transitions of both in one place.

A session is ``open`` until it is closed (``closed`` is final: no join, leave or message).
Its coordinator is a participant too. A participant is ``active``; ``offline`` while the
registry reports it offline or gone (its node died, or it stopped), ``active`` again when it
is back; ``left`` once it left (it may join again).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from macp.errors import InvalidParams

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from macp.envelope import Wire
    from macp.store import Journal

__all__ = ["Participant", "Presence", "Session", "SessionState", "stored_sessions"]


class SessionState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Presence(enum.StrEnum):
    ACTIVE = "active"
    OFFLINE = "offline"
    LEFT = "left"


@dataclass(slots=True)
class Participant:
    """One agent of a session: its presence, and since when (epoch ms)."""

    presence: Presence
    since_ms: int
    joined_ms: int

    def record(self) -> dict[str, Wire]:
        return {
            "status": self.presence.value,
            "since_ms": self.since_ms,
            "joined_ms": self.joined_ms,
        }


@dataclass(slots=True, kw_only=True)
class Session:
    """One collaboration session (the journal record's fields)."""

    id: str
    title: str
    description: str
    coordinator: str
    participants: dict[str, Participant]
    state: SessionState = SessionState.OPEN
    created_ms: int
    updated_ms: int
    closed_ms: int | None = None
    last_seq: int = 0
    offline_events: list[dict[str, Wire]] = field(default_factory=list)

    @classmethod
    def new(
        cls,
        session_id: str,
        *,
        title: str,
        description: str,
        coordinator: str,
        participants: Iterable[str],
        now_ms: int,
    ) -> Session:
        """A fresh open session; the coordinator is one of its participants."""
        members = dict.fromkeys([coordinator, *participants])
        return cls(
            id=session_id, title=title, description=description, coordinator=coordinator,
            participants={a: Participant(Presence.ACTIVE, now_ms, now_ms) for a in members},
            created_ms=now_ms, updated_ms=now_ms,
        )  # fmt: skip

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Session:
        """The session a journal record holds.

        Raises:
            KeyError, ValueError, TypeError: the record is not a session's (the caller sets
                it aside).
        """
        participants = {
            str(address): Participant(
                Presence(p["status"]), int(p["since_ms"]), int(p["joined_ms"])
            )
            for address, p in dict(record["participants"]).items()
        }
        return cls(
            id=str(record["id"]), title=str(record["title"]),
            description=str(record["description"]), coordinator=str(record["coordinator"]),
            participants=participants, state=SessionState(record["state"]),
            created_ms=int(record["created_ms"]), updated_ms=int(record["updated_ms"]),
            closed_ms=record["closed_ms"], last_seq=int(record["last_seq"]),
            offline_events=list(record.get("offline_events") or []),
        )  # fmt: skip

    def record(self) -> dict[str, Wire]:
        """The session as the journal stores it and ``session.status`` answers it."""
        return {
            "id": self.id, "session_id": self.id, "title": self.title,
            "description": self.description, "coordinator": self.coordinator,
            "participants": {a: p.record() for a, p in sorted(self.participants.items())},
            "offline": self.addresses(Presence.OFFLINE),
            "state": self.state.value, "created_ms": self.created_ms,
            "updated_ms": self.updated_ms, "closed_ms": self.closed_ms,
            "finished_ms": self.closed_ms, "last_seq": self.last_seq,
            "offline_events": list(self.offline_events),
        }  # fmt: skip

    def listed(self) -> dict[str, Wire]:
        """The session as ``session.list`` lists it."""
        return {
            "session_id": self.id, "title": self.title, "coordinator": self.coordinator,
            "state": self.state.value, "participants": len(self.addresses(Presence.ACTIVE)),
            "offline": self.addresses(Presence.OFFLINE), "last_seq": self.last_seq,
            "created_ms": self.created_ms,
        }  # fmt: skip

    def addresses(self, *presences: Presence) -> list[str]:
        """The participants with one of ``presences`` (every one if none given), sorted."""
        return sorted(
            a for a, p in self.participants.items() if not presences or p.presence in presences
        )

    # -- transitions --------------------------------------------------------------------------

    def _open(self, what: str) -> None:
        if self.state is not SessionState.OPEN:
            raise InvalidParams(
                f"session {self.id} is closed: it takes no {what}; create a new session"
            )

    def join(self, agent: str, now_ms: int) -> None:
        """``agent`` joins (again); already active, nothing changes."""
        self._open("new participant")
        member = self.participants.get(agent)
        if member is None or member.presence is Presence.LEFT:
            self.participants[agent] = Participant(Presence.ACTIVE, now_ms, now_ms)
            self.updated_ms = now_ms

    def leave(self, agent: str, now_ms: int) -> None:
        """``agent`` leaves.

        Raises:
            InvalidParams: it is not a participant, or it is the session's coordinator.
        """
        self._open("leave")
        self.member(agent)
        if agent == self.coordinator:
            raise InvalidParams(
                f"{agent} coordinates session {self.id} and cannot leave it; close the session"
            )
        self.participants[agent] = Participant(
            Presence.LEFT, now_ms, self.participants[agent].joined_ms
        )
        self.updated_ms = now_ms

    def member(self, agent: str, role: str = "agent") -> Participant:
        """``agent``'s participation (left or not).

        Raises:
            InvalidParams: ``agent`` is not a participant (or has left).
        """
        member = self.participants.get(agent)
        if member is None or member.presence is Presence.LEFT:
            raise InvalidParams(
                f"{role} {agent!r} is not a participant of session {self.id} "
                f"(participants: {', '.join(self.addresses(Presence.ACTIVE, Presence.OFFLINE))}); "
                "join_session first"
            )
        return member

    def recipients(self, sender: str, to: object) -> list[str]:
        """Who a message of ``sender`` is for: ``to`` (participants), or every other one.

        Raises:
            InvalidParams: ``to`` is not a non-empty list of participants.
        """
        if to is None:
            return [a for a in self.addresses(Presence.ACTIVE, Presence.OFFLINE) if a != sender]
        if not isinstance(to, list) or not to or not all(isinstance(a, str) for a in to):
            raise InvalidParams(
                "session.send 'to' must be a non-empty list of participant addresses, "
                f"or left out for every participant; not {to!r:.60}"
            )
        for address in to:
            self.member(address, "recipient")
        return sorted(set(to))

    def mark(self, agent: str, presence: Presence, now_ms: int, why: str) -> bool:
        """Set an active or offline participant's presence; whether it changed."""
        member = self.participants.get(agent)
        if (
            self.state is not SessionState.OPEN
            or member is None
            or member.presence in (Presence.LEFT, presence)
        ):
            return False
        member.presence, member.since_ms = presence, now_ms
        self.updated_ms = now_ms
        self.offline_events.append(
            {"agent": agent, "status": presence.value, "ts_ms": now_ms, "why": why}
        )
        del self.offline_events[:-_EVENTS_KEPT]
        return True

    def next_seq(self, now_ms: int) -> int:
        self._open("message")
        self.last_seq += 1
        self.updated_ms = now_ms
        return self.last_seq

    def close(self, now_ms: int) -> bool:
        """Close the session; ``False`` if it was closed already."""
        if self.state is SessionState.CLOSED:
            return False
        self.state, self.closed_ms, self.updated_ms = SessionState.CLOSED, now_ms, now_ms
        return True


_EVENTS_KEPT = 50


def stored_sessions(journal: Journal) -> dict[str, Session]:
    """The sessions the journal holds by id; a record that is not a session's is set aside."""
    found = {}
    for record in journal.sessions():
        try:
            session = Session.from_record(record)
        except (KeyError, ValueError, TypeError) as e:
            journal.set_aside("sessions", (str(record.get("id")),), f"not a session: {e}")
            continue
        found[session.id] = session
    return found
