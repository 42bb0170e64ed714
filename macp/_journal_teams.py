"""The journal's tables for teams of agents: collaboration sessions and their message logs,
projects and goals (the state of :mod:`macp.actors.teams`).

Sessions, projects and goals are records by id, stored as the coordinator's tasks are (a
msgpack map with a string ``state`` and an integer ``updated_ms``, see
:class:`~macp._journal_tables.RecordTables`). A session's messages are a log of their own,
numbered from 1 per session and bounded: :meth:`TeamTables.add_session_message` keeps the
newest ``keep`` of a session.

Schema version 6 adds these tables (:func:`add_team_tables`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from macp._dead_letters import Unreadable, unpack
from macp._journal_tables import RecordTables
from macp._storable import storable

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Mapping

    from macp.envelope import Wire

__all__ = ["TeamTables", "add_team_tables"]

_TEAM_TABLES: Final = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, updated_ms INTEGER NOT NULL, record BLOB NOT NULL,
    finished_ms INTEGER
);
CREATE TABLE IF NOT EXISTS session_messages (
    session_id TEXT NOT NULL, seq INTEGER NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, updated_ms INTEGER NOT NULL, record BLOB NOT NULL,
    finished_ms INTEGER
);
CREATE TABLE IF NOT EXISTS goals (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, updated_ms INTEGER NOT NULL, record BLOB NOT NULL,
    finished_ms INTEGER
);
"""


def add_team_tables(conn: sqlite3.Connection) -> None:
    """Schema 4: create the tables (in the migration's transaction)."""
    for statement in _TEAM_TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)


def _message(blob: object) -> dict[str, Wire]:
    record = unpack(blob)
    if not isinstance(record, dict):
        raise Unreadable(f"its record is a {type(record).__name__}, not a map")
    return record


class TeamTables(RecordTables):
    """Sessions, their messages, projects and goals."""

    def put_session(self, session_id: str, record: Mapping[str, Wire]) -> None:
        """Insert or replace a session record (it needs ``state`` and ``updated_ms``)."""
        self._put_record("sessions", session_id, record, "session")

    def sessions(self) -> list[dict[str, Wire]]:
        """Every session record, oldest update first; one that cannot be read is set aside."""
        return [record for _, record in self._records("sessions", None)]

    def put_project(self, project_id: str, record: Mapping[str, Wire]) -> None:
        """Insert or replace a project record (it needs ``state`` and ``updated_ms``)."""
        self._put_record("projects", project_id, record, "project")

    def delete_session(self, session_id: str) -> None:
        """Forget a session and its messages."""
        with self.transaction():
            self._execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            self._execute("DELETE FROM session_messages WHERE session_id = ?", (session_id,))

    def projects(self) -> list[dict[str, Wire]]:
        """Every project record, oldest update first; one that cannot be read is set aside."""
        return [record for _, record in self._records("projects", None)]

    def put_goal(self, goal_id: str, record: Mapping[str, Wire]) -> None:
        """Insert or replace a goal record (it needs ``state`` and ``updated_ms``)."""
        self._put_record("goals", goal_id, record, "goal")

    def goals(self) -> list[dict[str, Wire]]:
        """Every goal record, oldest update first; one that cannot be read is set aside."""
        return [record for _, record in self._records("goals", None)]

    def add_session_message(
        self, session_id: str, seq: int, record: Mapping[str, Wire], keep: int
    ) -> None:
        """Append message ``seq`` to a session's log and drop what is older than the newest
        ``keep`` (in one transaction).

        Raises:
            InvalidParams: ``record`` cannot be stored (named); nothing is written.
        """
        blob = storable(dict(record), "the session message", "message")
        with self.transaction():
            self._execute(
                "INSERT OR REPLACE INTO session_messages (session_id, seq, record) "
                "VALUES (?, ?, ?)",
                (session_id, seq, blob),
            )
            self._execute(
                "DELETE FROM session_messages WHERE session_id = ? AND seq <= ?",
                (session_id, seq - keep),
            )

    def session_messages(
        self, session_id: str, *, after_seq: int = 0, limit: int = 100
    ) -> list[dict[str, Wire]]:
        """A session's messages numbered above ``after_seq``, oldest first, at most ``limit``;
        one that cannot be read back is set aside instead."""
        rows = self._read(
            "SELECT seq, record FROM session_messages WHERE session_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (session_id, after_seq, limit),
        )
        found = []
        for seq, blob in rows:
            message = self._readable("session_messages", (session_id, seq), _message, blob)
            if message is not None:
                found.append(message)
        return found

    def last_session_seq(self, session_id: str) -> int:
        """The number of a session's newest message kept (0 if none)."""
        rows = self._read(
            "SELECT max(seq) FROM session_messages WHERE session_id = ?", (session_id,)
        )
        return int(rows[0][0] or 0)
