"""The journal's evaluations: what agents (or people) said of agents' contributions.

Mixed into :class:`~macp.store.Journal` with the other tables. One row per evaluation, with
the columns it is found by (contributor, task, time) and its mean score beside the record, so
each contributor's score is one aggregate query when the evaluations actor starts.
Evaluations are kept (no retention): they are small, and an agent's score is derived from all
of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from macp._dead_letters import DeadLetters, Unreadable, unpack
from macp._storable import storable

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Mapping

    from macp.envelope import Wire

__all__ = ["EVALUATION_TABLE", "EvaluationTables", "add_evaluation_table"]

EVALUATION_TABLE: Final = """
CREATE TABLE IF NOT EXISTS evaluations (
    id TEXT PRIMARY KEY, contributor TEXT NOT NULL, task_id TEXT, score REAL NOT NULL,
    time_ms INTEGER NOT NULL, record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS evaluations_by_contributor ON evaluations (contributor, time_ms);
CREATE INDEX IF NOT EXISTS evaluations_by_task ON evaluations (task_id) WHERE task_id IS NOT NULL;
"""


def add_evaluation_table(conn: sqlite3.Connection) -> None:
    """The journal's migration to schema 5: the evaluations table and its indexes."""
    for statement in EVALUATION_TABLE.split(";"):
        if statement.strip():
            conn.execute(statement)


def _evaluation(blob: object) -> dict[str, Any]:
    record = unpack(blob)
    if not isinstance(record, dict) or not isinstance(record.get("contributor"), str):
        raise Unreadable("its record is not a map with a string 'contributor'")
    return record


class EvaluationTables(DeadLetters):
    """Evaluations of contributions (the evaluations actor's state)."""

    def put_evaluation(self, record: Mapping[str, Wire]) -> None:
        """Store an evaluation: ``id``, ``contributor``, ``task_id`` (or ``None``), ``score``
        (its mean) and ``time_ms`` are its columns; the whole record is kept beside them.

        Raises:
            InvalidParams: the record cannot be stored (see :func:`~macp._storable.storable`).
        """
        self._execute(
            "INSERT INTO evaluations (id, contributor, task_id, score, time_ms, record) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (record["id"], record["contributor"], record.get("task_id"), record["score"],
             record["time_ms"], storable(dict(record), "the evaluation", "evaluation")),
        )  # fmt: skip

    def evaluations(
        self, *, contributor: str | None = None, task_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` evaluations, newest first, of ``contributor`` and/or about
        ``task_id`` if given; a row that cannot be read back is set aside instead."""
        rows = self._read(
            "SELECT id, record FROM evaluations WHERE (? IS NULL OR contributor = ?) "
            "AND (? IS NULL OR task_id = ?) ORDER BY time_ms DESC, id DESC LIMIT ?",
            (contributor, contributor, task_id, task_id, limit),
        )
        found = []
        for id_, blob in rows:
            record = self._readable("evaluations", (id_,), _evaluation, blob)
            if record is not None:
                found.append(record)
        return found

    def evaluation_totals(self) -> dict[str, tuple[float, int]]:
        """Each contributor's sum of evaluation scores and count of evaluations."""
        rows = self._read(
            "SELECT contributor, total(score), count(*) FROM evaluations GROUP BY contributor"
        )
        return {str(c): (float(total), int(count)) for c, total, count in rows}
