"""A task's place in a tree: its lineage fields as a spec gives them and the journal stores
them (all together, or none: a task outside any tree is stored as earlier versions stored it),
and what the tree decides when a task ends (:class:`~macp.actors.coordinator.lineage.Lineage`
over a real task table)."""

from __future__ import annotations

from typing import Any

import pytest

from macp.actors.coordinator.lineage import Lineage
from macp.actors.coordinator.records import task_fault
from macp.actors.coordinator.table import TaskTable
from macp.actors.coordinator.task import Task, TaskState
from macp.errors import AgentError, AskTimeout, Cancelled, InvalidParams, NotFound

NOW_MS = 1_800_000_000_000
TREE = ("parent", "delegated_by", "run", "deadline", "context", "on_child_failure",
        "child_retries", "resubmits")  # fmt: skip


def _task(task_id: str, **spec: Any) -> Task:
    return Task.submitted(task_id, {"type": "work", **spec}, NOW_MS)


def test_a_task_outside_any_tree_is_stored_without_lineage_fields() -> None:
    record = _task("t1").to_record()
    assert not set(TREE) & set(record)
    status = _task("t1").status()
    assert {k: status[k] for k in TREE} == {
        "parent": None, "delegated_by": None, "run": None, "deadline": None, "context": None,
        "on_child_failure": "fail", "child_retries": 2, "resubmits": 0,
    }  # fmt: skip


def test_a_task_in_a_tree_is_stored_with_every_lineage_field_and_reads_back() -> None:
    deadline = NOW_MS / 1000 + 60
    task = _task("t2", parent="t1", delegated_by="boss@w1", deadline=deadline,
                 context={"lang": ["fr"]}, on_child_failure="retry", child_retries=5)  # fmt: skip
    record = task.to_record()
    assert [k for k in record if k in TREE] == list(TREE)
    assert task_fault("t2", record) is None
    again = Task.from_record(record)
    assert [getattr(again, k) for k in TREE] == [
        "t1", "boss@w1", None, deadline, {"lang": ["fr"]}, "retry", 5, 0,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("on_child_failure", "shrug", "its 'on_child_failure' is 'shrug', not one of fail, "),
        ("child_retries", -1, "its 'child_retries' is -1, not an integer >= 0"),
        ("deadline", "soon", "its 'deadline' is 'soon', not epoch seconds or null"),
        ("parent", 7, "its 'parent' is 7, not a task id or null"),
    ],
)
def test_a_stored_lineage_field_of_the_wrong_type_is_named(
    field: str, value: Any, why: str
) -> None:
    record = {**_task("t3", parent="t1").to_record(), field: value}
    fault = task_fault("t3", record)
    assert fault is not None
    assert fault.startswith(why)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"deadline": NOW_MS / 1000 - 1}, r"^task field 'deadline' 1799999999\.000 is in the past"),
        ({"deadline": "tomorrow"}, r"^task field 'deadline' must be a time in epoch seconds"),
        ({"deadline": float("inf")}, r"^task field 'deadline' must be a time in epoch seconds"),
        ({"on_child_failure": "shrug"}, r"^task field 'on_child_failure' must be one of fail, "),
        ({"child_retries": -1}, r"^task field 'child_retries' must be an integer >= 0, not -1"),
        ({"parent": 3}, r"^task field 'parent' must be a string"),
        ({"context": {1, 2}}, r"^task field 'context'"),
    ],
)
def test_a_bad_lineage_field_is_refused_naming_it(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParams, match=message):
        _task("t4", **spec)


class _Tree:
    """A real task table and the lineage over it (the journal: the table alone)."""

    def __init__(self) -> None:
        self.table = TaskTable()
        self.runs = {"run-1"}
        self.now = NOW_MS / 1000
        self.lineage = Lineage(self.table, self.table.get, self.runs.__contains__,
                               clock=lambda: self.now)  # fmt: skip

    def add(self, task_id: str, **spec: Any) -> Task:
        task = _task(task_id, **spec)
        self.lineage.admit(task)
        self.table.submit(task)
        return task


def test_a_subtask_inherits_its_parents_run_and_a_bad_parent_or_run_is_refused() -> None:
    tree = _Tree()
    tree.add("root", run="run-1")
    assert tree.add("child", parent="root").run == "run-1"
    with pytest.raises(NotFound, match=r"^task field 'parent' names no task 'nope'"):
        tree.add("orphan", parent="nope")
    with pytest.raises(NotFound, match=r"^task field 'run' names no workflow run 'run-9'"):
        tree.add("lost", run="run-9")
    tree.table.cancel(tree.table.get("root"), Cancelled("gone"))  # type: ignore[arg-type]
    with pytest.raises(InvalidParams, match=r"^task field 'parent' is task root, which has can"):
        tree.add("late", parent="root")


def test_a_failed_child_fails_its_parent_and_the_parent_cancels_the_rest() -> None:
    tree = _Tree()
    root = tree.add("root")
    a, b = tree.add("a", parent="root"), tree.add("b", parent="root")
    tree.table.fail(a, RuntimeError("boom"))
    ((parent, state, error),) = tree.lineage.ended(a)
    assert (parent, state) == (root, TaskState.FAILED)
    assert isinstance(error, AgentError)
    assert str(error).startswith("task root failed because its child task a (work) failed")
    tree.table.fail(root, error)
    ((child, state, cancel),) = tree.lineage.ended(root)
    assert (child, state, str(cancel)) == (
        b, TaskState.CANCELLED, "task b was cancelled with its parent root (failed)",
    )  # fmt: skip


def test_an_ignoring_parent_goes_on_and_a_succeeded_parent_leaves_its_children() -> None:
    tree = _Tree()
    root = tree.add("root", on_child_failure="ignore")
    a, b = tree.add("a", parent="root"), tree.add("b", parent="root")
    tree.table.fail(a, RuntimeError("boom"))
    assert tree.lineage.ended(a) == []
    tree.table.complete(root, "done")
    assert tree.lineage.ended(root) == []
    assert b.state is TaskState.PENDING


def test_a_retrying_parent_resubmits_its_child_up_to_its_child_retries() -> None:
    tree = _Tree()
    tree.add("root", on_child_failure="retry", child_retries=1)
    child = tree.add("a", parent="root")
    assert tree.lineage.resubmit(child, RuntimeError("once")) is True
    assert (child.resubmits, child.log[-1]["event"]) == (1, "resubmitted")
    assert tree.lineage.resubmit(child, RuntimeError("twice")) is False
    assert tree.lineage.resubmit(child, Cancelled("no")) is False


def test_a_task_past_its_deadline_is_overdue() -> None:
    tree = _Tree()
    task = tree.add("t", deadline=NOW_MS / 1000 + 3600)
    tree.now = task.deadline - 1  # type: ignore[operator]
    assert tree.lineage.overdue() == []
    tree.now = task.deadline  # type: ignore[assignment]
    ((overdue, state, error),) = tree.lineage.overdue()
    assert (overdue, state) == (task, TaskState.FAILED)
    assert isinstance(error, AskTimeout)
    assert "passed its deadline" in str(error)
