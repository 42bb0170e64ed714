"""API keys for agents and services: a random secret shown once, stored hashed, revocable.

A key reads ``macpk_<id>_<secret>``: the id (16 hex digits) finds its row, the secret (32
random bytes, URL-safe base64) is checked against the row's SHA-256 hash. A hash this fast is
enough for a secret of 256 random bits (nothing to guess); a slow password hash would only
slow every call. Every check reads the store, so a key revoked (by this process or by
``macp gateway keys revoke`` in another) is refused at the next call.

The store is one SQLite file (WAL, so the gateway reads while the command writes): by default
``keys.sqlite3`` in the gateway's data folder, ``$MACP_DATA_DIR/gateway/`` or else
``.macp/gateway/`` under the current directory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Self

from macp.errors import ConfigError, Unauthorized
from macp.gateway.auth._principal import Principal, Role

__all__ = ["KEY_PREFIX", "ApiKey", "KeyStore", "default_keys_path"]

KEY_PREFIX: Final = "macpk_"
"""How an API key begins (and so is told from a token)."""
_ID_HEX: Final = 16

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    role TEXT NOT NULL,
    namespaces TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL,
    agent TEXT
)
"""
_BOUND: Final = "ALTER TABLE api_keys ADD COLUMN agent TEXT"
"""A store made before keys could be bound to an agent gets the column (empty: unbound)."""
_RECORDS: Final = (
    "SELECT id, principal, role, namespaces, created_at, revoked_at, agent FROM api_keys "
)


def default_keys_path() -> Path:
    """``keys.sqlite3`` in the gateway's data folder (``$MACP_DATA_DIR/gateway``, else
    ``.macp/gateway`` under the current directory)."""
    base = os.environ.get("MACP_DATA_DIR") or Path.cwd() / ".macp"
    return Path(base) / "gateway" / "keys.sqlite3"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key's record (never its secret)."""

    id: str
    principal: str
    role: Role
    namespaces: tuple[str, ...]
    created_at: float
    revoked_at: float | None = None
    agent: str | None = None
    """The one external agent name the key may register (``None``: any name)."""

    def as_json(self) -> dict[str, object]:
        revoked = None if self.revoked_at is None else _iso(self.revoked_at)
        return {"id": self.id, "principal": self.principal, "role": self.role.value,
                "namespaces": list(self.namespaces), "created_at": _iso(self.created_at),
                "revoked_at": revoked, "agent": self.agent}  # fmt: skip


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """The API keys in the SQLite file at ``path`` (created with its folder if missing).

    Raises:
        ConfigError: the file cannot be opened or is not a key store.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_keys_path()
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(api_keys)")}
            if "agent" not in columns:
                self._db.execute(_BOUND)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"--keys-db {self.path}: cannot open it as a key store: {e}") from e

    def create(
        self,
        principal: str,
        role: Role | str,
        namespaces: list[str] | tuple[str, ...] = (),
        *,
        agent: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key bound to ``principal`` as ``role``: its record, and the key itself (shown
        this once: only its hash is kept). With ``agent``, the key registers that one external
        agent name only (its principal's ``claims["agent"]``; any other name is refused).

        Raises:
            ConfigError: the principal is empty or the role unknown.
        """
        if not principal or not principal.strip():
            raise ConfigError("--principal must be a non-empty name")
        try:
            role = Role(role)
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise ConfigError(f"--role {role!r} is not one of {roles}") from None
        key_id, secret = secrets.token_hex(_ID_HEX // 2), secrets.token_urlsafe(32)
        record = ApiKey(key_id, principal, role, tuple(namespaces), time.time(), agent=agent)
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys (id, principal, role, namespaces, secret_sha256, "
                "created_at, agent) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key_id, principal, role.value, json.dumps(list(namespaces)), _digest(secret),
                 record.created_at, agent),
            )  # fmt: skip
        return record, f"{KEY_PREFIX}{key_id}_{secret}"

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke key ``key_id`` (at once: the next call with it is refused); its record. A key
        revoked already keeps its first revocation time.

        Raises:
            ConfigError: no key has that id.
        """
        with self._lock:
            self._db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), key_id),
            )
        record = self.get(key_id)
        if record is None:
            raise ConfigError(
                f"no API key has the id {key_id!r}; `macp gateway keys list` names them"
            )
        return record

    def get(self, key_id: str) -> ApiKey | None:
        """Key ``key_id``'s record, or ``None``."""
        with self._lock:
            row = self._db.execute(
                _RECORDS + "WHERE id = ?", (key_id,),
            ).fetchone()  # fmt: skip
        return None if row is None else _record(row)

    def list(self) -> list[ApiKey]:
        """Every key's record, oldest first (revoked ones included)."""
        with self._lock:
            rows = self._db.execute(_RECORDS + "ORDER BY created_at, id").fetchall()
        return [_record(row) for row in rows]

    def verify(self, credential: str) -> Principal:
        """The principal the API key ``credential`` is bound to.

        Raises:
            Unauthorized: not of the form of a key, unknown, wrong secret, or revoked.
        """
        key_id, _, secret = credential.removeprefix(KEY_PREFIX).partition("_")
        if not credential.startswith(KEY_PREFIX) or len(key_id) != _ID_HEX or not secret:
            raise Unauthorized(f"the API key is malformed: a key reads {KEY_PREFIX}<id>_<secret>")
        with self._lock:
            row = self._db.execute(
                "SELECT secret_sha256, principal, role, namespaces, revoked_at, agent "
                "FROM api_keys WHERE id = ?", (key_id,),
            ).fetchone()  # fmt: skip
        if row is None or not hmac.compare_digest(row[0], _digest(secret)):
            raise Unauthorized(f"unknown API key {key_id}: no key of this gateway matches it")
        if row[4] is not None:
            raise Unauthorized(f"API key {key_id} was revoked at {_iso(row[4])}; ask for a new one")
        claims = {"key_id": key_id} if row[5] is None else {"key_id": key_id, "agent": row[5]}
        return Principal(row[1], Role(row[2]), "api-key", claims, frozenset(json.loads(row[3])))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _record(row: tuple[str, str, str, str, float, float | None, str | None]) -> ApiKey:
    key_id, principal, role, namespaces, created_at, revoked_at, agent = row
    return ApiKey(key_id, principal, Role(role), tuple(json.loads(namespaces)), created_at,
                  revoked_at, agent)  # fmt: skip
