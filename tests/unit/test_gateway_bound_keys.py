"""An API key bound to one external agent's name: its principal says the name, its record
shows it, and a key store made before keys could be bound opens and binds too."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from macp.gateway import KeyStore, Role

if TYPE_CHECKING:
    from pathlib import Path

OLD_SCHEMA = """
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, principal TEXT NOT NULL, role TEXT NOT NULL, namespaces TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL, created_at REAL NOT NULL, revoked_at REAL
)
"""


def test_a_bound_key_names_its_agent_and_an_unbound_one_none(tmp_path: Path) -> None:
    with KeyStore(tmp_path / "keys.db") as store:
        bound_record, bound = store.create("w1", Role.AGENT, agent="w1")
        free_record, free = store.create("svc", Role.AGENT)
        assert store.verify(bound).claims == {"key_id": bound_record.id, "agent": "w1"}
        assert store.verify(free).claims == {"key_id": free_record.id}
        assert [(r.id, r.agent) for r in store.list()] == [
            (bound_record.id, "w1"), (free_record.id, None)
        ]  # fmt: skip
        assert store.get(bound_record.id) == bound_record
        assert bound_record.as_json()["agent"] == "w1"


def test_a_store_made_before_binding_opens_with_its_keys_unbound(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(OLD_SCHEMA)
        db.execute(
            "INSERT INTO api_keys VALUES ('0123456789abcdef', 'svc', 'agent', '[]', 'x', 1.0, NULL)"
        )
    db.close()
    with KeyStore(path) as store:
        (old,) = store.list()
        assert (old.id, old.principal, old.agent) == ("0123456789abcdef", "svc", None)
        record, key = store.create("w2", Role.AGENT, agent="w2")
        assert store.verify(key).claims == {"key_id": record.id, "agent": "w2"}
    with KeyStore(path) as again:  # opened twice: the column is added once
        assert len(again.list()) == 2
