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

What is written is checked first (:func:`storable`: what an envelope could carry, or
:class:`~macp.errors.InvalidParams` naming the part at fault, and nothing is written); what is
read is checked as it is read, and a row that cannot be read back is set aside as a dead
letter instead (:mod:`macp._dead_letters`), so no reader fails on one bad row. The schema has
a version (:data:`SCHEMA_VERSION`); a file of an earlier version is migrated as it is opened.
Finished records are found by their finish time and pruned in batches, idempotency keys by
an index, and the file frees pages incrementally (:mod:`macp._journal_retention`).

Threads: open one :class:`Journal` per actor (each actor runs on its own thread); several
journals on one file see each other's committed writes, and a writer waits up to ``busy_timeout_s``
for another one's transaction to end. One journal may move between threads (it is built in the
creator's thread and used in the actor's), and an internal lock serializes its use, but it is
meant for one thread at a time: a transaction holds the lock until it ends.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

from macp._dead_letters import DEAD_LETTER_TABLE, DEAD_LETTERS_KEPT
from macp._journal_history import add_history_columns
from macp._journal_retention import INCREMENTAL, add_retention_columns
from macp._journal_tables import Tables
from macp._storable import storable
from macp.errors import ConfigError, InternalError
from macp.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from types import TracebackType

__all__ = [
    "DEAD_LETTERS_KEPT",
    "SCHEMA_VERSION",
    "Journal",
    "default_journal_path",
    "open_journal",
    "storable",
]

SCHEMA_VERSION: Final = 4
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
# What a file of each earlier version needs to reach the next one, run in order in one
# transaction with the version bump (a new file gets _SCHEMA, then every migration).
_MIGRATIONS: Final[dict[int, str | Callable[[sqlite3.Connection], None]]] = {
    2: DEAD_LETTER_TABLE,  # rows that could not be read back, set aside instead of replayed
    3: add_retention_columns,  # idempotency keys and finish times, indexed for retention
    4: add_history_columns,  # task type, agent and creation time, indexed for history queries
}
_log = get_logger("macp.store")


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
        path = default_journal_path(node_name)
    elif not isinstance(path, str | os.PathLike) or not str(path):
        raise ConfigError(
            f"config 'journal' must be a file path, not {path!r:.60}; "
            "leave it out to use the node's default journal"
        )
    journal = Journal(path)
    journal._log = _log.bind(node=node_name)
    return journal.open()


class Journal(Tables):
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
        self._log = _log

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
        # Before WAL (which writes the file's header): a new file frees pages incrementally.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
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
            # Read again inside the transaction: another connection may have migrated it.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            steps: list[str | Callable[[sqlite3.Connection], None]] = []
            steps += _SCHEMA.split(";") if version == 0 else []
            steps += [_MIGRATIONS[v] for v in range(max(version, 1) + 1, SCHEMA_VERSION + 1)]
            for step in steps:
                if callable(step):
                    step(conn)
                elif step.strip():
                    conn.execute(step)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        if version != 0 and conn.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL:
            self._vacuum_once(conn)

    def _vacuum_once(self, conn: sqlite3.Connection) -> None:
        """Rewrite a file made before schema 3 so that it frees pages incrementally too (once:
        about 0.2 s for 100,000 tasks). If another connection holds it, it is left as it is:
        the pages pruned rows free are then reused, but the file never shrinks."""
        try:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("VACUUM")
        except sqlite3.Error as e:
            self._log.info("journal.vacuum_skipped", path=str(self.path), error=str(e))

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

    def _script(self, sql: str) -> None:
        """Run ``sql`` to its end (``PRAGMA incremental_vacuum`` frees one page per step,
        and a plain execute takes only the first step of a statement without columns)."""
        with self._lock:
            if self._conn is None:
                raise InternalError(f"journal {str(self.path)!r} is closed; open it first")
            try:
                self._conn.executescript(sql)
            except sqlite3.Error as e:
                raise InternalError(
                    f"journal {str(self.path)!r} failed: {type(e).__name__}: {e}"
                ) from e

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
