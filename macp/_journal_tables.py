"""The journal's tables: task and workflow records, memory, leases, locks and pools.

Mixed into :class:`~macp.store.Journal`, which provides the connection (``_execute`` and
``_read``, serialized by its lock), transactions and the schema.

Every value is checked before it is written (:func:`~macp._storable.storable`: what an
envelope could carry), and every row is checked as it is read back: one that cannot be read
back is set aside (:mod:`macp._dead_letters`) and skipped.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

import msgpack

from macp._dead_letters import DeadLetters, Unreadable, ms_column, text_column, unpack
from macp._journal_evaluations import EvaluationTables
from macp._journal_history import HistoryTables, history_columns
from macp._journal_retention import RetentionTables
from macp._storable import READABLE_DEPTH, is_number, storable
from macp.errors import InvalidParams

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from macp.envelope import Wire

__all__ = ["Tables"]

# States are passed as one JSON array parameter, so the SQL text never changes with them.
_STATES: Final = "state IN (SELECT value FROM json_each(?))"


def _memory_item(key: object, value: object, expires: object) -> tuple[str, Wire, int | None]:
    return text_column(key, "key"), unpack(value, "value"), ms_column(expires, "expiry")


def _lease(lease_id: object, owner: object, amounts: object, created: object) -> dict[str, Any]:
    held = unpack(amounts, "amounts")
    if not isinstance(held, dict) or not all(
        isinstance(p, str) and is_number(a) and a > 0 for p, a in held.items()
    ):
        raise Unreadable(f"its amounts are {held!r:.60}, not a map of pool to amount > 0")
    created_ms = ms_column(created, "created_ms", optional=False)
    return {"lease_id": text_column(lease_id, "id"), "owner": text_column(owner, "owner"),
            "amounts": held, "created_ms": created_ms}  # fmt: skip


def _lock(path: object, owner: object, expires: object) -> dict[str, Any]:
    return {"path": text_column(path, "path"), "owner": text_column(owner, "owner"),
            "expires_at_ms": ms_column(expires, "expiry")}  # fmt: skip


def _pool(name: object, capacity: object) -> tuple[str, float]:
    if not is_number(capacity) or capacity < 0:
        raise Unreadable(f"its capacity is {capacity!r:.40}, not a number >= 0")
    return text_column(name, "name"), float(capacity)


def _record(blob: object) -> dict[str, Wire]:
    record = unpack(blob)
    if not isinstance(record, dict):
        raise Unreadable(f"its record is a {type(record).__name__}, not a map")
    if not isinstance(record.get("state"), str) or type(record.get("updated_ms")) is not int:
        raise Unreadable("its record has no string 'state' or no integer 'updated_ms'")
    return record


def _record_bytes(record: Mapping[str, Wire], what: str) -> bytes:
    # The values a record holds were checked as they came in (the payload rule, at most
    # MAX_DEPTH deep), so msgpack's own packer is the check here, at the cost of packing: it
    # refuses what a bug could still have put in (an object, a set); the rule's thorough check
    # then names it. (A record is rewritten at each change of its task: walking it each time
    # cost the coordinator about a fifth of its throughput. Anything packable that a reader
    # would refuse is set aside at replay, a dead letter.)
    try:
        data: bytes = msgpack.packb(record)
    except (TypeError, ValueError, OverflowError):
        storable(dict(record), f"the {what} record", "record", max_depth=READABLE_DEPTH)
        raise  # the thorough check found nothing: msgpack's refusal stands
    return data


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


_RUN_CHANGED: Final = (
    "ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms, "
    "record = excluded.record, finished_ms = excluded.finished_ms"
)
"""A record written again updates the columns that change, in place: SQLite then rewrites
only the indexes of those columns (a REPLACE deletes the row and inserts it again, through
every index of the table), and a task is written several times on its way."""
_PUT_TASK: Final = (
    "INSERT INTO tasks (id, state, updated_ms, record, key, finished_ms, type, agent, created_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) " + _RUN_CHANGED + ", agent = excluded.agent"
)
"""A task's ``key``, ``type`` and ``created_ms`` never change; its ``agent`` does."""


class RecordTables(RetentionTables):
    """Task and workflow records (the coordinator's state), by id."""

    def put_task(self, task_id: str, record: Mapping[str, Wire]) -> None:
        """Insert or replace a task record; it needs ``state`` (str) and ``updated_ms`` (int).

        Raises:
            InvalidParams: the record lacks them, or cannot be stored; nothing is written.
        """
        self._put_record("tasks", task_id, record, "task")

    def get_task(self, task_id: str) -> dict[str, Wire] | None:
        """A task's record, or ``None`` if there is no such task (or it was set aside)."""
        return self._get_record("tasks", task_id)

    def tasks(self, states: Iterable[str] | None = None) -> list[dict[str, Wire]]:
        """Task records, oldest update first; only those in ``states`` if given."""
        return [record for _, record in self.task_entries(states)]

    def task_entries(
        self, states: Iterable[str] | None = None
    ) -> list[tuple[str, dict[str, Wire]]]:
        """``(task id, record)`` pairs, as :meth:`tasks`; a row that cannot be read back is
        set aside instead."""
        return self._records("tasks", states)

    def delete_task(self, task_id: str) -> bool:
        """Forget a task; whether it was stored."""
        return self._execute("DELETE FROM tasks WHERE id = ?", (task_id,)) > 0

    def put_workflow(self, run_id: str, record: Mapping[str, Wire]) -> None:
        """Insert or replace a workflow run; it needs ``state`` (str) and ``updated_ms`` (int).

        Raises:
            InvalidParams: the record lacks them, or cannot be stored; nothing is written.
        """
        self._put_record("workflows", run_id, record, "workflow")

    def get_workflow(self, run_id: str) -> dict[str, Wire] | None:
        """A workflow run's record, or ``None`` if there is no such run (or it was set aside)."""
        return self._get_record("workflows", run_id)

    def workflows(self, states: Iterable[str] | None = None) -> list[dict[str, Wire]]:
        """Workflow records, oldest update first; only those in ``states`` if given."""
        return [record for _, record in self.workflow_entries(states)]

    def workflow_entries(
        self, states: Iterable[str] | None = None
    ) -> list[tuple[str, dict[str, Wire]]]:
        """``(run id, record)`` pairs, as :meth:`workflows`; a row that cannot be read back is
        set aside instead."""
        return self._records("workflows", states)

    def delete_workflow(self, run_id: str) -> bool:
        """Forget a workflow run; whether it was stored."""
        return self._execute("DELETE FROM workflows WHERE id = ?", (run_id,)) > 0

    # The table name comes from the fixed literals above, never from a caller.
    def _put_record(self, table: str, id_: str, record: Mapping[str, Wire], what: str) -> None:
        state, updated_ms = _indexed(record, what)
        finished = record.get("finished_ms")  # set once a task or run has finished
        finished_ms = finished if type(finished) is int else None
        blob = _record_bytes(record, what)
        if table == "tasks":
            key = record.get("idempotency_key")
            self._execute(
                _PUT_TASK,
                (
                    id_,
                    state,
                    updated_ms,
                    blob,
                    key if isinstance(key, str) else None,
                    finished_ms,
                    *history_columns(record),
                ),
            )
            return
        self._execute(
            f"INSERT INTO {table} (id, state, updated_ms, record, finished_ms) "  # noqa: S608
            "VALUES (?, ?, ?, ?, ?) " + _RUN_CHANGED,
            (id_, state, updated_ms, blob, finished_ms),
        )

    def _get_record(self, table: str, id_: str) -> dict[str, Wire] | None:
        rows = self._read(f"SELECT record FROM {table} WHERE id = ?", (id_,))  # noqa: S608
        return self._readable(table, (id_,), _record, rows[0][0]) if rows else None

    def _records(
        self, table: str, states: Iterable[str] | None
    ) -> list[tuple[str, dict[str, Wire]]]:
        if states is None:
            return self._records_where(table, "1 ORDER BY updated_ms, id", ())
        return self._records_where(table, f"{_STATES} ORDER BY updated_ms, id", (_states(states),))

    def _records_where(
        self, table: str, where: str, params: tuple[object, ...]
    ) -> list[tuple[str, dict[str, Wire]]]:
        rows = self._read(f"SELECT id, record FROM {table} WHERE {where}", params)  # noqa: S608
        found = []
        for id_, blob in rows:
            record = self._readable(table, (id_,), _record, blob)
            if record is not None and isinstance(id_, str):
                found.append((id_, record))
            elif record is not None:
                self.set_aside(table, (id_,), f"its id is {id_!r:.40}, not a string")
        return found


class MemoryTables(DeadLetters):
    """Keys by namespace, with an optional expiry (the memory store's state)."""

    def put_memory(self, namespace: str, key: str, value: Wire, expires_at_ms: int | None) -> None:
        """Insert or replace a key; ``expires_at_ms`` is epoch milliseconds, ``None`` never.

        Raises:
            InvalidParams: ``value`` cannot be stored (see :func:`~macp._storable.storable`).
        """
        self._execute(
            "INSERT OR REPLACE INTO memory (namespace, key, value, expires_at_ms) "
            "VALUES (?, ?, ?, ?)",
            (namespace, key, storable(value, "the memory value"), expires_at_ms),
        )

    def get_memory(self, namespace: str, key: str) -> tuple[Wire, int | None] | None:
        """The value and expiry of a key (expired or not), or ``None`` if it is not stored (or
        could not be read back, and was set aside)."""
        rows = self._read(
            "SELECT key, value, expires_at_ms FROM memory WHERE namespace = ? AND key = ?",
            (namespace, key),
        )
        found = self._memory_rows(namespace, rows)
        return (found[0][1], found[0][2]) if found else None

    def delete_memory(self, namespace: str, key: str) -> bool:
        """Delete a key; whether it was stored."""
        sql = "DELETE FROM memory WHERE namespace = ? AND key = ?"
        return self._execute(sql, (namespace, key)) > 0

    def memory_items(self, namespace: str, prefix: str = "") -> list[tuple[str, Wire, int | None]]:
        """``(key, value, expires_at_ms)`` of a namespace's keys starting with ``prefix``,
        sorted by key (expired ones included: filtering by time is the caller's job)."""
        rows = self._read(
            "SELECT key, value, expires_at_ms FROM memory "
            "WHERE namespace = ? AND substr(key, 1, ?) = ? ORDER BY key",
            (namespace, len(prefix), prefix),
        )
        return self._memory_rows(namespace, rows)

    def all_memory_items(self) -> list[tuple[str, str, Wire, int | None]]:
        """``(namespace, key, value, expires_at_ms)`` of every stored key (to load a cache);
        a row that cannot be read back is set aside instead."""
        rows = self._read(
            "SELECT namespace, key, value, expires_at_ms FROM memory ORDER BY namespace, key"
        )
        found = []
        for namespace, key, value, expires in rows:
            item = self._readable("memory", (namespace, key), _memory_item, key, value, expires)
            if item is not None and isinstance(namespace, str):
                found.append((namespace, *item))
            elif item is not None:
                self.set_aside("memory", (namespace, key), f"its namespace is {namespace!r:.40}")
        return found

    def _memory_rows(
        self, namespace: object, rows: list[Any]
    ) -> list[tuple[str, Wire, int | None]]:
        found = []
        for key, value, expires in rows:
            item = self._readable("memory", (namespace, key), _memory_item, key, value, expires)
            if item is not None:
                found.append(item)
        return found

    def purge_expired_memory(self, now_ms: int) -> int:
        """Delete every key whose expiry is at or before ``now_ms``; how many went."""
        sql = "DELETE FROM memory WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?"
        return self._execute(sql, (now_ms,))


class ResourceTables(DeadLetters):
    """Leases, path locks and pools (the resource manager's state)."""

    def put_lease(
        self, lease_id: str, owner: str, amounts: Mapping[str, float], created_ms: int
    ) -> None:
        """Insert or replace a lease: ``amounts`` held by ``owner`` since ``created_ms``."""
        self._execute(
            "INSERT OR REPLACE INTO leases (id, owner, amounts, created_ms) VALUES (?, ?, ?, ?)",
            (lease_id, owner, storable(dict(amounts), "the lease amounts", "amounts"), created_ms),
        )

    def delete_lease(self, lease_id: str) -> bool:
        """Delete a lease; whether it was stored."""
        return self._execute("DELETE FROM leases WHERE id = ?", (lease_id,)) > 0

    def leases(self) -> list[dict[str, Any]]:
        """Every lease as ``{"lease_id", "owner", "amounts", "created_ms"}``, oldest first; a
        row that cannot be read back is set aside instead."""
        rows = self._read(
            "SELECT id, owner, amounts, created_ms FROM leases ORDER BY created_ms, id"
        )
        found = []
        for lease_id, owner, amounts, created in rows:
            lease = self._readable("leases", (lease_id,), _lease, lease_id, owner, amounts, created)
            if lease is not None:
                found.append(lease)
        return found

    def put_lock(self, path: str, owner: str, expires_at_ms: int | None) -> None:
        """Insert or replace the lock on ``path``; ``expires_at_ms`` ``None`` is no expiry."""
        self._execute(
            "INSERT OR REPLACE INTO locks (path, owner, expires_at_ms) VALUES (?, ?, ?)",
            (path, owner, expires_at_ms),
        )

    def delete_lock(self, path: str) -> bool:
        """Delete the lock on ``path``; whether it was stored."""
        return self._execute("DELETE FROM locks WHERE path = ?", (path,)) > 0

    def locks(self) -> list[dict[str, Any]]:
        """Every lock (expired ones included) as ``{"path", "owner", "expires_at_ms"}``; a row
        that cannot be read back is set aside instead."""
        rows = self._read("SELECT path, owner, expires_at_ms FROM locks ORDER BY path")
        found = []
        for path, owner, expires in rows:
            lock = self._readable("locks", (path,), _lock, path, owner, expires)
            if lock is not None:
                found.append(lock)
        return found

    def put_pool(self, name: str, capacity: float) -> None:
        """Insert or replace a pool's capacity."""
        self._execute(
            "INSERT OR REPLACE INTO pools (name, capacity) VALUES (?, ?)", (name, float(capacity))
        )

    def pools(self) -> dict[str, float]:
        """Every pool's capacity by name; a row that cannot be read back is set aside instead."""
        found = []
        for name, capacity in self._read("SELECT name, capacity FROM pools ORDER BY name"):
            pool = self._readable("pools", (name,), _pool, name, capacity)
            if pool is not None:
                found.append(pool)
        return dict(found)


class Tables(RecordTables, HistoryTables, MemoryTables, ResourceTables, EvaluationTables):
    """Every table of the journal."""
