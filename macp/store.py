"""The journal: the head node's durable control-plane state, in one SQLite file.

Control-plane actors (coordinator, memory store, resource manager) write here before they
answer, so a restarted head node resumes where it stopped. Values are msgpack-native data
(:data:`~macp.envelope.Wire`), stored as msgpack blobs; the few columns the actors query by
(a task's ``state``, a memory key's expiry, a lease's owner) are stored beside them.

Durability: the file runs in WAL mode with ``synchronous=NORMAL``. A method that writes returns
only after its transaction has committed, so what an actor acknowledged survives the crash or
SIGKILL of the process. On a power cut or an OS crash the last few commits may be lost (the WAL
is synced at checkpoints, not at each commit); pass ``synchronous="FULL"`` to sync every commit
at the cost of one fsync per write.

Threads: open one :class:`Journal` per actor (each actor runs on its own thread); several
journals on one file see each other's committed writes, and a writer waits up to ``busy_timeout_s``
for another one's transaction to end. One journal may move between threads (it is built in the
creator's thread and used in the actor's), and an internal lock serializes its use, but it is
meant for one thread at a time: a transaction holds the lock until it ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

from macp._journal_tables import MemoryTables, ResourceTables, pack, unpack
from macp.errors import ConfigError, InternalError, InvalidParams

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from types import TracebackType

    from macp.envelope import Wire

__all__ = ["SCHEMA_VERSION", "Journal", "default_journal_path", "open_journal"]

SCHEMA_VERSION: Final = 1
_SYNCHRONOUS: Final = frozenset({"NORMAL", "FULL", "EXTRA"})

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, updated_ms INTEGER NOT NULL, record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks (state, updated_ms);
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, updated_ms INTEGER NOT NULL, record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS workflows_by_state ON workflows (state, updated_ms);
CREATE TABLE IF NOT EXISTS memory (
    namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, expires_at_ms INTEGER,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS memory_by_expiry ON memory (expires_at_ms)
    WHERE expires_at_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, amounts BLOB NOT NULL, created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_by_owner ON leases (owner);
CREATE TABLE IF NOT EXISTS locks (
    path TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at_ms INTEGER
);
CREATE TABLE IF NOT EXISTS pools (name TEXT PRIMARY KEY, capacity REAL NOT NULL);
"""

# States are passed as one JSON array parameter, so the SQL text never changes with them.
_STATES: Final = "state IN (SELECT value FROM json_each(?))"


def default_journal_path(node_name: str) -> Path:
    """Where a node keeps its journal: ``$MACP_DATA_DIR/<node>/journal.sqlite3``, or
    ``.macp/<node>/journal.sqlite3`` under the current directory when the variable is unset.
    """
    base = os.environ.get("MACP_DATA_DIR") or Path.cwd() / ".macp"
    return Path(base) / node_name / "journal.sqlite3"


def open_journal(path: object, node_name: str) -> Journal:
    """Open the journal an actor's ``config["journal"]`` names, or the node's default one.

    Raises:
        ConfigError: ``path`` is not a non-empty string, or the file cannot be opened.
    """
    if path is None:
        return Journal(default_journal_path(node_name)).open()
    if not isinstance(path, str | os.PathLike) or not str(path):
        raise ConfigError(
            f"config 'journal' must be a file path, not {path!r:.60}; "
            "leave it out to use the node's default journal"
        )
    return Journal(path).open()


def _indexed(record: Mapping[str, Wire], what: str) -> tuple[str, int]:
    state, updated_ms = record.get("state"), record.get("updated_ms")
    if not isinstance(state, str) or type(updated_ms) is not int:
        raise InvalidParams(
            f"a {what} record needs 'state' (a string) and 'updated_ms' (an integer), "
            f"not {state!r:.40} and {updated_ms!r:.40}; set both before storing it"
        )
    return state, updated_ms


def _states(states: Iterable[str]) -> str:
    return json.dumps([states] if isinstance(states, str) else list(states))


class Journal(MemoryTables, ResourceTables):
    """A connection to the journal file; build it, :meth:`open` it, :meth:`close` it.

    Also a context manager (``with Journal(path) as journal: ...``).

    Args:
        path: the SQLite file; its parent directories are created by :meth:`open`.
        synchronous: ``"NORMAL"`` (the default, see the module notes), ``"FULL"`` or ``"EXTRA"``.
        busy_timeout_s: how long a write waits for another connection's transaction.

    Raises:
        ConfigError: ``synchronous`` is not one of the allowed values.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout_s: float = 5.0,
    ) -> None:
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ConfigError(
                f"journal synchronous must be one of {', '.join(sorted(_SYNCHRONOUS))}, "
                f"not {synchronous!r}"
            )
        self.path = Path(path)
        self._synchronous = synchronous.upper()
        self._busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._depth = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def open(self) -> Self:
        """Create the parent directories and the schema if needed, and connect.

        Raises:
            ConfigError: the file cannot be created or opened, is not a journal, or was
                written by a newer macp.
        """
        if self._conn is not None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,  # autocommit; transactions are explicit BEGIN IMMEDIATE
                check_same_thread=False,  # the lock below serializes use instead
            )
        except (OSError, sqlite3.Error) as e:
            raise self._cannot_open(e) from e
        try:
            self._create_schema(conn)
        except BaseException as e:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            if isinstance(e, sqlite3.Error):
                raise self._cannot_open(e) from e
            raise
        self._conn = conn
        return self

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.OperationalError(f"journal_mode stays {mode!r} where WAL is needed")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"journal {str(self.path)!r} has schema version {version}, newer than this "
                f"macp's {SCHEMA_VERSION}; upgrade macp or point 'journal' at another file"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def _cannot_open(self, e: BaseException) -> ConfigError:
        return ConfigError(
            f"cannot open the journal {str(self.path)!r} ({e}); set 'journal' to a writable "
            "file path (its directory is created if missing) or set MACP_DATA_DIR"
        )

    def close(self) -> None:
        """Close the connection; safe to call twice. A later call needs :meth:`open` again."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Self]:
        """Group writes: all of them commit when the block ends, none if it raises.

        A nested block joins the outer transaction. Outside any block each write commits by
        itself before its method returns.

        Raises:
            InternalError: the transaction could not begin or commit.
        """
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self
                if outer:
                    self._execute("COMMIT")
            except BaseException:
                if outer:
                    with contextlib.suppress(InternalError):
                        self._execute("ROLLBACK")
                raise
            finally:
                self._depth -= 1

    def _execute(self, sql: str, params: Iterable[object] = ()) -> int:
        return int(self._run(sql, params, rows=False))  # how many rows changed

    def _read(self, sql: str, params: Iterable[object] = ()) -> list[Any]:
        return list(self._run(sql, params, rows=True))

    def _run(self, sql: str, params: Iterable[object], *, rows: bool) -> Any:
        with self._lock:
            if self._conn is None:
                raise InternalError(f"journal {str(self.path)!r} is closed; open it first")
            try:
                cursor = self._conn.execute(sql, tuple(params))
                return cursor.fetchall() if rows else cursor.rowcount
            except sqlite3.Error as e:
                raise InternalError(
                    f"journal {str(self.path)!r} failed: {type(e).__name__}: {e}"
                ) from e

    # -- tasks and workflows (records the coordinator defines) --------------------------------

    def put_task(self, task_id: str, record: Mapping[str, Wire]) -> None:
        """Insert or replace a task record; it needs ``state`` (str) and ``updated_ms`` (int)."""
        self._put_record("tasks", task_id, record, "task")

    def get_task(self, task_id: str) -> dict[str, Wire] | None:
        """A task's record, or ``None`` if there is no such task."""
        return self._get_record("tasks", task_id)

    def tasks(self, states: Iterable[str] | None = None) -> list[dict[str, Wire]]:
        """Task records, oldest update first; only those in ``states`` if given."""
        return self._records("tasks", states)

    def delete_task(self, task_id: str) -> bool:
        """Forget a task; whether it was stored."""
        return self._execute("DELETE FROM tasks WHERE id = ?", (task_id,)) > 0

    def put_workflow(self, run_id: str, record: Mapping[str, Wire]) -> None:
        """Insert or replace a workflow run; it needs ``state`` (str) and ``updated_ms`` (int)."""
        self._put_record("workflows", run_id, record, "workflow")

    def get_workflow(self, run_id: str) -> dict[str, Wire] | None:
        """A workflow run's record, or ``None`` if there is no such run."""
        return self._get_record("workflows", run_id)

    def workflows(self, states: Iterable[str] | None = None) -> list[dict[str, Wire]]:
        """Workflow records, oldest update first; only those in ``states`` if given."""
        return self._records("workflows", states)

    def delete_workflow(self, run_id: str) -> bool:
        """Forget a workflow run; whether it was stored."""
        return self._execute("DELETE FROM workflows WHERE id = ?", (run_id,)) > 0

    # The table name comes from the fixed literals above, never from a caller.
    def _put_record(self, table: str, id_: str, record: Mapping[str, Wire], what: str) -> None:
        state, updated_ms = _indexed(record, what)
        self._execute(
            f"INSERT OR REPLACE INTO {table} (id, state, updated_ms, record) VALUES (?, ?, ?, ?)",  # noqa: S608
            (id_, state, updated_ms, pack(dict(record), f"{what} record")),
        )

    def _get_record(self, table: str, id_: str) -> dict[str, Wire] | None:
        rows = self._read(f"SELECT record FROM {table} WHERE id = ?", (id_,))  # noqa: S608
        return unpack(rows[0][0]) if rows else None

    def _records(self, table: str, states: Iterable[str] | None) -> list[dict[str, Wire]]:
        if states is None:
            rows = self._read(f"SELECT record FROM {table} ORDER BY updated_ms, id")  # noqa: S608
        else:
            rows = self._read(
                f"SELECT record FROM {table} WHERE {_STATES} ORDER BY updated_ms, id",  # noqa: S608
                (_states(states),),
            )
        return [unpack(r[0]) for r in rows]
