"""The head survives any input: a value it cannot store fails one task, and a journal record it
cannot replay is set aside (a dead letter), never a crash loop. Real node processes, a real
journal file, corrupted on purpose."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

import msgpack
import pytest
from topology_procs import macp_cli

import macp

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp.testing import LocalCluster

pytestmark = pytest.mark.fault

GARBAGE = b"\xc1\xc1 not msgpack"  # 0xc1 is never used by msgpack


# -- a value the head cannot store ----------------------------------------------------------------


def test_a_head_agent_returning_a_set_fails_its_task_and_the_head_restarts_on_its_journal(
    local_cluster: Callable[..., LocalCluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The strict setting off, as by default: the agent's reply reaches the coordinator on the
    # same node as the object it is, set and all.
    monkeypatch.setenv("MACP_STRICT", "0")
    local = local_cluster(head={"bad": "agents:Unstorable"}, processes=True)
    head, cluster = local.process("head"), local.cluster
    task = cluster.submit("unstorable", {}, agent="bad@head", timeout_s=5)
    with pytest.raises(macp.InvalidParams, match=r"\bset\b"):
        task.result(timeout_s=10)  # at once: not an AskTimeout
    status = cluster.status(task.id)
    assert (status["state"], status["error"]["error"]) == ("failed", "InvalidParams")
    assert status["attempts"] == 1  # refused, not retried
    echo = cluster.submit("echo", {"n": 1}, agent="bad@head").result(timeout_s=10)
    assert echo == {"echo": {"n": 1}}
    assert head.running()
    assert head.logs("actor.crashed") == []
    assert head.terminate() == 0

    local.restart("head")  # on its journal
    restarted = local.process("head")
    assert cluster.status(task.id)["state"] == "failed"
    with pytest.raises(macp.InvalidParams, match=r"\bset\b"):
        cluster.result(task.id, timeout_s=10)
    echo = cluster.submit("echo", {"n": 2}, agent="bad@head").result(timeout_s=10)
    assert echo == {"echo": {"n": 2}}
    assert cluster.dead_letters()["count"] == 0
    assert restarted.logs("actor.crashed") == []


# -- a journal corrupted on purpose ---------------------------------------------------------------

WORKFLOW = {"name": "squares", "steps": [{"id": "sq", "type": "square", "body": "${input}"}]}
OTHER = {"name": "other", "steps": [{"id": "one", "type": "square"}]}


def _fill(cluster: macp.Cluster) -> dict[str, Any]:
    """Tasks, workflow definitions, a finished run and memory keys: the journal's rows."""
    tasks = [cluster.submit("square", {"x": x}) for x in (2, 3, 4)]
    assert [t.result(timeout_s=10)["square"] for t in tasks] == [4, 9, 16]
    cluster.define(WORKFLOW)
    cluster.define(OTHER)
    run = cluster.run("squares", {"x": 5})
    assert run.result(timeout_s=10) == {"sq": {"square": 25, "by": "sq@head"}}
    for key in ("a", "b", "c"):
        cluster.memory("put", namespace="notes", key=key, value={"key": key})
    return {"tasks": [t.id for t in tasks], "run": run.id}


def _corrupt(journal: Path, ids: dict[str, Any]) -> None:
    """A garbage blob in tasks, a workflow run of the wrong shape, a memory value that cannot
    be unpacked."""
    conn = sqlite3.connect(journal)
    try:
        with conn:
            conn.execute("UPDATE tasks SET record = ? WHERE id = ?", (GARBAGE, ids["tasks"][1]))
            (blob,) = conn.execute(
                "SELECT record FROM workflows WHERE id = ?", (ids["run"],)
            ).fetchone()
            run = msgpack.unpackb(blob)
            run.update(state="running", steps=["sq"])  # a list where a map of steps belongs
            conn.execute(
                "UPDATE workflows SET record = ?, state = 'running' WHERE id = ?",
                (msgpack.packb(run), ids["run"]),
            )
            conn.execute(
                "UPDATE memory SET value = ? WHERE namespace = 'notes' AND key = 'b'", (GARBAGE,)
            )
    finally:
        conn.close()


def test_a_corrupted_journal_is_set_aside_and_the_head_starts_with_the_rest(
    local_cluster: Callable[..., LocalCluster], journal_path: Path, env: dict[str, str]
) -> None:
    local = local_cluster(head={"sq": "agents:Squarer"}, processes=True)
    cluster = local.cluster
    ids = _fill(cluster)
    assert local.process("head").terminate() == 0
    _corrupt(journal_path, ids)

    local.restart("head")
    restarted = local.process("head")
    set_aside = {
        (r["table"], r["key"]): r["reason"] for r in restarted.logs("journal.record_set_aside")
    }
    assert set_aside == {
        ("tasks", ids["tasks"][1]): "its record is not msgpack data an envelope could carry "
        "(FormatError)",
        ("workflows", ids["run"]): "its 'steps' is ['sq'], not a map of step id to step",
        ("memory", "notes/b"): "its value is not msgpack data an envelope could carry "
        "(FormatError)",
    }
    assert {r["level"] for r in restarted.logs("journal.record_set_aside")} == {"warning"}
    # the other rows were replayed
    first, _, third = ids["tasks"]
    assert cluster.result(first, timeout_s=5)["square"] == 4
    assert cluster.result(third, timeout_s=5)["square"] == 16
    with pytest.raises(macp.InvalidParams, match=r"^no task '\w+'; check the id submit"):
        cluster.result(ids["tasks"][1], timeout_s=5)
    assert cluster.runs() == {"definitions": ["other", "squares"], "runs": []}
    notes = {k: cluster.memory("get", namespace="notes", key=k)["found"] for k in "abc"}
    assert notes == {"a": True, "b": False, "c": True}
    # and the head serves
    assert cluster.submit("square", {"x": 6}).result(timeout_s=10)["square"] == 36
    assert cluster.run("squares", {"x": 7}).result(timeout_s=10)["sq"]["square"] == 49
    letters = cluster.dead_letters()
    assert letters["count"] == 3
    assert {(d["source"], d["key"]) for d in letters["newest"]} == set(set_aside)

    report = macp_cli("status", "--json", "--connect", str(restarted.address), env=env)
    assert report.returncode == 0, report.stderr
    shown = json.loads(report.stdout)["dead_letters"]
    assert shown["count"] == 3
    assert {(d["source"], d["key"], d["reason"]) for d in shown["newest"]} == {
        (table, key, reason) for (table, key), reason in set_aside.items()
    }
    tables = macp_cli("status", "--connect", str(restarted.address), env=env)
    assert tables.returncode == 0, tables.stderr
    assert "dead letters (3; journal records set aside, not replayed; the newest 3)" in (
        tables.stdout
    )
    assert "its 'steps' is ['sq'], not a map of step id to step" in tables.stdout

    # Set aside once: a later start finds nothing more to set aside, and keeps the letters.
    assert restarted.terminate() == 0
    local.restart("head")
    again = local.process("head")
    again.wait_for_log("coordinator.replayed")
    assert again.logs("journal.record_set_aside") == []
    assert cluster.dead_letters()["count"] == 3
