"""The journal's tables for the memory store and the resource manager.

Mixed into :class:`~macp.store.Journal`, which provides the connection (``_execute`` and
``_read``, serialized by its lock) and the schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

from macp.errors import InvalidParams

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from macp.envelope import Wire

__all__ = ["MemoryTables", "ResourceTables", "pack", "unpack"]


def pack(value: object, what: str) -> bytes:
    try:
        data: bytes = msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidParams(
            f"the {what} is not msgpack-native data ({e}); store only "
            "dict/list/str/bytes/int/float/bool/None"
        ) from e
    return data


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class _Tables:
    if TYPE_CHECKING:

        def _execute(self, sql: str, params: Iterable[object] = ()) -> int: ...
        def _read(self, sql: str, params: Iterable[object] = ()) -> list[Any]: ...


class MemoryTables(_Tables):
    """Keys by namespace, with an optional expiry (the memory store's state)."""

    def put_memory(self, namespace: str, key: str, value: Wire, expires_at_ms: int | None) -> None:
        """Insert or replace a key; ``expires_at_ms`` is epoch milliseconds, ``None`` never."""
        self._execute(
            "INSERT OR REPLACE INTO memory (namespace, key, value, expires_at_ms) "
            "VALUES (?, ?, ?, ?)",
            (namespace, key, pack(value, "memory value"), expires_at_ms),
        )

    def get_memory(self, namespace: str, key: str) -> tuple[Wire, int | None] | None:
        """The value and expiry of a key (expired or not), or ``None`` if it is not stored."""
        rows = self._read(
            "SELECT value, expires_at_ms FROM memory WHERE namespace = ? AND key = ?",
            (namespace, key),
        )
        return (unpack(rows[0][0]), rows[0][1]) if rows else None

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
        return [(k, unpack(v), e) for k, v, e in rows]

    def all_memory_items(self) -> list[tuple[str, str, Wire, int | None]]:
        """``(namespace, key, value, expires_at_ms)`` of every stored key (to load a cache)."""
        rows = self._read(
            "SELECT namespace, key, value, expires_at_ms FROM memory ORDER BY namespace, key"
        )
        return [(n, k, unpack(v), e) for n, k, v, e in rows]

    def purge_expired_memory(self, now_ms: int) -> int:
        """Delete every key whose expiry is at or before ``now_ms``; how many went."""
        sql = "DELETE FROM memory WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?"
        return self._execute(sql, (now_ms,))


class ResourceTables(_Tables):
    """Leases, path locks and pools (the resource manager's state)."""

    def put_lease(
        self, lease_id: str, owner: str, amounts: Mapping[str, float], created_ms: int
    ) -> None:
        """Insert or replace a lease: ``amounts`` held by ``owner`` since ``created_ms``."""
        self._execute(
            "INSERT OR REPLACE INTO leases (id, owner, amounts, created_ms) VALUES (?, ?, ?, ?)",
            (lease_id, owner, pack(dict(amounts), "lease amounts"), created_ms),
        )

    def delete_lease(self, lease_id: str) -> bool:
        """Delete a lease; whether it was stored."""
        return self._execute("DELETE FROM leases WHERE id = ?", (lease_id,)) > 0

    def leases(self) -> list[dict[str, Any]]:
        """Every lease as ``{"lease_id", "owner", "amounts", "created_ms"}``, oldest first."""
        rows = self._read(
            "SELECT id, owner, amounts, created_ms FROM leases ORDER BY created_ms, id"
        )
        return [
            {"lease_id": i, "owner": o, "amounts": unpack(a), "created_ms": c}
            for i, o, a, c in rows
        ]

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
        """Every lock (expired ones included) as ``{"path", "owner", "expires_at_ms"}``."""
        rows = self._read("SELECT path, owner, expires_at_ms FROM locks ORDER BY path")
        return [{"path": p, "owner": o, "expires_at_ms": e} for p, o, e in rows]

    def put_pool(self, name: str, capacity: float) -> None:
        """Insert or replace a pool's capacity."""
        self._execute(
            "INSERT OR REPLACE INTO pools (name, capacity) VALUES (?, ?)", (name, float(capacity))
        )

    def pools(self) -> dict[str, float]:
        """Every pool's capacity by name."""
        return dict(self._read("SELECT name, capacity FROM pools ORDER BY name"))
