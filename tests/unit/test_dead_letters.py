"""The journal's dead letters against a real SQLite file: a row that cannot be read back is set
aside (kept, with the reason) and skipped, never a reader's failure; the table's retention;
and the migration of a file written before the table existed."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import msgpack

from macp.store import DEAD_LETTERS_KEPT, SCHEMA_VERSION, Journal

if TYPE_CHECKING:
    from pathlib import Path

GARBAGE = b"\xc1 not msgpack"
UNREADABLE = "is not msgpack data an envelope could carry (FormatError)"


def _sql(journal_path: Path, statement: str, *params: object) -> None:
    """Change the file behind the journal's back, as damage or a hand edit would."""
    conn = sqlite3.connect(journal_path)
    try:
        with conn:
            conn.execute(statement, params)
    finally:
        conn.close()


def _letters(journal: Journal) -> list[tuple[str, str, str]]:
    return sorted((d["source"], d["key"], d["reason"]) for d in journal.dead_letters(100))


def _record(state: str = "done", **extra: Any) -> dict[str, Any]:
    return {"state": state, "updated_ms": 1, **extra}


def test_task_and_workflow_rows_that_cannot_be_read_back_are_set_aside(
    journal: Journal, journal_path: Path
) -> None:
    for task_id in ("good", "garbage", "a-list", "no-state", "ext", "deep"):
        journal.put_task(task_id, _record(body=task_id))
    journal.put_workflow("run", _record())
    bad = {
        "garbage": GARBAGE,
        "a-list": msgpack.packb([1, 2]),
        "no-state": msgpack.packb({"updated_ms": 1}),
        "ext": msgpack.packb({"state": "done", "updated_ms": 1, "x": msgpack.ExtType(5, b"")}),
        "deep": b"\x91" * 1000 + msgpack.packb(msgpack.Timestamp(1, 0)),  # deeper than we write
    }
    for task_id, blob in bad.items():
        _sql(journal_path, "UPDATE tasks SET record = ? WHERE id = ?", blob, task_id)
    _sql(journal_path, "UPDATE workflows SET record = ? WHERE id = 'run'", "text, not bytes")

    assert journal.task_entries() == [("good", _record(body="good"))]
    assert journal.workflows() == []
    assert _letters(journal) == [
        ("tasks", "a-list", "its record is a list, not a map"),
        ("tasks", "deep", ("its record is not msgpack data an envelope could carry "
                           "(extension type -1 (a timestamp) is not allowed in an envelope)")),
        ("tasks", "ext", ("its record is not msgpack data an envelope could carry "
                          "(extension type 5 is not allowed in an envelope)")),
        ("tasks", "garbage", f"its record {UNREADABLE}"),
        ("tasks", "no-state", "its record has no string 'state' or no integer 'updated_ms'"),
        ("workflows", "run", "its record is a str, not msgpack bytes"),
    ]  # fmt: skip
    assert journal.dead_letter_count() == 6
    # moved, not copied: a second read finds nothing more to set aside
    assert journal.tasks() == [_record(body="good")]
    assert journal.dead_letter_count() == 6


def test_a_single_read_of_an_unreadable_row_sets_it_aside_too(
    journal: Journal, journal_path: Path
) -> None:
    journal.put_task("t", _record())
    _sql(journal_path, "UPDATE tasks SET record = ? WHERE id = 't'", GARBAGE)
    assert journal.get_task("t") is None
    [letter] = journal.dead_letters()
    assert (letter["source"], letter["key"], letter["size"]) == ("tasks", "t", len(GARBAGE))
    assert journal.dead_letter_raw(letter["id"]) == GARBAGE  # kept as it was stored


def test_memory_lease_lock_and_pool_rows_that_cannot_be_read_back_are_set_aside(
    journal: Journal, journal_path: Path
) -> None:
    journal.put_memory("ns", "good", 1, None)
    journal.put_memory("ns", "garbage", 2, None)
    journal.put_memory("ns", "expiry", 3, None)
    _sql(journal_path, "UPDATE memory SET value = ? WHERE key = 'garbage'", GARBAGE)
    _sql(journal_path, "UPDATE memory SET expires_at_ms = 'soon' WHERE key = 'expiry'")
    journal.put_lease("good", "a", {"gpu": 1}, 1)
    journal.put_lease("bad", "a", {"gpu": 1}, 2)
    _sql(
        journal_path,
        "UPDATE leases SET amounts = ? WHERE id = 'bad'",
        msgpack.packb({"gpu": "one"}),
    )
    journal.put_lock("/good", "a", None)
    journal.put_lock("/bad", "a", None)
    _sql(journal_path, "UPDATE locks SET owner = ? WHERE path = '/bad'", b"\x00")
    journal.put_pool("good", 1)
    journal.put_pool("bad", 1)
    _sql(journal_path, "UPDATE pools SET capacity = 'lots' WHERE name = 'bad'")

    assert journal.all_memory_items() == [("ns", "good", 1, None)]
    assert [lease["lease_id"] for lease in journal.leases()] == ["good"]
    assert [lock["path"] for lock in journal.locks()] == ["/good"]
    assert journal.pools() == {"good": 1.0}
    assert _letters(journal) == [
        ("leases", "bad", "its amounts are {'gpu': 'one'}, not a map of pool to amount > 0"),
        ("locks", "/bad", "its owner is b'\\x00', not a string"),
        ("memory", "ns/expiry", "its expiry is 'soon', not epoch milliseconds"),
        ("memory", "ns/garbage", f"its value {UNREADABLE}"),
        ("pools", "bad", "its capacity is 'lots', not a number >= 0"),
    ]
    raw = {
        (d["source"], d["key"]): journal.dead_letter_raw(d["id"]) for d in journal.dead_letters()
    }
    assert raw["leases", "bad"] == msgpack.packb({"gpu": "one"})  # the blob as it was stored
    assert raw["locks", "/bad"] == "'/bad', X'00', NULL"  # a row without a blob: its columns
    assert raw["pools", "bad"] == "'bad', 'lots'"


def test_the_dead_letters_keep_the_newest(journal: Journal, journal_path: Path) -> None:
    over = 3
    with journal.transaction():
        for i in range(DEAD_LETTERS_KEPT + over):
            journal.put_task(f"t{i:05}", _record())
    _sql(journal_path, "UPDATE tasks SET record = ?", GARBAGE)
    assert journal.tasks() == []  # read in id order: t00000 is set aside first
    assert journal.dead_letter_count() == DEAD_LETTERS_KEPT
    newest = journal.dead_letters(DEAD_LETTERS_KEPT)
    assert newest[0]["key"] == f"t{DEAD_LETTERS_KEPT + over - 1:05}"
    assert newest[-1]["key"] == f"t{over:05}"  # the oldest three went


# -- the schema -----------------------------------------------------------------------------------

# A journal as macp wrote it before dead letters (schema version 1).
VERSION_1 = """
CREATE TABLE tasks (id TEXT PRIMARY KEY, state TEXT NOT NULL, updated_ms INTEGER NOT NULL,
                    record BLOB NOT NULL);
CREATE INDEX tasks_by_state ON tasks (state, updated_ms);
CREATE TABLE workflows (id TEXT PRIMARY KEY, state TEXT NOT NULL, updated_ms INTEGER NOT NULL,
                        record BLOB NOT NULL);
CREATE INDEX workflows_by_state ON workflows (state, updated_ms);
CREATE TABLE memory (namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                     expires_at_ms INTEGER, PRIMARY KEY (namespace, key)) WITHOUT ROWID;
CREATE INDEX memory_by_expiry ON memory (expires_at_ms) WHERE expires_at_ms IS NOT NULL;
CREATE TABLE leases (id TEXT PRIMARY KEY, owner TEXT NOT NULL, amounts BLOB NOT NULL,
                     created_ms INTEGER NOT NULL);
CREATE INDEX leases_by_owner ON leases (owner);
CREATE TABLE locks (path TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at_ms INTEGER);
CREATE TABLE pools (name TEXT PRIMARY KEY, capacity REAL NOT NULL);
PRAGMA user_version = 1;
"""


def test_a_version_1_journal_is_migrated_and_keeps_its_rows(journal_path: Path) -> None:
    conn = sqlite3.connect(journal_path)
    try:
        conn.executescript(VERSION_1)
        with conn:
            conn.execute(
                "INSERT INTO tasks VALUES ('t1', 'done', 5, ?)", (msgpack.packb(_record()),)
            )
            conn.execute("INSERT INTO pools VALUES ('gpu', 2)")
    finally:
        conn.close()
    with Journal(journal_path) as journal:
        assert journal.tasks() == [_record()]
        assert journal.pools() == {"gpu": 2.0}
        assert journal.dead_letter_count() == 0
        journal.put_task("t2", _record())
        _sql(journal_path, "UPDATE tasks SET record = ? WHERE id = 't2'", GARBAGE)
        assert journal.tasks() == [_record()]
        assert journal.dead_letter_count() == 1
    conn = sqlite3.connect(journal_path)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        columns = [row[1] for row in conn.execute("PRAGMA table_info(dead_letters)")]
    finally:
        conn.close()
    assert (SCHEMA_VERSION, version) == (4, 4)
    assert columns == ["id", "source", "key", "raw", "reason", "time_ms"]


def test_a_new_journal_has_the_dead_letters_table(journal_path: Path) -> None:
    with Journal(journal_path) as journal:
        assert journal.dead_letters() == []
        assert journal.dead_letter_count() == 0
