"""The journal against a real SQLite file: every table, WAL, transactions, two connections."""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING

import pytest

import macp
from macp.store import SCHEMA_VERSION, Journal, default_journal_path, open_journal

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "journal.sqlite3"


def _task(state: str, updated_ms: int, **extra: macp.Wire) -> dict[str, macp.Wire]:
    return {"state": state, "updated_ms": updated_ms, **extra}


def test_open_creates_the_parent_directories_and_the_schema(journal_path: Path) -> None:
    assert not journal_path.parent.exists()
    with Journal(journal_path):
        assert journal_path.exists()
    with sqlite3.connect(journal_path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    assert {"tasks", "workflows", "memory", "leases", "locks", "pools"} <= tables
    assert version == SCHEMA_VERSION


def test_the_journal_runs_in_wal_mode(journal: Journal, journal_path: Path) -> None:
    conn = sqlite3.connect(journal_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert journal_path.with_name(journal_path.name + "-wal").exists()


def test_tasks_round_trip_and_filter_by_state(journal: Journal) -> None:
    journal.put_task("t1", _task("running", 20, body={"text": "hi"}, tries=[1, 2]))
    journal.put_task("t2", _task("done", 10, result=b"\x00\x01"))
    journal.put_task("t3", _task("queued", 30))
    assert journal.get_task("t1") == _task("running", 20, body={"text": "hi"}, tries=[1, 2])
    assert journal.get_task("t2") == _task("done", 10, result=b"\x00\x01")
    assert journal.get_task("nope") is None
    assert [t["updated_ms"] for t in journal.tasks()] == [10, 20, 30]
    assert [t["state"] for t in journal.tasks(["running", "queued"])] == ["running", "queued"]
    assert [t["state"] for t in journal.tasks("done")] == ["done"]
    assert journal.tasks([]) == []
    journal.put_task("t1", _task("done", 40))
    assert [t["updated_ms"] for t in journal.tasks({"done"})] == [10, 40]
    assert journal.delete_task("t1") is True
    assert journal.delete_task("t1") is False
    assert journal.get_task("t1") is None


def test_workflows_round_trip_and_filter_by_state(journal: Journal) -> None:
    journal.put_workflow("run-1", _task("running", 5, steps={"a": "done", "b": None}))
    journal.put_workflow("run-2", _task("failed", 6))
    assert journal.get_workflow("run-1") == _task("running", 5, steps={"a": "done", "b": None})
    assert [w["state"] for w in journal.workflows()] == ["running", "failed"]
    assert journal.workflows(["failed"]) == [_task("failed", 6)]
    assert journal.delete_workflow("run-2") is True
    assert journal.get_workflow("run-2") is None


def test_a_record_without_state_or_updated_ms_is_refused(journal: Journal) -> None:
    with pytest.raises(
        macp.InvalidParams, match=r"a task record needs 'state' \(a string\) and 'updated_ms'"
    ):
        journal.put_task("t1", {"state": "running"})
    with pytest.raises(macp.InvalidParams, match="a workflow record needs"):
        journal.put_workflow("w1", {"state": 3, "updated_ms": 1})
    assert journal.tasks() == []


def test_a_value_msgpack_cannot_write_is_refused(journal: Journal) -> None:
    with pytest.raises(
        macp.InvalidParams,
        match=r"^the memory value cannot be stored: value: set is not msgpack-native; use only ",
    ):
        journal.put_memory("ns", "k", {1, 2}, None)  # type: ignore[arg-type]


def test_memory_round_trips_lists_by_prefix_and_deletes(journal: Journal) -> None:
    journal.put_memory("notes", "a/1", {"x": [1, 2.5, None]}, None)
    journal.put_memory("notes", "a/2", "two", 1_000)
    journal.put_memory("notes", "b/1", b"bytes", None)
    journal.put_memory("other", "a/1", value=True, expires_at_ms=None)
    assert journal.get_memory("notes", "a/1") == ({"x": [1, 2.5, None]}, None)
    assert journal.get_memory("notes", "a/2") == ("two", 1_000)
    assert journal.get_memory("notes", "zz") is None
    assert journal.memory_items("notes", "a/") == [
        ("a/1", {"x": [1, 2.5, None]}, None),
        ("a/2", "two", 1_000),
    ]
    assert [k for k, _, _ in journal.memory_items("notes")] == ["a/1", "a/2", "b/1"]
    assert journal.memory_items("nobody") == []
    assert journal.all_memory_items()[-1] == ("other", "a/1", True, None)
    journal.put_memory("notes", "a/2", "replaced", None)
    assert journal.get_memory("notes", "a/2") == ("replaced", None)
    assert journal.delete_memory("notes", "a/2") is True
    assert journal.delete_memory("notes", "a/2") is False


def test_a_prefix_with_like_wildcards_matches_literally(journal: Journal) -> None:
    journal.put_memory("ns", "a%b", 1, None)
    journal.put_memory("ns", "axb", 2, None)
    journal.put_memory("ns", "a_c", 3, None)
    assert [k for k, _, _ in journal.memory_items("ns", "a%")] == ["a%b"]
    assert [k for k, _, _ in journal.memory_items("ns", "a_")] == ["a_c"]


def test_purge_deletes_only_the_keys_expired_at_that_time(journal: Journal) -> None:
    journal.put_memory("ns", "old", 1, 100)
    journal.put_memory("ns", "edge", 2, 200)
    journal.put_memory("ns", "new", 3, 300)
    journal.put_memory("ns", "forever", 4, None)
    assert journal.purge_expired_memory(200) == 2
    assert [k for k, _, _ in journal.memory_items("ns")] == ["forever", "new"]
    assert journal.purge_expired_memory(200) == 0


def test_leases_round_trip(journal: Journal) -> None:
    journal.put_lease("l1", "agent-a", {"gpu": 1.0, "cpu": 2.5}, 10)
    journal.put_lease("l2", "agent-b", {"cpu": 1.0}, 20)
    assert journal.leases() == [
        {
            "lease_id": "l1",
            "owner": "agent-a",
            "amounts": {"gpu": 1.0, "cpu": 2.5},
            "created_ms": 10,
        },
        {"lease_id": "l2", "owner": "agent-b", "amounts": {"cpu": 1.0}, "created_ms": 20},
    ]
    assert journal.delete_lease("l1") is True
    assert journal.delete_lease("l1") is False
    assert [lease["lease_id"] for lease in journal.leases()] == ["l2"]


def test_locks_round_trip(journal: Journal) -> None:
    journal.put_lock("/data/b", "agent-b", None)
    journal.put_lock("/data/a", "agent-a", 5_000)
    assert journal.locks() == [
        {"path": "/data/a", "owner": "agent-a", "expires_at_ms": 5_000},
        {"path": "/data/b", "owner": "agent-b", "expires_at_ms": None},
    ]
    journal.put_lock("/data/a", "agent-a", 9_000)
    assert journal.locks()[0]["expires_at_ms"] == 9_000
    assert journal.delete_lock("/data/a") is True
    assert journal.delete_lock("/data/a") is False


def test_pools_round_trip(journal: Journal) -> None:
    journal.put_pool("gpu", 2)
    journal.put_pool("cpu", 8.5)
    journal.put_pool("gpu", 4)
    assert journal.pools() == {"cpu": 8.5, "gpu": 4.0}


def test_a_second_journal_on_the_same_file_sees_committed_writes(
    journal: Journal, journal_path: Path
) -> None:
    with Journal(journal_path) as other:
        journal.put_memory("ns", "k", "v", None)
        assert other.get_memory("ns", "k") == ("v", None)
        other.put_pool("gpu", 1)
        assert journal.pools() == {"gpu": 1.0}


def test_writes_in_a_transaction_are_seen_elsewhere_only_after_commit(
    journal: Journal, journal_path: Path
) -> None:
    with Journal(journal_path) as other:
        with journal.transaction():
            journal.put_pool("gpu", 1)
            journal.put_lease("l1", "a", {"gpu": 1}, 1)
            assert other.pools() == {}
            assert journal.pools() == {"gpu": 1.0}
        assert other.pools() == {"gpu": 1.0}
        assert len(other.leases()) == 1


def test_a_transaction_that_raises_rolls_back_every_write(journal: Journal) -> None:
    journal.put_pool("cpu", 1)

    def fail_halfway() -> None:
        with journal.transaction():
            journal.put_pool("gpu", 2)
            journal.put_pool("cpu", 99)
            with journal.transaction():  # a nested block joins the outer one
                journal.put_lock("/x", "a", None)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_halfway()
    assert journal.pools() == {"cpu": 1.0}
    assert journal.locks() == []
    journal.put_pool("after", 1)  # the journal is usable again
    assert "after" in journal.pools()


def test_a_writer_waits_for_another_connections_transaction(
    journal: Journal, journal_path: Path
) -> None:
    other = Journal(journal_path).open()
    inside, done = threading.Event(), threading.Event()

    def write_later() -> None:
        inside.wait(5)
        other.put_pool("waited", 1)  # blocks until the transaction below commits
        done.set()

    writer = threading.Thread(target=write_later)
    writer.start()
    try:
        with journal.transaction():
            journal.put_pool("first", 1)
            inside.set()
            assert not done.wait(0.2)
        assert done.wait(5)
    finally:
        writer.join(5)
        other.close()
    assert journal.pools() == {"first": 1.0, "waited": 1.0}


def test_data_survives_close_and_reopen(journal_path: Path) -> None:
    with Journal(journal_path) as journal:
        journal.put_task("t1", _task("running", 1))
        journal.put_memory("ns", "k", [1, 2], 99)
    with Journal(journal_path) as journal:
        assert journal.get_task("t1") == _task("running", 1)
        assert journal.get_memory("ns", "k") == ([1, 2], 99)


def test_a_closed_journal_refuses_work_and_closing_twice_is_harmless(journal_path: Path) -> None:
    journal = Journal(journal_path).open()
    journal.close()
    journal.close()
    with pytest.raises(macp.InternalError, match=r"journal '.*journal.sqlite3' is closed"):
        journal.pools()


def test_a_path_under_a_regular_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    bad = tmp_path / "file" / "journal.sqlite3"
    with pytest.raises(
        macp.ConfigError,
        match=r"cannot open the journal '.*file/journal.sqlite3' .*; set 'journal' to a writable",
    ):
        Journal(bad).open()


def test_a_directory_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(macp.ConfigError, match=r"cannot open the journal .*unable to open"):
        Journal(tmp_path).open()


def test_a_file_that_is_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.sqlite3"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(macp.ConfigError, match=r"cannot open the journal .*not a database"):
        Journal(bad).open()


def test_a_journal_from_a_newer_macp_is_refused(journal_path: Path) -> None:
    Journal(journal_path).open().close()
    conn = sqlite3.connect(journal_path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(macp.ConfigError, match="newer than this macp's"):
        Journal(journal_path).open()


def test_an_unknown_synchronous_setting_is_a_config_error(journal_path: Path) -> None:
    with pytest.raises(macp.ConfigError, match="journal synchronous must be one of EXTRA, FULL"):
        Journal(journal_path, synchronous="sometimes")


def test_the_default_path_is_under_the_data_dir_or_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MACP_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_journal_path("head") == tmp_path / ".macp" / "head" / "journal.sqlite3"
    monkeypatch.setenv("MACP_DATA_DIR", str(tmp_path / "data"))
    assert default_journal_path("head") == tmp_path / "data" / "head" / "journal.sqlite3"
    with open_journal(None, "head") as journal:
        assert journal.path == tmp_path / "data" / "head" / "journal.sqlite3"
    with pytest.raises(macp.ConfigError, match="config 'journal' must be a file path, not 3"):
        open_journal(3, "head")


def test_a_journal_closed_inside_a_transaction_still_rolls_back_after_reopening(
    journal_path: Path,
) -> None:
    journal = Journal(journal_path).open()

    def close_halfway() -> None:
        with journal.transaction():
            journal.put_pool("lost", 1)
            journal.close()

    with pytest.raises(macp.InternalError, match="is closed; open it first"):
        close_halfway()

    def fail_halfway() -> None:
        with journal.transaction():
            journal.put_pool("rolled-back", 1)
            raise RuntimeError("boom")

    with journal.open():
        with pytest.raises(RuntimeError, match="boom"):
            fail_halfway()
        assert journal.pools() == {}
