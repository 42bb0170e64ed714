"""The journal's teams tables: sessions, their bounded message logs, projects and goals; a row
that cannot be read back is set aside, never a failure of its reader."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from macp.envelope import Wire
    from macp.store import Journal

GARBAGE = b"\xc1 not msgpack"


def _record(id_: str) -> dict[str, Wire]:
    return {"id": id_, "state": "open", "updated_ms": 1}


def test_records_are_kept_by_id_and_read_back(journal: Journal) -> None:
    journal.put_session("s1", _record("s1"))
    journal.put_session("s1", {**_record("s1"), "state": "closed", "finished_ms": 5})
    journal.put_project("p1", _record("p1"))
    journal.put_goal("g1", _record("g1"))
    assert journal.sessions() == [{**_record("s1"), "state": "closed", "finished_ms": 5}]
    assert (journal.projects(), journal.goals()) == ([_record("p1")], [_record("g1")])


def test_a_sessions_log_keeps_its_newest_messages(journal: Journal) -> None:
    for seq in range(1, 8):
        journal.add_session_message("s1", seq, {"seq": seq}, keep=3)
    journal.add_session_message("s2", 1, {"seq": 1}, keep=3)
    assert [m["seq"] for m in journal.session_messages("s1")] == [5, 6, 7]
    assert [m["seq"] for m in journal.session_messages("s1", after_seq=5, limit=1)] == [6]
    assert journal.last_session_seq("s1") == 7
    assert journal.last_session_seq("nope") == 0


def test_rows_that_cannot_be_read_back_are_set_aside(journal: Journal, journal_path: Path) -> None:
    journal.put_session("s1", _record("s1"))
    journal.put_goal("g1", _record("g1"))
    journal.add_session_message("s1", 1, {"seq": 1}, keep=10)
    journal.add_session_message("s1", 2, {"seq": 2}, keep=10)
    with contextlib.closing(sqlite3.connect(journal_path)) as db, db:
        db.execute("UPDATE sessions SET record = ?", (GARBAGE,))
        db.execute("UPDATE session_messages SET record = ? WHERE seq = 1", (GARBAGE,))
    assert journal.sessions() == []
    assert journal.session_messages("s1") == [{"seq": 2}]
    assert journal.dead_letter_count() == 2
    assert journal.set_aside("goals", ("g1",), "not a goal: its status is 'x'") is True
    assert journal.goals() == []
    assert sorted(letter["source"] for letter in journal.dead_letters()) == [
        "goals", "session_messages", "sessions",
    ]  # fmt: skip


def test_a_session_is_forgotten_with_its_messages(journal: Journal) -> None:
    for session_id in ("s1", "s2"):
        journal.put_session(session_id, _record(session_id))
        journal.add_session_message(session_id, 1, {"seq": 1}, keep=10)
    journal.delete_session("s1")
    assert [s["id"] for s in journal.sessions()] == ["s2"]
    assert (journal.session_messages("s1"), journal.session_messages("s2")) == ([], [{"seq": 1}])
