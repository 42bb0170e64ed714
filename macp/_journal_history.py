"""The journal's task history: tasks found by state, type, agent and time, and their counts.

Schema 4 gives ``tasks`` three columns beside the record, ``type``, ``agent`` (the task's
agent as its record last had it: the one that ran, or runs, its last attempt) and
``created_ms`` (``created_ms`` and ``type`` indexed), so that a query over every task the
journal keeps (the coordinator's and the finished ones kept for retention) walks the rows
newest first and stops at its limit, and counts the others in SQL: memory stays flat whatever
the journal's size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from macp._dead_letters import DeadLetters
from macp.envelope import unpack

if TYPE_CHECKING:
    import sqlite3

    from macp.envelope import Wire

__all__ = ["HistoryTables", "TaskQuery", "add_history_columns", "history_columns"]

_INDEXES: Final = """
CREATE INDEX IF NOT EXISTS tasks_by_created ON tasks (created_ms);
CREATE INDEX IF NOT EXISTS tasks_by_type ON tasks (type, created_ms)
"""
"""Keys that no write after a task's first changes, so that the coordinator's writes, several
per task, do not pay for them (an index on ``agent``, which changes as a task is assigned,
cost a third of the journal's write rate): a state or agent filter is read on the rows these
indexes find, newest first, and ``since`` uses ``tasks_by_state`` (state, updated_ms), one
range per state."""
_STATES: Final = ("pending", "assigned", "running", "retrying", "succeeded", "failed",
                  "cancelled")  # fmt: skip
_FIELDS: Final = ("type", "agent", "created_ms")
_LAST: Final = "\U0010ffff"  # sorts after any character of a node's name


def history_columns(record: Any) -> tuple[str | None, str | None, int | None]:
    """A task record's ``type``, ``agent`` and ``created_ms`` as the columns hold them."""
    type_, agent, created = (record.get(n) if isinstance(record, dict) else None for n in _FIELDS)
    return (
        type_ if isinstance(type_, str) else None,
        agent if isinstance(agent, str) else None,
        created if type(created) is int else None,
    )


def _columns(blob: object) -> str:
    """A stored record's history columns, as a JSON array (nulls for a blob that cannot be
    read: the reader sets that row aside when it meets it)."""
    try:
        record = unpack(blob, max_bytes=len(blob)) if isinstance(blob, bytes) else None
    except Exception:  # noqa: BLE001 - a migration must not stop on one bad row
        record = None
    return json.dumps(history_columns(record))


def add_history_columns(conn: sqlite3.Connection) -> None:
    """Schema 3 to 4: the ``type``, ``agent`` and ``created_ms`` columns of ``tasks``, filled
    from the stored records (each read once), and their indexes."""
    conn.create_function("macp_task_columns", 1, _columns, deterministic=True)
    for statement in (
        "ALTER TABLE tasks ADD COLUMN type TEXT",
        "ALTER TABLE tasks ADD COLUMN agent TEXT",
        "ALTER TABLE tasks ADD COLUMN created_ms INTEGER",
        (
            "UPDATE tasks SET (type, agent, created_ms) = (SELECT json_extract(c, '$[0]'), "
            "json_extract(c, '$[1]'), coalesce(json_extract(c, '$[2]'), tasks.updated_ms) "
            "FROM (SELECT macp_task_columns(record) AS c))"
        ),
        *_INDEXES.split(";"),
    ):
        conn.execute(statement)


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """Which tasks: in ``states`` (None: any), of ``type``, run by ``agent`` (an address, or a
    name: its agents on every node), updated at or after ``since_ms``; at most ``limit``."""

    states: tuple[str, ...] | None = None
    type: str | None = None
    agent: str | None = None
    since_ms: int | None = None
    limit: int = 100

    def where(self) -> tuple[str, list[object]]:
        """The SQL condition and its parameters."""
        terms, params = ["1"], list[object]()
        if self.states is not None:  # one placeholder each: SQLite then uses the state index
            terms.append(f"state IN ({', '.join('?' * len(self.states))})")
            params += self.states
        if self.type is not None:
            terms.append("type = ?")
            params.append(self.type)
        if self.agent is not None and "@" in self.agent:
            terms.append("agent = ?")
            params.append(self.agent)
        elif self.agent is not None:  # NAME@ANY_NODE
            terms.append("agent > ? AND agent < ?")
            params += [f"{self.agent}@", f"{self.agent}@{_LAST}"]
        if self.since_ms is not None:
            if self.states is None:  # every state: tasks_by_state's ranges find them
                terms.append(f"state IN ({', '.join('?' * len(_STATES))})")
                params += _STATES
            terms.append("updated_ms >= ?")
            params.append(self.since_ms)
        return " AND ".join(terms), params


class HistoryTables(DeadLetters):
    """Task history queries (mixed into the journal)."""

    if TYPE_CHECKING:

        def _records_where(
            self, table: str, where: str, params: tuple[object, ...]
        ) -> list[tuple[str, dict[str, Wire]]]: ...

    def task_page(self, query: TaskQuery, matching: int) -> list[tuple[str, dict[str, Wire]]]:
        """``(id, record)`` of the newest ``query.limit`` tasks it matches (``matching`` of
        them, :meth:`task_counts`), newest created first; a row that cannot be read back is
        set aside instead. SQLite walks an index in creation order (a type's, an agent's, or
        every task's, skipping those that do not match) and stops at the last row there is:
        a filter that matches a few recent tasks (the pending ones) reads only those."""
        if matching <= 0:
            return []
        where, params = query.where()
        order = f"{where} ORDER BY created_ms DESC, rowid DESC LIMIT ?"
        return self._records_where("tasks", order, (*params, min(query.limit, matching)))

    def task_counts(self, query: TaskQuery) -> dict[str, int]:
        """How many tasks ``query`` matches, by state (its ``limit`` aside)."""
        where, params = query.where()
        sql = f"SELECT state, count(*) FROM tasks WHERE {where} GROUP BY state"  # noqa: S608
        return {str(state): int(n) for state, n in self._read(sql, params)}

    def task_totals(self) -> dict[str, dict[str, dict[str, int]]]:
        """Every task kept, counted: ``{"types": {type: {state: n}}, "agents": {agent:
        {state: n}}}`` (tasks no agent ran are not in ``agents``)."""
        totals: dict[str, dict[str, dict[str, int]]] = {"types": {}, "agents": {}}
        for column, key in (("type", "types"), ("agent", "agents")):
            sql = (
                f"SELECT {column}, state, count(*) FROM tasks "  # noqa: S608
                f"WHERE {column} IS NOT NULL GROUP BY {column}, state"
            )
            for name, state, n in self._read(sql):
                totals[key].setdefault(str(name), {})[str(state)] = int(n)
        return totals
