"""The journal's task history: queries by state, type, agent and time, newest first, counted
in SQL; and a schema 3 file migrated to the history columns."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING, Any

import msgpack
import pytest

from macp import _journal_history as journal_history
from macp._journal_history import TaskQuery
from macp.actors.coordinator.task import TaskState
from macp.store import Journal

if TYPE_CHECKING:
    from pathlib import Path


def _task(i: int, state: str, type_: str, agent: str | None, *, updated_ms: int) -> dict[str, Any]:
    return {"id": f"t{i}", "state": state, "type": type_, "agent": agent, "created_ms": i,
            "updated_ms": updated_ms}  # fmt: skip


@pytest.fixture
def journal(tmp_path: Path) -> Any:
    with Journal(tmp_path / "j.sqlite3") as journal:
        rows = [
            _task(1, "succeeded", "add", "w1@n1", updated_ms=10),
            _task(2, "failed", "add", "w1@n2", updated_ms=20),
            _task(3, "succeeded", "mul", "w2@n1", updated_ms=30),
            _task(4, "pending", "add", None, updated_ms=40),
            _task(5, "running", "mul", "w10@n1", updated_ms=50),
        ]
        with journal.transaction():
            for row in rows:
                journal.put_task(row["id"], row)
        yield journal


def _ids(journal: Journal, query: TaskQuery) -> list[str]:
    matching = sum(journal.task_counts(query).values())
    return [task_id for task_id, _ in journal.task_page(query, matching)]


def test_tasks_come_newest_first_up_to_the_limit(journal: Journal) -> None:
    assert _ids(journal, TaskQuery()) == ["t5", "t4", "t3", "t2", "t1"]
    assert _ids(journal, TaskQuery(limit=2)) == ["t5", "t4"]
    assert journal.task_counts(TaskQuery(limit=2)) == {
        "succeeded": 2, "failed": 1, "pending": 1, "running": 1,
    }  # fmt: skip


def test_each_filter_narrows_the_tasks_and_their_counts(journal: Journal) -> None:
    assert _ids(journal, TaskQuery(states=("succeeded", "failed"))) == ["t3", "t2", "t1"]
    assert _ids(journal, TaskQuery(type="add")) == ["t4", "t2", "t1"]
    assert _ids(journal, TaskQuery(agent="w1@n1")) == ["t1"]
    assert _ids(journal, TaskQuery(agent="w1")) == ["t2", "t1"]  # its name: not w10
    assert _ids(journal, TaskQuery(agent="w")) == []
    assert _ids(journal, TaskQuery(since_ms=30)) == ["t5", "t4", "t3"]
    assert journal.task_counts(TaskQuery(type="add", since_ms=20)) == {"failed": 1, "pending": 1}
    assert (journal.task_counts(TaskQuery(states=())), _ids(journal, TaskQuery(states=()))) == (
        {}, [])  # fmt: skip


def test_totals_count_every_task_by_type_and_by_agent(journal: Journal) -> None:
    assert journal.task_totals() == {
        "types": {"add": {"succeeded": 1, "failed": 1, "pending": 1},
                  "mul": {"succeeded": 1, "running": 1}},
        "agents": {"w1@n1": {"succeeded": 1}, "w1@n2": {"failed": 1}, "w2@n1": {"succeeded": 1},
                   "w10@n1": {"running": 1}},
    }  # fmt: skip


def test_a_schema_3_journal_gets_the_history_columns_from_its_records(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with Journal(path):
        pass
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # back to schema 3's table
        db.execute("DROP TABLE tasks")
        db.execute(
            "CREATE TABLE tasks (id TEXT PRIMARY KEY, state TEXT NOT NULL, updated_ms INTEGER "
            "NOT NULL, record BLOB NOT NULL, key TEXT, finished_ms INTEGER)"
        )
        record = _task(7, "succeeded", "add", "w1@n1", updated_ms=70)
        db.execute("INSERT INTO tasks VALUES ('t7', 'succeeded', 70, ?, NULL, 70)",
                   (msgpack.packb(record),))  # fmt: skip
        db.execute("INSERT INTO tasks VALUES ('t8', 'failed', 80, x'c1', NULL, 80)")
        db.execute("PRAGMA user_version = 3")
    with Journal(path) as journal:
        assert _ids(journal, TaskQuery(type="add", agent="w1")) == ["t7"]
        assert journal.task_counts(TaskQuery()) == {"succeeded": 1, "failed": 1}


def test_the_states_a_since_query_ranges_over_are_every_state_a_task_has() -> None:
    assert set(journal_history._STATES) == {s.value for s in TaskState}
