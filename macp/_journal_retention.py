"""The journal's retention: finished records found by their finish time, idempotency keys by
an index, and pruning in batches with the file kept compact.

Schema 3 gives ``tasks`` two indexed columns beside the record, ``key`` (the idempotency key)
and ``finished_ms`` (set once the task has finished, else null), and ``workflows`` a
``finished_ms``, so that a restarted coordinator reads only the records it keeps in memory
(the unfinished ones and the newest finished), a key is answered by an index look-up, and the
oldest finished records are found and deleted without reading the rest.

Pruning deletes at most ``limit`` rows at a time (one short transaction), oldest finish first.
The file is kept compact by SQLite's incremental vacuum: the pages freed are reused by new
rows, and only those beyond a quarter of the file are given back to the file system, a few
hundred pages at a time (see docs/design.md, "The journal").
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from macp._dead_letters import DeadLetters
from macp.envelope import unpack

if TYPE_CHECKING:
    import sqlite3

    from macp.envelope import Wire

__all__ = ["INCREMENTAL", "RetentionTables", "add_retention_columns"]

INCREMENTAL: Final = 2  # PRAGMA auto_vacuum's value for incremental vacuum

_RECORDS: Final = ("tasks", "workflows")
_FINISHED: Final = "('succeeded', 'failed', 'cancelled')"  # the final states of schema 2
_INDEXES: Final = """
CREATE INDEX IF NOT EXISTS tasks_by_key ON tasks (key) WHERE key IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (finished_ms) WHERE finished_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_unfinished ON tasks (updated_ms) WHERE finished_ms IS NULL;
CREATE INDEX IF NOT EXISTS workflows_finished ON workflows (finished_ms)
    WHERE finished_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS workflows_unfinished ON workflows (updated_ms)
    WHERE finished_ms IS NULL
"""
_FREE_SHARE: Final = 4  # free pages up to 1/4 of the file are kept, for new rows to reuse
_FREE_STEP: Final = 512  # pages given back at most at once (2 MiB: a few milliseconds)


def _idempotency_key(blob: object) -> str | None:
    """The ``idempotency_key`` of a stored task record, or None (also for a blob that cannot
    be read: the reader sets that row aside when it meets it)."""
    try:
        record = unpack(blob, max_bytes=len(blob)) if isinstance(blob, bytes) else None
    except Exception:  # noqa: BLE001 - a migration must not stop on one bad row
        return None
    key = record.get("idempotency_key") if isinstance(record, dict) else None
    return key if isinstance(key, str) else None


def add_retention_columns(conn: sqlite3.Connection) -> None:
    """Schema 2 to 3: the ``key`` and ``finished_ms`` columns, filled from what is stored (a
    finished record's last update is when it finished), and their indexes."""
    conn.create_function("macp_idempotency_key", 1, _idempotency_key, deterministic=True)
    for statement in (
        "ALTER TABLE tasks ADD COLUMN key TEXT",
        "ALTER TABLE tasks ADD COLUMN finished_ms INTEGER",
        "ALTER TABLE workflows ADD COLUMN finished_ms INTEGER",
        (
            "UPDATE tasks SET key = macp_idempotency_key(record), "  # noqa: S608
            f"finished_ms = CASE WHEN state IN {_FINISHED} THEN updated_ms END"
        ),
        f"UPDATE workflows SET finished_ms = updated_ms WHERE state IN {_FINISHED}",  # noqa: S608
        *_INDEXES.split(";"),
    ):
        conn.execute(statement)


class RetentionTables(DeadLetters):
    """Reading what a coordinator keeps in memory, keys, and pruning (mixed into the journal).

    The table names below come from the fixed literals of :data:`_RECORDS`, never a caller.
    """

    if TYPE_CHECKING:

        def _records_where(
            self, table: str, where: str, params: tuple[object, ...]
        ) -> list[tuple[str, dict[str, Wire]]]: ...
        def _script(self, sql: str) -> None: ...

    def task_by_key(self, key: str) -> tuple[str, dict[str, Wire]] | None:
        """The newest task stored with idempotency key ``key``, as ``(id, record)``; None if
        none is (never submitted, or pruned: the key has expired)."""
        found = self._records_where("tasks", "key = ? ORDER BY rowid DESC LIMIT 1", (key,))
        return found[0] if found else None

    def unfinished_entries(self, table: str) -> list[tuple[str, dict[str, Wire]]]:
        """``(id, record)`` of every row of ``table`` (tasks or workflows) not finished (for
        workflows, definitions too), oldest update first."""
        return self._records_where(table, "finished_ms IS NULL ORDER BY updated_ms, id", ())

    def newest_finished_entries(self, table: str, limit: int) -> list[tuple[str, dict[str, Wire]]]:
        """``(id, record)`` of the newest ``limit`` finished rows of ``table``, oldest first."""
        if limit <= 0:
            return []
        where = "finished_ms IS NOT NULL ORDER BY finished_ms DESC, rowid DESC LIMIT ?"
        return self._records_where(table, where, (limit,))[::-1]

    def count(self, table: str, *, finished: bool | None = None) -> int:
        """How many rows ``table`` holds: all, only the finished, or only the others."""
        where = {None: "", True: " WHERE finished_ms IS NOT NULL",
                 False: " WHERE finished_ms IS NULL"}[finished]  # fmt: skip
        return int(self._read(f"SELECT count(*) FROM {self._table(table)}{where}")[0][0])  # noqa: S608

    def prune(
        self, table: str, *, finished_before_ms: int | None, oldest: int, limit: int
    ) -> list[str]:
        """Delete at most ``limit`` finished rows of ``table``, oldest finish first: the
        ``oldest`` oldest ones, and any that finished before ``finished_before_ms`` (None: no
        such bound). The ids deleted. Cheap whatever the table's size: it reads the finish
        index from its oldest end, at most ``limit`` entries."""
        table = self._table(table)
        select = f"SELECT id FROM {table} WHERE finished_ms IS NOT NULL"  # noqa: S608
        ids: list[Any] = []
        if finished_before_ms is not None:  # a prefix of the oldest, read through the index
            sql = f"{select} AND finished_ms < ? ORDER BY finished_ms, rowid LIMIT ?"
            ids = [row[0] for row in self._read(sql, (finished_before_ms, limit))]
        if min(oldest, limit) > len(ids):  # a longer prefix
            sql = f"{select} ORDER BY finished_ms, rowid LIMIT ?"
            ids = [row[0] for row in self._read(sql, (min(oldest, limit),))]
        ids = [id_ for id_ in ids if isinstance(id_, str)]  # (a reader sets aside any other)
        if ids:
            self._execute(
                f"DELETE FROM {table} WHERE id IN (SELECT value FROM json_each(?))",  # noqa: S608
                (json.dumps(ids),),
            )
        return ids

    def release_free_pages(self) -> int:
        """Give the file system back some of the pages pruned rows freed: those beyond a
        quarter of the file, at most a few hundred at a time. How many were given back."""
        free = int(self._read("PRAGMA freelist_count")[0][0])
        pages = int(self._read("PRAGMA page_count")[0][0])
        excess = min(free - pages // _FREE_SHARE, _FREE_STEP)
        if excess <= 0 or int(self._read("PRAGMA auto_vacuum")[0][0]) != INCREMENTAL:
            return 0
        self._script(f"PRAGMA incremental_vacuum({int(excess)});")
        return free - int(self._read("PRAGMA freelist_count")[0][0])

    @staticmethod
    def _table(table: str) -> str:
        if table not in _RECORDS:
            raise ValueError(f"table must be one of {', '.join(_RECORDS)}, not {table!r}")
        return table
