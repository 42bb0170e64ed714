"""The coordinator's task table on its own: no actor, no journal, a clock that moves only when
told. Each change goes through the task's legal transitions and is marked for the journal."""

from __future__ import annotations

from typing import Any

import pytest

from macp.actors.coordinator.table import FLUSH_AT, TaskTable
from macp.actors.coordinator.task import Task, TaskState
from macp.errors import AskTimeout, Cancelled, InternalError, NodeDown


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_000

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def table(clock: Clock) -> TaskTable:
    return TaskTable(clock=clock)


def _task(task_id: str, clock: Clock, **spec: Any) -> Task:
    return Task.submitted(task_id, {"type": "work", **spec}, clock())


def test_a_submitted_task_waits_indexed_by_its_key_and_is_marked_for_the_journal(
    table: TaskTable, clock: Clock
) -> None:
    task = _task("t1", clock, idempotency_key="k1")
    table.submit(task)
    assert (table.get("t1"), table.by_key("k1"), table.by_key("k2")) == (task, task, None)
    assert table.changed() == {"t1": task}
    assert table.changed() == {}  # written: nothing more to write


def test_assign_then_ack_runs_the_current_attempt(table: TaskTable, clock: Clock) -> None:
    task = _task("t1", clock)
    table.submit(task)
    clock.now_ms = 1_005
    assert table.assign(task, "a@n") == 1
    assert (task.state, task.agent, task.assigned_ms) == (TaskState.ASSIGNED, "a@n", 1_005)
    assert task.log[-1] == {"ts": 1_005, "event": "assigned", "agent": "a@n", "attempt": 1}
    assert table.current("t1", 2) is None  # a report about another attempt is stale
    clock.now_ms = 1_007
    table.ack(table.current("t1", 1))  # type: ignore[arg-type]
    assert (task.state, task.started_ms, task.updated_ms) == (TaskState.RUNNING, 1_007, 1_007)
    table.ack(task)  # a second ack changes nothing
    assert task.state is TaskState.RUNNING
    assert task.attempt_history == [{
        "attempt": 1, "agent": "a@n", "node": "n", "assigned_ms": 1_005, "started_ms": 1_007,
        "ended_ms": None, "outcome": "running",
    }]  # fmt: skip


def test_each_attempt_ends_with_its_outcome(table: TaskTable, clock: Clock) -> None:
    task = _task("t1", clock)
    table.submit(task)
    for attempt, (error, lost) in enumerate(
        [(AskTimeout("no result"), False), (NodeDown("w1 is down"), True),
         (ValueError("bad"), False)], start=1,
    ):  # fmt: skip
        clock.now_ms = 1_000 + 10 * attempt
        table.assign(task, "a@w1")
        table.attempt_failed(task, "a@w1", error, node_failure=lost)
        table.retry(task, error)
        assert table.requeue(task)
    table.assign(task, "b@w2")
    clock.now_ms = 1_100
    table.complete(task, {"ok": True})
    assert [(a["attempt"], a["node"], a["outcome"], (a.get("error") or {}).get("code"))
            for a in task.attempt_history] == [
        (1, "w1", "timed_out", -32004), (2, "w1", "node_down", NodeDown.code),
        (3, "w1", "failed", -32001), (4, "w2", "succeeded", None),
    ]  # fmt: skip
    assert task.attempt_history[-1]["ended_ms"] == 1_100


def test_a_failed_attempt_retries_after_its_backoff(table: TaskTable, clock: Clock) -> None:
    task = _task("t1", clock)
    table.submit(task)
    table.assign(task, "a@n")
    error = AskTimeout("no result")
    table.attempt_failed(task, "a@n", error, node_failure=False)
    table.retry(task, error)
    assert (task.state, task.agent, task.error["error"]) == (  # type: ignore[index]
        TaskState.RETRYING,
        None,
        "AskTimeout",
    )
    assert table.overdue() == []  # a retrying task does not wait for an agent
    clock.now_ms = 2_000
    assert table.requeue(task)
    assert (task.state, task.queued_ms) == (TaskState.PENDING, 2_000)
    assert not table.requeue(task)  # only a retrying task is queued again


def test_node_failures_are_counted_apart(table: TaskTable, clock: Clock) -> None:
    task = _task("t1", clock)
    table.submit(task)
    table.assign(task, "a@n")
    table.attempt_failed(task, "a@n", NodeDown("n is down"), node_failure=True)
    assert (task.attempts, task.node_failures, task.own_failures) == (1, 1, 0)
    assert task.log[-1]["node_down"] is True


def test_a_task_ends_once(table: TaskTable, clock: Clock) -> None:
    task = _task("t1", clock)
    table.submit(task)
    table.assign(task, "a@n")
    clock.now_ms = 1_500
    table.complete(task, {"ok": 1})
    assert (task.state, task.result, task.progress, task.finished_ms) == (
        TaskState.SUCCEEDED, {"ok": 1}, 1.0, 1_500,
    )  # fmt: skip
    with pytest.raises(
        InternalError,
        match=r"^task t1 has finished already \(succeeded\); this is a bug in the coordinator$",
    ):
        table.cancel(task, Cancelled("late"))


def test_a_late_success_completes_a_task_queued_again(table: TaskTable, clock: Clock) -> None:
    task = _task("t1", clock)
    table.submit(task)
    table.assign(task, "a@n")
    table.retry(task, AskTimeout("slow"))
    table.requeue(task)
    table.complete(task, 42)  # the first attempt answered after all
    assert (task.state, task.result) == (TaskState.SUCCEEDED, 42)


def test_a_pending_task_past_its_timeout_is_overdue_and_expires(
    table: TaskTable, clock: Clock
) -> None:
    task = _task("t1", clock, timeout_s=0.5)
    table.submit(task)
    clock.now_ms = 1_500
    assert table.overdue() == []
    clock.now_ms = 1_501
    assert table.overdue() == [task]
    table.expire(task, NodeDown("its node is down"))
    assert (task.state, task.error["error"]) == (TaskState.FAILED, "NodeDown")  # type: ignore[index]
    assert table.overdue() == []


def test_a_cancelled_task_keeps_why(table: TaskTable, clock: Clock) -> None:
    task = _task("t1", clock)
    table.submit(task)
    table.cancel(task, Cancelled("task t1 was cancelled"))
    assert (task.state, task.error["message"]) == (  # type: ignore[index]
        TaskState.CANCELLED,
        "task t1 was cancelled",
    )
    assert task.log[-1] == {"ts": 1_000, "event": "cancelled", "agent": None}


def test_recover_queues_again_and_counts_a_lost_attempt(table: TaskTable, clock: Clock) -> None:
    running, waiting = _task("t1", clock), _task("t2", clock)
    for task in (running, waiting):
        table.submit(task)
    table.assign(running, "a@n")
    table.changed()
    for task in (running, waiting):
        table.recover(task)
    assert (running.state, running.node_failures) == (TaskState.PENDING, 1)
    assert running.agent is None
    assert (waiting.state, waiting.node_failures) == (TaskState.PENDING, 0)
    assert running.log[-1] == {"ts": 1_000, "event": "recovered",
                               "note": "the coordinator restarted"}  # fmt: skip
    assert set(table.changed()) == {"t1", "t2"}


def test_the_journal_refusing_a_success_fails_the_task(table: TaskTable, clock: Clock) -> None:
    task = _task("t1", clock)
    table.submit(task)
    table.complete(task, 1)
    table.refuse(task, InternalError("the record cannot be stored"))
    assert (task.state, task.error["message"]) == (  # type: ignore[index]
        TaskState.FAILED,
        "the record cannot be stored",
    )


def test_memory_holds_the_bound_forgetting_the_oldest_finished_first(clock: Clock) -> None:
    table = TaskTable(kept=2, clock=clock)
    tasks = [_task(f"t{i}", clock, idempotency_key=f"k{i}") for i in range(4)]
    for task in tasks:
        table.submit(task)
    for task in tasks[:3]:
        table.complete(task, None)
    table.forget_old()  # unsaved changes are kept until written
    assert len(table) == 4
    table.changed()
    table.forget_old()
    assert [t.id for t in table] == ["t2", "t3"]  # t3 is unfinished: never forgotten
    assert (table.by_key("k0"), table.by_key("k2")) == (None, tasks[2])


def test_pruned_tasks_are_forgotten(table: TaskTable, clock: Clock) -> None:
    tasks = [_task(f"t{i}", clock) for i in range(3)]
    for task in tasks:
        table.submit(task)
        table.complete(task, None)
    table.changed()
    table.forget_pruned(["t0", "t1"])
    assert [t.id for t in table] == ["t2"]


def test_it_asks_for_a_write_once_enough_tasks_changed(clock: Clock) -> None:
    calls: list[int] = []
    table = TaskTable(clock=clock, full=lambda: calls.append(len(written.changed())))
    written = table
    for i in range(FLUSH_AT + 1):
        table.submit(_task(f"t{i}", clock))
    assert calls == [FLUSH_AT]
    assert len(written.changed()) == 1
