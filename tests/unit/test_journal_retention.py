"""The journal's retention against a real SQLite file: finished records by finish time,
idempotency keys by index, pruning in batches, the file given back its free pages, and the
migration of a schema 2 file."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING, Any

import msgpack
import pytest

from macp.store import SCHEMA_VERSION, Journal

if TYPE_CHECKING:
    from pathlib import Path


def _task(i: int, *, finished_ms: int | None = None, key: str | None = None) -> dict[str, Any]:
    state = "pending" if finished_ms is None else "succeeded"
    return {"id": f"t{i:05}", "state": state, "updated_ms": finished_ms or 1,
            "finished_ms": finished_ms, "idempotency_key": key, "pad": "x" * 2000}  # fmt: skip


def _put(journal: Journal, *tasks: dict[str, Any]) -> None:
    with journal.transaction():
        for task in tasks:
            journal.put_task(task["id"], task)


def _ids(entries: list[tuple[str, Any]]) -> list[str]:
    return [task_id for task_id, _ in entries]


def test_unfinished_and_newest_finished_tasks_are_read_without_the_rest(journal: Journal) -> None:
    _put(journal, _task(0), *(_task(i, finished_ms=1000 - i) for i in range(1, 6)), _task(6))
    assert _ids(journal.unfinished_entries("tasks")) == ["t00000", "t00006"]
    assert _ids(journal.newest_finished_entries("tasks", 2)) == ["t00002", "t00001"]
    assert journal.newest_finished_entries("tasks", 0) == []
    assert (journal.count("tasks"), journal.count("tasks", finished=True)) == (7, 5)
    assert journal.count("tasks", finished=False) == 2


def test_a_key_finds_its_task_until_the_task_is_pruned(journal: Journal) -> None:
    _put(journal, _task(1, finished_ms=10, key="order-1"), _task(2, key="order-2"))
    found = journal.task_by_key("order-1")
    assert found is not None
    assert found[0] == "t00001"
    assert found[1]["idempotency_key"] == "order-1"
    assert journal.task_by_key("order-3") is None
    assert journal.prune("tasks", finished_before_ms=11, oldest=0, limit=10) == ["t00001"]
    assert journal.task_by_key("order-1") is None
    assert journal.task_by_key("order-2") is not None  # not finished: never pruned


def test_prune_deletes_the_oldest_finished_past_the_age_or_the_count_in_batches(
    journal: Journal,
) -> None:
    _put(journal, _task(0), *(_task(i, finished_ms=100 + i) for i in range(1, 11)))
    assert journal.prune("tasks", finished_before_ms=104, oldest=0, limit=2) == [
        "t00001", "t00002",
    ]  # fmt: skip
    assert journal.prune("tasks", finished_before_ms=104, oldest=0, limit=2) == ["t00003"]
    assert journal.prune("tasks", finished_before_ms=None, oldest=3, limit=2) == [
        "t00004", "t00005",
    ]  # fmt: skip
    assert journal.prune("tasks", finished_before_ms=None, oldest=1, limit=2) == ["t00006"]
    assert journal.prune("tasks", finished_before_ms=None, oldest=0, limit=2) == []
    assert journal.prune("tasks", finished_before_ms=108, oldest=1, limit=5) == [
        "t00007",
    ]  # fmt: skip
    assert _ids(journal.task_entries()) == ["t00000", "t00008", "t00009", "t00010"]


def test_prune_keeps_workflow_definitions_and_unfinished_runs(journal: Journal) -> None:
    journal.put_workflow("definition:w", {"id": "definition:w", "state": "definition",
                                          "updated_ms": 1})  # fmt: skip
    journal.put_workflow("r1", {"id": "r1", "state": "running", "updated_ms": 1,
                                "finished_ms": None})  # fmt: skip
    journal.put_workflow("r2", {"id": "r2", "state": "failed", "updated_ms": 5, "finished_ms": 5})
    assert journal.prune("workflows", finished_before_ms=10**15, oldest=9, limit=10) == ["r2"]
    assert _ids(journal.unfinished_entries("workflows")) == ["definition:w", "r1"]


def _pages(journal_path: Path) -> tuple[int, int]:
    """The file's pages, and how many of them are free (after a checkpoint of the WAL)."""
    with contextlib.closing(sqlite3.connect(journal_path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return db.execute("PRAGMA page_count").fetchone()[0], db.execute(
            "PRAGMA freelist_count"
        ).fetchone()[0]


def test_pages_freed_by_pruning_go_back_to_the_file_system_beyond_a_quarter_of_the_file(
    journal: Journal, journal_path: Path
) -> None:
    _put(journal, *(_task(i, finished_ms=i + 1) for i in range(2000)))
    with contextlib.closing(sqlite3.connect(journal_path)) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    for _ in range(4):
        assert len(journal.prune("tasks", finished_before_ms=None, oldest=475, limit=500)) == 475
    pages, free = _pages(journal_path)
    assert free > pages // 2
    size = journal_path.stat().st_size
    released = journal.release_free_pages()
    assert released == 512  # at most a few hundred pages at a time
    while (step := journal.release_free_pages()) > 0:
        released += step
    now, free = _pages(journal_path)
    assert now <= pages - released
    assert now // 4 - 1 <= free <= now // 4
    assert journal_path.stat().st_size == now * 4096 < size
    assert journal.release_free_pages() == 0


def test_an_unknown_table_is_refused(journal: Journal) -> None:
    with pytest.raises(ValueError, match=r"^table must be one of tasks, workflows, not 'memory'$"):
        journal.prune("memory", finished_before_ms=1, oldest=0, limit=1)


# A journal as macp wrote it before retention (schema version 2), as far as tasks go.
VERSION_2 = """
CREATE TABLE tasks (id TEXT PRIMARY KEY, state TEXT NOT NULL, updated_ms INTEGER NOT NULL,
                    record BLOB NOT NULL);
CREATE INDEX tasks_by_state ON tasks (state, updated_ms);
CREATE TABLE workflows (id TEXT PRIMARY KEY, state TEXT NOT NULL, updated_ms INTEGER NOT NULL,
                        record BLOB NOT NULL);
CREATE INDEX workflows_by_state ON workflows (state, updated_ms);
CREATE TABLE memory (namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                     expires_at_ms INTEGER, PRIMARY KEY (namespace, key)) WITHOUT ROWID;
CREATE TABLE leases (id TEXT PRIMARY KEY, owner TEXT NOT NULL, amounts BLOB NOT NULL,
                     created_ms INTEGER NOT NULL);
CREATE TABLE locks (path TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at_ms INTEGER);
CREATE TABLE pools (name TEXT PRIMARY KEY, capacity REAL NOT NULL);
CREATE TABLE dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,
                           key TEXT NOT NULL, raw BLOB, reason TEXT NOT NULL,
                           time_ms INTEGER NOT NULL);
PRAGMA user_version = 2;
"""


def test_a_version_2_journal_gets_keys_and_finish_times_from_its_records(
    journal_path: Path,
) -> None:
    rows = [
        ("t1", "succeeded", 50, msgpack.packb({**_task(1, finished_ms=50, key="k1")})),
        ("t2", "running", 60, msgpack.packb({**_task(2, key="k2")})),
        ("t3", "failed", 70, b"\xc1 not msgpack"),
    ]
    with contextlib.closing(sqlite3.connect(journal_path)) as db:
        db.executescript(VERSION_2)
        with db:
            db.executemany("INSERT INTO tasks VALUES (?, ?, ?, ?)", rows)
            db.execute("INSERT INTO workflows VALUES ('r', 'cancelled', 80, x'80')")
    with Journal(journal_path) as journal:
        found = journal.task_by_key("k1")
        assert found is not None
        assert found[0] == "t1"
        assert _ids(journal.unfinished_entries("tasks")) == ["t2"]
        assert journal.prune("tasks", finished_before_ms=71, oldest=0, limit=9) == ["t1", "t3"]
        assert journal.prune("workflows", finished_before_ms=81, oldest=0, limit=9) == ["r"]
    with contextlib.closing(sqlite3.connect(journal_path)) as db:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        auto_vacuum = db.execute("PRAGMA auto_vacuum").fetchone()[0]
    assert (SCHEMA_VERSION, version, auto_vacuum) == (4, 4, 2)
