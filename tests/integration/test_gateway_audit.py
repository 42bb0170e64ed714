"""The audit log: every call through the guard, allowed or not, is one record in the gateway's
own SQLite file (append-only, enforced by SQLite), written off the event loop, and read back by
``macp gateway audit``."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import sqlite3
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, cast

import pytest

from macp import ConfigError, InvalidParams, RateLimited, Unauthorized
from macp.cli._gateway_audit import since_ms
from macp.gateway import OPERATIONS, Guard, Principal, Role, Transport
from macp.gateway.audit import AuditLog, AuditRecord, default_audit_path, digest, read_records
from macp.gateway.quotas import QuotaLimits, Quotas

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from macp.gateway import Runtime

pytestmark = pytest.mark.integration

VIEWER = Principal("ann", Role.VIEWER, "jwt")
NO_RUNTIME = cast("Runtime", None)  # ping and refused calls never reach the runtime


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[AuditLog]:
    log = AuditLog(tmp_path / "audit.sqlite3", gateway="gw1")
    yield log
    log.close()


def call(guard: Guard, name: str, arguments: dict[str, Any] | None, principal: Principal) -> Any:
    return asyncio.run(
        guard.call(
            OPERATIONS[name],
            NO_RUNTIME,
            arguments,
            principal=principal,
            transport=Transport.JSONRPC,
            connection="7",
        )
    )


def test_allowed_denied_failed_and_limited_calls_are_one_record_each(audit: AuditLog) -> None:
    guard = Guard(audit=audit, quotas=Quotas(QuotaLimits(requests_per_s=3)))
    before_ms = time.time_ns() // 1_000_000
    assert call(guard, "ping", None, VIEWER)["status"] == "ok"
    with pytest.raises(Unauthorized, match=r"^ann \(viewer\) may not call task_cancel"):
        call(guard, "task_cancel", {"task_id": "t-1"}, VIEWER)
    with pytest.raises(InvalidParams, match="unknown key 'pad'"):
        call(guard, "ping", {"pad": "secret value"}, VIEWER)
    with pytest.raises(RateLimited, match=r"^ann calls more than 3 operations a second"):
        call(guard, "ping", None, VIEWER)
    assert audit.flush()

    records = read_records(audit.path)
    assert [(r.operation, r.outcome, r.code) for r in records] == [
        ("ping", "ok", None),
        ("task_cancel", "denied", -32006),
        ("ping", "error", -32602),
        ("ping", "limited", -32000),
    ]
    for record in records:
        assert (record.gateway, record.principal, record.role, record.via) == (
            "gw1", "ann", "viewer", "jwt")  # fmt: skip
        assert (record.transport, record.connection) == ("jsonrpc", "7")
        assert before_ms <= record.ts_ms <= time.time_ns() // 1_000_000
        assert 0 <= record.duration_ms < 5000
    canonical = b'{"task_id":"t-1"}'
    assert records[1].params_sha256 == hashlib.sha256(canonical).hexdigest()
    assert records[1].params_bytes == len(canonical)
    assert records[0].params_sha256 == hashlib.sha256(b"{}").hexdigest()
    raw = audit.path.read_bytes() + audit.path.with_name("audit.sqlite3-wal").read_bytes()
    assert b"secret value" not in raw  # the digest, never the values
    assert guard.counts == {
        (Transport.JSONRPC, "ok"): 1, (Transport.JSONRPC, "denied"): 1,
        (Transport.JSONRPC, "error"): 1, (Transport.JSONRPC, "limited"): 1,
    }  # fmt: skip


def test_the_digest_is_of_canonical_json_whatever_the_key_order() -> None:
    first = digest({"b": [1, 2], "a": "é"})
    assert first == digest({"a": "é", "b": [1, 2]})
    text = '{"a":"é","b":[1,2]}'.encode()
    assert first == (hashlib.sha256(text).hexdigest(), len(text))


def test_the_log_is_append_only_sqlite_refuses_update_and_delete(audit: AuditLog) -> None:
    call(Guard(audit=audit), "ping", None, VIEWER)
    assert audit.flush()
    db = sqlite3.connect(audit.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only: a record cannot be changed"):
            db.execute("UPDATE audit SET outcome = 'ok', principal = 'someone'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only: a record cannot be deleted"):
            db.execute("DELETE FROM audit")
        with pytest.raises(sqlite3.IntegrityError, match="append-only: a record cannot be deleted"):
            db.execute("DELETE FROM audit WHERE operation = 'ping'")
        db.rollback()
    finally:
        db.close()
    assert [(r.principal, r.outcome) for r in read_records(audit.path)] == [("ann", "ok")]


def test_the_log_is_reopened_and_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    for name in ("gw1", "gw2"):
        with AuditLog(path, gateway=name) as log:
            call(Guard(audit=log), "ping", None, VIEWER)
    assert [r.gateway for r in read_records(path)] == ["gw1", "gw2"]
    assert [r.gateway for r in read_records(path, limit=1)] == ["gw2"]


def test_the_default_file_is_in_the_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MACP_DATA_DIR", str(tmp_path / "data"))
    assert default_audit_path() == tmp_path / "data" / "gateway" / "audit.sqlite3"
    with AuditLog(gateway="gw") as log:
        call(Guard(audit=log), "ping", None, VIEWER)
    assert [r.gateway for r in read_records()] == ["gw"]


def test_reading_a_missing_log_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^no audit log at .*nowhere\.sqlite3; pass --db PATH"):
        read_records(tmp_path / "nowhere.sqlite3")


def test_a_locked_file_neither_blocks_the_loop_nor_grows_memory_and_says_what_it_lost(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.sqlite3"
    log = AuditLog(path, gateway="gw", max_pending=20, batch=5)
    guard = Guard(audit=log)
    locker = sqlite3.connect(path, timeout=0)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # the writer cannot write: a disk that stalls

        async def many_calls() -> float:
            started = time.perf_counter()
            for _ in range(100):
                await guard.call(OPERATIONS["ping"], NO_RUNTIME, None,
                                 principal=VIEWER, transport=Transport.MCP_HTTP)  # fmt: skip
            return time.perf_counter() - started

        elapsed_s = asyncio.run(many_calls())
        # 100 calls answered while no record could be written: the loop never waited on disk
        assert elapsed_s < 1.0
        assert guard.counts[Transport.MCP_HTTP, "ok"] == 100
        assert log.written == 0
    finally:
        locker.rollback()
        locker.close()
    assert log.flush()
    log.close()
    records = read_records(path)
    calls = [r for r in records if r.outcome == "ok"]
    dropped = [r for r in records if r.outcome == "dropped"]
    # at most max_pending, and the batch the writer holds, kept; the rest counted, not lost silently
    assert 20 <= len(calls) <= 25
    assert len(dropped) == 1
    assert dropped[0].params_bytes == 100 - len(calls)


def test_a_file_that_is_not_an_audit_log_is_refused_in_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database " * 100)
    with pytest.raises(ConfigError, match=r"notes\.txt is not an audit log SQLite can write"):
        AuditLog(path)


def test_the_records_read_as_json(audit: AuditLog) -> None:
    call(Guard(audit=audit), "ping", None, VIEWER)
    assert audit.flush()
    (record,) = read_records(audit.path)
    assert json.loads(json.dumps(record.as_dict()))["operation"] == "ping"


def _record(ts_ms: int, principal: str, operation: str, outcome: str) -> AuditRecord:
    sha256, size = digest({"n": 1})
    code = {"ok": None, "denied": -32006, "limited": -32000}[outcome]
    return AuditRecord(ts_ms, "gw", principal, "viewer", "jwt", "rest", None, operation,
                       sha256, size, outcome, code, 1.5)  # fmt: skip


def macp_audit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "macp", "gateway", "audit", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_macp_gateway_audit_filters_by_time_and_principal(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    now_ms = time.time_ns() // 1_000_000
    with AuditLog(path) as log:
        log.put(_record(now_ms - 3 * 3600_000, "ann", "task_list", "ok"))  # 3 h ago
        log.put(_record(now_ms - 60_000, "ann", "task_cancel", "denied"))
        log.put(_record(now_ms - 30_000, "bob", "ping", "limited"))
        log.put(_record(now_ms - 10_000, "ann", "ping", "ok"))

    every = macp_audit("--db", str(path), "--json")
    assert every.returncode == 0, every.stderr
    assert [json.loads(line)["operation"] for line in every.stdout.splitlines()] == [
        "task_list", "task_cancel", "ping", "ping"]  # fmt: skip

    recent_ann = macp_audit("--db", str(path), "--json", "--since", "1h", "--principal", "ann")
    assert recent_ann.returncode == 0, recent_ann.stderr
    lines = [json.loads(line) for line in recent_ann.stdout.splitlines()]
    assert [(r["principal"], r["operation"], r["outcome"], r["code"]) for r in lines] == [
        ("ann", "task_cancel", "denied", -32006), ("ann", "ping", "ok", None)]  # fmt: skip
    assert lines[0]["params_sha256"] == digest({"n": 1})[0]

    since = dt.datetime.fromtimestamp((now_ms - 45_000) / 1000, dt.UTC).isoformat()
    text = macp_audit("--db", str(path), "--since", since)
    assert text.returncode == 0, text.stderr
    rows = text.stdout.splitlines()
    assert len(rows) == 2
    assert "bob (viewer, jwt)" in rows[0]
    assert " limited " in rows[0]
    assert "-32000" in rows[0]

    last = macp_audit("--db", str(path), "--json", "--limit", "1")
    assert [json.loads(line)["principal"] for line in last.stdout.splitlines()] == ["ann"]


def test_macp_gateway_audit_refuses_a_bad_since_and_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    AuditLog(path).close()
    bad = macp_audit("--db", str(path), "--since", "yesterday")
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "error: --since 'yesterday' is neither a duration (90s, 15m, 2h, 1d) nor an ISO 8601 "
        "time (2025-06-01T12:00:00)"
    )
    missing = macp_audit("--db", str(tmp_path / "none.sqlite3"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: no audit log at ")


def test_since_takes_durations_and_times() -> None:
    now_s = 1_000_000.0
    assert since_ms("90s", now_s=now_s) == (now_s - 90) * 1000
    assert since_ms("1h30m", now_s=now_s) == (now_s - 5400) * 1000
    assert since_ms("2025-06-01T12:00:00+00:00") == 1748779200000
    with pytest.raises(ConfigError, match=r"^--since '5 minutes' is neither a duration"):
        since_ms("5 minutes")
