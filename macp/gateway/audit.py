"""The audit log: one record for every call through any transport, allowed or not.

A record says when (``ts_ms``, the call's start), which gateway, who (the principal's name, role
and how it was authenticated), how (transport, connection), what (the operation, and a digest
of its parameters: the sha256 of their canonical JSON and its size in bytes, never the values
themselves), and how it ended: ``ok``, ``denied`` (the role lacks the scope), ``error`` (the
operation failed: its macp code), ``limited`` (over a rate limit or quota, -32000), with the
call's duration. :meth:`macp.gateway.guard.Guard.call` writes one per call.

Storage: one SQLite file of the gateway's own (:func:`default_audit_path`, or ``--audit-db``),
append-only: the code has no UPDATE or DELETE, and triggers make SQLite refuse both.

Writes never block the event loop: :meth:`AuditLog.record` only puts the record on a bounded
queue; a writer thread takes what is queued (up to ``batch`` records) and commits it in one
transaction. When the disk is slow (or the file locked) the queue fills up to ``max_pending``
records, and further records are dropped and counted, so memory stays bounded (``max_pending``
records queued, ``batch`` in the writer's hands): the writer adds one ``dropped`` record saying
how many were lost once it writes again. A crash (SIGKILL) loses
the records not yet committed: those queued, normally the last batch (what arrived during one
commit, a few milliseconds' worth), at most ``max_pending`` on a disk that fell behind. What was
committed survives a crash of the process (WAL); a power cut may lose the last commits.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import queue
import sqlite3
import threading
import time
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

from macp.errors import ConfigError
from macp.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "AuditLog",
    "AuditRecord",
    "Outcome",
    "default_audit_path",
    "digest",
    "read_records",
]

_log = get_logger("macp.gateway.audit")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL, gateway TEXT NOT NULL,
    principal TEXT NOT NULL, role TEXT NOT NULL, via TEXT NOT NULL,
    transport TEXT NOT NULL, connection TEXT, operation TEXT NOT NULL,
    params_sha256 TEXT NOT NULL, params_bytes INTEGER NOT NULL,
    outcome TEXT NOT NULL, code INTEGER, duration_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (ts_ms);
CREATE INDEX IF NOT EXISTS audit_by_principal ON audit (principal, ts_ms);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: a record cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: a record cannot be deleted'); END;
"""


class Outcome(enum.StrEnum):
    """How a call ended."""

    OK = "ok"
    DENIED = "denied"
    ERROR = "error"
    LIMITED = "limited"
    DROPPED = "dropped"
    """Not a call: that many records were lost (``params_bytes`` holds how many) because the
    queue was full."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One call, as the audit log keeps it."""

    ts_ms: int
    gateway: str
    principal: str
    role: str
    via: str
    transport: str
    connection: str | None
    operation: str
    params_sha256: str
    params_bytes: int
    outcome: str
    code: int | None
    duration_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_INSERT: Final = """
INSERT INTO audit (ts_ms, gateway, principal, role, via, transport, connection, operation,
    params_sha256, params_bytes, outcome, code, duration_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_SELECT: Final = """
SELECT ts_ms, gateway, principal, role, via, transport, connection, operation, params_sha256,
    params_bytes, outcome, code, duration_ms
FROM audit WHERE (:since_ms IS NULL OR ts_ms >= :since_ms)
    AND (:principal IS NULL OR principal = :principal)
ORDER BY id DESC LIMIT :limit
"""


def digest(arguments: Mapping[str, Any] | None) -> tuple[str, int]:
    """The sha256 (hex) of ``arguments``' canonical JSON (keys sorted, no spaces, UTF-8), and
    its size in bytes. No arguments are ``{}``; a value JSON cannot say is written as its repr.
    """
    text = json.dumps(
        {} if arguments is None else arguments,
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr,
    ).encode("utf-8", "backslashreplace")  # fmt: skip
    return hashlib.sha256(text).hexdigest(), len(text)


def default_audit_path() -> Path:
    """Where a gateway keeps its audit log unless told: ``$MACP_DATA_DIR/gateway/audit.sqlite3``,
    or ``.macp/gateway/audit.sqlite3`` under the current directory when the variable is unset
    (as node journals are kept: :func:`macp.store.default_journal_path`)."""
    base = os.environ.get("MACP_DATA_DIR") or Path.cwd() / ".macp"
    return Path(base) / "gateway" / "audit.sqlite3"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


_STOP: Final = object()


class AuditLog:
    """The audit log of one gateway, written by a thread of its own.

    Args:
        path: the SQLite file (created, with its folder, if missing).
        gateway: the gateway's name, written in each record.
        max_pending: records queued and not yet written before new ones are dropped.
        batch: the most records one transaction commits.

    Raises:
        ConfigError: the file cannot be opened or is not an audit log.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        gateway: str = "",
        max_pending: int = 10_000,
        batch: int = 500,
    ) -> None:
        self.path = Path(path) if path is not None else default_audit_path()
        self.gateway = gateway
        self._batch = batch
        self._db = _open(self.path)
        self._queue: queue.Queue[object] = queue.Queue(max_pending)
        self._lock = threading.Lock()
        self._dropped = 0
        self.written = 0
        """Records committed so far (the ``dropped`` ones included)."""
        self._closing = threading.Event()
        self._give_up_at = float("inf")
        self._thread = threading.Thread(target=self._run, name="macp-audit", daemon=True)
        self._thread.start()

    def record(
        self,
        *,
        principal: str,
        role: str,
        via: str,
        transport: str,
        operation: str,
        arguments: Mapping[str, Any] | None,
        outcome: Outcome,
        code: int | None,
        started_ms: int,
        duration_s: float,
        connection: str | None = None,
    ) -> None:
        """Queue one call's record (never blocks; with the queue full it is dropped and
        counted)."""
        sha256, size = digest(arguments)
        self.put(AuditRecord(
            started_ms, self.gateway, principal, str(role), via, str(transport), connection,
            operation, sha256, size, str(outcome), code, round(duration_s * 1000, 3),
        ))  # fmt: skip

    def put(self, record: AuditRecord) -> None:
        """Queue ``record`` (never blocks; with the queue full it is dropped and counted)."""
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            with self._lock:
                self._dropped += 1

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until what was queued before this call is committed; whether it was in time.
        Blocks: from a loop, run it in a thread."""
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout_s)
        except queue.Full:
            return False
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (retrying a locked file for up to ``timeout_s``), then stop."""
        if not self._thread.is_alive():
            return
        self._give_up_at = time.monotonic() + timeout_s
        self._closing.set()
        self._queue.put(_STOP)
        self._thread.join(timeout_s + 1.0)
        if not self._thread.is_alive():
            self._db.close()

    def _run(self) -> None:
        while True:
            taken = [self._queue.get()]
            while len(taken) < self._batch:
                try:
                    taken.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            records = [r for r in taken if isinstance(r, AuditRecord)]
            with self._lock:
                dropped, self._dropped = self._dropped, 0
            if dropped:
                records.append(_dropped_record(self.gateway, dropped))
            self._write(records)
            for item in taken:
                if isinstance(item, threading.Event):
                    item.set()
            if _STOP in taken:
                return

    def _write(self, records: list[AuditRecord]) -> None:
        """Commit ``records``; while the file refuses (locked, disk full), retry, and after a
        close has waited its time, log how many are lost."""
        if not records:
            return
        wait_s = 0.05
        while True:
            try:
                with self._db:
                    self._db.executemany(_INSERT, [astuple(r) for r in records])
            except sqlite3.Error as e:
                if self._closing.is_set() and time.monotonic() > self._give_up_at:
                    _log.error("audit.lost", records=len(records), error=str(e))
                    return
                _log.warning("audit.write_failed", records=len(records), error=str(e))
                time.sleep(wait_s)  # the writer thread's back-off; nothing waits on it
                wait_s = min(wait_s * 2, 1.0)
                continue
            self.written += len(records)
            return

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _dropped_record(gateway: str, count: int) -> AuditRecord:
    return AuditRecord(
        _now_ms(), gateway, "", "", "", "", None, "", "", count, Outcome.DROPPED.value, None, 0.0
    )


def _open(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, timeout=1.0)
    except (OSError, sqlite3.Error) as e:
        raise ConfigError(
            f"cannot open the audit log {path}: {e}; give --audit-db a writable file path or "
            "set MACP_DATA_DIR"
        ) from e
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
    except sqlite3.Error as e:
        db.close()
        raise ConfigError(
            f"{path} is not an audit log SQLite can write ({e}); give --audit-db another file"
        ) from e
    return db


def read_records(
    path: str | os.PathLike[str] | None = None,
    *,
    since_ms: int | None = None,
    principal: str | None = None,
    limit: int | None = None,
) -> list[AuditRecord]:
    """The records of the audit log at ``path`` (read-only), oldest first: those from
    ``since_ms`` on, of ``principal``; the last ``limit`` of them.

    Raises:
        ConfigError: there is no audit log at ``path``.
    """
    where = Path(path) if path is not None else default_audit_path()
    if not where.is_file():
        raise ConfigError(
            f"no audit log at {where}; pass --db PATH (the gateway's --audit-db) or set "
            "MACP_DATA_DIR as the gateway had it"
        )
    arguments = {"since_ms": since_ms, "principal": principal,
                 "limit": -1 if limit is None else limit}  # fmt: skip
    try:
        db = sqlite3.connect(f"{where.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = db.execute(_SELECT, arguments).fetchall()
        finally:
            db.close()
    except sqlite3.Error as e:
        raise ConfigError(f"cannot read the audit log {where}: {e}") from e
    return [AuditRecord(*row) for row in reversed(rows)]
