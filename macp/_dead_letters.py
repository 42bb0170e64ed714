"""The journal's dead letters: rows that cannot be read back, set aside instead of replayed.

A reader of the journal checks every row as it reads it. A row that cannot be read back as
what it should hold (a blob that is not msgpack, a column of the wrong type: a file damaged,
or edited by hand), or that an actor cannot replay (see
:mod:`macp.actors.coordinator.records`), is moved by :meth:`DeadLetters.set_aside` to the
``dead_letters`` table, with its source table, its key, what it held (the blob as stored, or
its columns as SQL literals), the reason and the time, and logged once at warning
(``journal.record_set_aside``): the row is gone from its table, so it is never read, replayed
or logged again. A reader never fails on one bad row, so an actor replaying the journal never
crash-loops on it.

Retention: the newest :data:`DEAD_LETTERS_KEPT` dead letters are kept; each new one past that
deletes the oldest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, TypeVar

from macp.envelope import now_ms
from macp.envelope import unpack as unpack_envelope_data
from macp.errors import EnvelopeError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from contextlib import AbstractContextManager

__all__ = [
    "DEAD_LETTERS_KEPT",
    "DEAD_LETTER_TABLE",
    "DeadLetters",
    "Unreadable",
    "ms_column",
    "text_column",
    "unpack",
]

DEAD_LETTERS_KEPT: Final = 1000
DEAD_LETTER_TABLE: Final = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, key TEXT NOT NULL, raw BLOB,
    reason TEXT NOT NULL, time_ms INTEGER NOT NULL
)
"""
# For each table: its key columns, and what of a row the dead letters keep (the blob as it is
# stored, or the columns as SQL literals).
_SOURCES: Final = {
    "tasks": (("id",), "record"),
    "workflows": (("id",), "record"),
    "memory": (("namespace", "key"), "value"),
    "leases": (("id",), "amounts"),
    "locks": (("path",), "quote(path) || ', ' || quote(owner) || ', ' || quote(expires_at_ms)"),
    "pools": (("name",), "quote(name) || ', ' || quote(capacity)"),
    "evaluations": (("id",), "record"),
    "sessions": (("id",), "record"),
    "session_messages": (("session_id", "seq"), "record"),
    "projects": (("id",), "record"),
    "goals": (("id",), "record"),
}
_T = TypeVar("_T")


class Unreadable(Exception):
    """A stored row that cannot be read back as what it should hold; ``reason`` says why.

    Raised by the row readers and caught by :meth:`DeadLetters._readable`, which sets the row
    aside; it never reaches a caller of the journal.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def unpack(data: object, column: str = "record") -> Any:
    """A stored blob as data, read as strictly as an envelope's body is.

    Raises:
        Unreadable: the blob is not one msgpack object an envelope could carry.
    """
    if not isinstance(data, bytes):
        raise Unreadable(f"its {column} is a {type(data).__name__}, not msgpack bytes")
    try:
        return unpack_envelope_data(data, max_bytes=len(data))
    except EnvelopeError as e:
        cause = e.__cause__  # msgpack's own error, when it could not decode the bytes
        detail = (
            e.message if cause is None else " ".join(f"{type(cause).__name__}: {cause}".split())
        )
        raise Unreadable(
            f"its {column} is not msgpack data an envelope could carry ({detail.rstrip(':')})"
        ) from e


def text_column(value: object, column: str) -> str:
    if not isinstance(value, str):
        raise Unreadable(f"its {column} is {value!r:.40}, not a string")
    return value


def ms_column(value: object, column: str, *, optional: bool = True) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value is None and optional:
        return None
    raise Unreadable(f"its {column} is {value!r:.40}, not epoch milliseconds")


class DeadLetters:
    """Setting rows aside, and reading the dead letters (mixed into the journal)."""

    if TYPE_CHECKING:
        _log: Any

        def _execute(self, sql: str, params: Iterable[object] = ()) -> int: ...
        def _read(self, sql: str, params: Iterable[object] = ()) -> list[Any]: ...
        def transaction(self) -> AbstractContextManager[Any]: ...

    def set_aside(self, table: str, key: Sequence[object], reason: str) -> bool:
        """Move a row that cannot be read back from ``table`` to the dead letters, with
        ``reason``, and log it (once: the row is gone from ``table`` after this).

        Args:
            table: ``tasks``, ``workflows``, ``memory``, ``leases``, ``locks``, ``pools``,
                ``sessions``, ``session_messages``, ``projects`` or ``goals``.
            key: the row's primary key as stored (``(namespace, key)`` for memory).
            reason: why it cannot be read back, in one sentence.

        Returns:
            Whether the row was there to move.
        """
        columns, raw_column = _SOURCES[table]
        where = " AND ".join(f"{c} = ?" for c in columns)
        shown = "/".join(str(k) for k in key)
        with self.transaction():
            rows = self._read(
                f"SELECT {raw_column} FROM {table} WHERE {where}",  # noqa: S608 - fixed names
                key,
            )
            if not rows:
                return False
            self._execute(f"DELETE FROM {table} WHERE {where}", key)  # noqa: S608
            self._execute(
                "INSERT INTO dead_letters (source, key, raw, reason, time_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                (table, shown, rows[0][0], reason, now_ms()),
            )
            self._execute(
                "DELETE FROM dead_letters WHERE id <= "
                "(SELECT id FROM dead_letters ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (DEAD_LETTERS_KEPT,),
            )
        self._log.warning("journal.record_set_aside", table=table, key=shown, reason=reason)
        return True

    def dead_letters(self, limit: int = 10) -> list[dict[str, Any]]:
        """The newest ``limit`` dead letters, newest first, as ``{"id", "source", "key",
        "reason", "time_ms", "size"}`` (``size``: the bytes of the row set aside)."""
        rows = self._read(
            "SELECT id, source, key, reason, time_ms, length(raw) FROM dead_letters "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        names = ("id", "source", "key", "reason", "time_ms", "size")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def dead_letter_raw(self, letter_id: int) -> object:
        """What a dead letter's row held, as stored (its blob, or its columns as JSON text)."""
        rows = self._read("SELECT raw FROM dead_letters WHERE id = ?", (letter_id,))
        return rows[0][0] if rows else None

    def dead_letter_count(self) -> int:
        """How many dead letters the journal keeps (at most :data:`DEAD_LETTERS_KEPT`)."""
        return int(self._read("SELECT count(*) FROM dead_letters")[0][0])

    def _readable(
        self, table: str, key: Sequence[object], read: Callable[..., _T], *columns: object
    ) -> _T | None:
        """``read(*columns)``, or ``None`` once the row it reads is set aside as unreadable."""
        try:
            return read(*columns)
        except Unreadable as e:
            self.set_aside(table, key, e.reason)
            return None
