"""What the coordinator keeps, and for how long: idempotency keys that answer their task for as
long as the journal keeps it, the journal's retention of finished tasks and runs (pruned in
batches, the file kept compact), and the same bound on memory after a restart as before it."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from procs import QUICK_CLUSTER

import macp
from macp import Agent, Cluster, Context, handler, start_control_plane
from macp.actors.coordinator import SUBMIT
from macp.actors.coordinator.task import Task
from macp.envelope import now_ms
from macp.store import Journal
from macp.testing import NodeProcess, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp import Node

pytestmark = pytest.mark.integration

KEPT_IN_MEMORY = 20_000  # the coordinator's bound on tasks held in memory
KEPT_RUNS = 1_000  # and on finished workflow runs


class Echo(Agent):
    capabilities = ("echo",)

    @handler("echo")
    def echo(self, body: Any, ctx: Context) -> Any:
        return {"x": body, "attempt": ctx.attempt}


@pytest.fixture
def head(make_node: Callable[..., Node], journal_path: Path) -> Callable[..., Cluster]:
    """A head with an echo agent on the test's journal; a later call is a restart."""

    def start(**retention: Any) -> Cluster:
        node = make_node("head", settings=QUICK_CLUSTER)
        options = {"retention": retention} if retention else {}  # else the defaults
        start_control_plane(
            node, journal=journal_path, coordinator={"max_in_flight": 64}, **options
        )
        node.spawn(Echo, "echo")
        cluster = Cluster(node)
        cluster.wait_for_agents(["echo@head"])
        return cluster

    return start


def _run_many(cluster: Cluster, count: int) -> list[str]:
    """Submit ``count`` echo tasks at once and wait until the last one has finished."""
    futures = [
        cluster.node.ask("coordinator", SUBMIT, {"type": "echo", "body": i}, timeout_s=120)
        for i in range(count)
    ]
    ids = [f.get()["task_id"] for f in futures]
    for task_id in ids[-1:] + ids[:: max(1, count // 20)]:
        cluster.result(task_id, timeout_s=120)
    return ids


def _rows(path: Path, sql: str, *params: object) -> list[Any]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql, params).fetchall()


# -- idempotency keys ------------------------------------------------------------------------------


def test_an_old_idempotency_key_answers_its_task_and_result_after_20000_newer_tasks(
    head: Callable[..., Cluster],
) -> None:
    cluster = head()
    first = cluster.submit("echo", "once", idempotency_key="order-1")
    assert first.result() == {"x": "once", "attempt": 1}
    _run_many(cluster, KEPT_IN_MEMORY + 500)
    assert first.id not in {t["id"] for t in cluster.tasks()}  # no longer held in memory
    again = cluster.submit("echo", "twice", idempotency_key="order-1")
    assert again.id == first.id
    assert again.result() == {"x": "once", "attempt": 1}
    assert again.status()["state"] == "succeeded"


def test_an_idempotency_key_answers_its_task_after_a_restart_over_20000_newer_tasks(
    head: Callable[..., Cluster], journal_path: Path
) -> None:
    cluster = head()
    first = cluster.submit("echo", "once", idempotency_key="order-1")
    assert first.result() == {"x": "once", "attempt": 1}
    cluster.node.stop()
    _journal_finished_tasks(journal_path, KEPT_IN_MEMORY + 500, start=1, base_ms=now_ms() + 1)
    cluster = head()
    assert first.id not in {t["id"] for t in cluster.tasks()}  # not read back into memory
    again = cluster.submit("echo", "twice", idempotency_key="order-1")
    assert again.id == first.id
    assert again.result() == {"x": "once", "attempt": 1}


def test_an_expired_idempotency_key_is_a_new_submit(head: Callable[..., Cluster]) -> None:
    cluster = head(max_age_s=1.0)  # more than the duplicate submit below takes
    first = cluster.submit("echo", "once", idempotency_key="order-1")
    assert first.result() == {"x": "once", "attempt": 1}
    assert cluster.submit("echo", "again", idempotency_key="order-1").id == first.id
    wait_until(lambda: _gone(cluster, first.id), 10, "the finished task was never pruned")
    again = cluster.submit("echo", "again", idempotency_key="order-1")
    assert again.id != first.id
    assert again.result() == {"x": "again", "attempt": 1}
    assert cluster.submit("echo", "third", idempotency_key="order-1").id == again.id


def test_a_key_of_a_task_still_running_never_expires(head: Callable[..., Cluster]) -> None:
    cluster = head(max_age_s=0.1)
    waiting = cluster.submit("nobody-handles-this", 1, idempotency_key="k", timeout_s=60)
    sentinel = cluster.submit("echo", "s", idempotency_key="sentinel")
    sentinel.result()
    wait_until(lambda: _gone(cluster, sentinel.id), 10, "the finished task was never pruned")
    assert cluster.submit("nobody-handles-this", 2, idempotency_key="k").id == waiting.id
    assert waiting.status()["state"] == "pending"


def _gone(cluster: Cluster, task_id: str) -> bool:
    try:
        cluster.status(task_id)
    except macp.InvalidParams as e:
        if e.message.startswith(f"no task {task_id!r}"):
            return True
        raise
    return False


# -- the journal's retention ----------------------------------------------------------------------


def test_finished_tasks_past_the_retention_count_are_pruned_oldest_first(
    head: Callable[..., Cluster], journal_path: Path
) -> None:
    cluster = head(max_tasks=100)
    ids = _run_many(cluster, 600)

    def kept() -> int:
        return int(_rows(journal_path, "SELECT count(*) FROM tasks")[0][0])

    wait_until(lambda: kept() == 100, 10, "the journal was not pruned to 100 tasks")
    newest = cluster.status(ids[-1])
    assert newest["state"] == "succeeded"
    with pytest.raises(macp.InvalidParams, match=rf"^no task '{ids[0]}'; check the id"):
        cluster.result(ids[0])
    assert cluster.result(ids[-1]) == {"x": 599, "attempt": 1}


def test_finished_workflow_runs_past_the_retention_age_are_pruned(
    head: Callable[..., Cluster], journal_path: Path
) -> None:
    cluster = head(max_age_s=0.3)
    cluster.define({"name": "one", "steps": [{"id": "a", "type": "echo"}]})
    run = cluster.run("one", 5)
    assert run.result() == {"a": {"x": {"input": 5, "deps": {}}, "attempt": 1}}

    def runs() -> list[Any]:
        return _rows(journal_path, "SELECT state FROM workflows")

    wait_until(lambda: runs() == [("definition",)], 10, "the finished run was never pruned")
    with pytest.raises(macp.InvalidParams, match=r"^no workflow run "):
        run.status()
    assert cluster.run("one", 6).result() == {"a": {"x": {"input": 6, "deps": {}}, "attempt": 1}}


def test_a_finished_run_no_longer_held_in_memory_answers_from_the_journal(
    head: Callable[..., Cluster],
) -> None:
    cluster = head()
    cluster.define({"name": "one", "steps": [{"id": "a", "type": "echo"}]})
    first = cluster.run("one", "first")
    expected = {"a": {"x": {"input": "first", "deps": {}}, "attempt": 1}}
    assert first.result() == expected
    futures = [
        cluster.node.ask(
            "coordinator", "workflow.run", {"workflow": "one", "input": i}, timeout_s=60
        )
        for i in range(KEPT_RUNS + 20)
    ]
    ids = [f.get()["run_id"] for f in futures]
    for run_id in ids:
        cluster.node.ask("coordinator", "workflow.result", {"run_id": run_id}, timeout_s=60).get()
    listed = {r["id"] for r in cluster.runs()["runs"]}
    assert first.id not in listed  # no longer held in memory
    assert len(listed) == KEPT_RUNS
    assert first.result() == expected
    assert (first.status()["state"], first.cancel(), first.pause()) == (
        "succeeded",
        False,
        "succeeded",
    )


def test_a_retention_option_of_the_wrong_type_is_refused_at_start(
    make_node: Callable[..., Node], journal_path: Path
) -> None:
    node = make_node("head", settings=QUICK_CLUSTER)
    with pytest.raises(
        macp.ConfigError, match=r"^journal_retention: 'max_tasks' must be an integer$"
    ):
        start_control_plane(node, journal=journal_path, retention={"max_tasks": "lots"})
    with pytest.raises(
        macp.ConfigError,
        match=r"^journal_retention: unknown key 'max_age'; expected one of: max_age_s, ",
    ):
        start_control_plane(node, journal=journal_path, retention={"max_age": 1})
    assert node.agents() == []  # nothing was started


# -- memory after a restart -----------------------------------------------------------------------


def _journal_finished_tasks(
    path: Path, count: int, *, start: int = 0, base_ms: int | None = None
) -> None:
    """Write ``count`` finished tasks (each with an idempotency key) as the coordinator does,
    finished from ``base_ms`` on (default: a minute ago), 100 per millisecond."""
    base = now_ms() - 60_000 if base_ms is None else base_ms
    with Journal(path) as journal, journal.transaction():
        for i in range(start, start + count):
            spec: dict[str, Any] = {"type": "echo", "body": i, "idempotency_key": f"k{i}"}
            record = Task.submitted(f"t{i:07}", spec, now_ms()).to_record()
            finished = base + i // 100
            record.update(state="succeeded", attempts=1, agent="echo@head", result={"x": i},
                          progress=1.0, assigned_ms=finished, started_ms=finished,
                          finished_ms=finished, updated_ms=finished)  # fmt: skip
            record["log"] += [{"ts": finished, "event": e} for e in ("assigned", "succeeded")]
            journal.put_task(record["id"], record)


def _rss_mb(process: NodeProcess) -> float:
    assert process.proc is not None
    return psutil.Process(process.proc.pid).memory_info().rss / 2**20


def test_a_restarted_head_over_100000_finished_tasks_uses_the_memory_it_used_before(
    journal_path: Path,
) -> None:
    """The head holds at most 20,000 tasks in memory: a restart over 100,000 finished tasks
    costs what the same head cost over 20,000, and every old task still answers."""
    _journal_finished_tasks(journal_path, KEPT_IN_MEMORY)
    args = ("--control-plane", "--journal", str(journal_path))
    before = NodeProcess("head", *args).start()
    try:
        rss_before = _rss_mb(before)
    finally:
        assert before.terminate() == 0
    _journal_finished_tasks(journal_path, 100_000 - KEPT_IN_MEMORY, start=KEPT_IN_MEMORY)
    after = NodeProcess("head", *args).start()
    try:
        rss_after = _rss_mb(after)
        with macp.connect(after.address or "") as cluster:
            assert cluster.result("t0000000") == {"x": 0}
            oldest = cluster.submit("echo", "again", idempotency_key="k0")
            assert oldest.id == "t0000000"
            assert cluster.status("t0099999")["state"] == "succeeded"
    finally:
        assert after.terminate() == 0
    assert rss_after < rss_before * 1.25, (rss_before, rss_after)
    replayed = after.logs("coordinator.replayed")
    assert [(r["tasks"], r["recovered"]) for r in replayed] == [(KEPT_IN_MEMORY, 0)]
