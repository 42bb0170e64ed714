"""The coordinator's task record: its states and their legal transitions, the spec it is made
from, and the journal record it is stored as (the format of the records already stored)."""

from __future__ import annotations

import itertools
from typing import Any

import msgpack
import pytest

from macp.actors.coordinator.records import task_fault, with_new_fields
from macp.actors.coordinator.task import (
    DEFAULTS,
    FINAL,
    TRANSITIONS,
    Task,
    TaskKind,
    TaskState,
    error_record,
)
from macp.errors import InternalError, InvalidParams

LEGAL = {
    ("pending", "assigned"), ("pending", "succeeded"), ("pending", "failed"),
    ("pending", "cancelled"),
    ("assigned", "running"), ("assigned", "retrying"), ("assigned", "pending"),
    ("assigned", "succeeded"), ("assigned", "failed"), ("assigned", "cancelled"),
    ("running", "retrying"), ("running", "pending"), ("running", "succeeded"),
    ("running", "failed"), ("running", "cancelled"),
    ("retrying", "pending"), ("retrying", "succeeded"), ("retrying", "failed"),
    ("retrying", "cancelled"),
    ("succeeded", "failed"), ("cancelled", "failed"),
}  # fmt: skip
"""Every move a task may make (see macp.actors.coordinator.task's diagram)."""

RECORD_FIELDS = [
    "id", "kind", "type", "body", "capabilities", "role", "pinned", "priority", "timeout_s",
    "max_retries", "max_node_failures", "backoff_s", "backoff_max_s", "idempotency_key",
    "notify", "state", "attempts", "node_failures", "agent", "result", "error", "progress",
    "progress_message", "created_ms", "queued_ms", "assigned_ms", "started_ms", "finished_ms",
    "updated_ms", "log", "attempt_history",
]  # fmt: skip

PREVIOUS_VERSION: dict[str, Any] = {
    "id": "35cde3a13b36", "kind": "scatter", "type": "hang", "body": {"n": 3},
    "capabilities": [], "role": None, "pinned": None, "priority": 1, "timeout_s": 20,
    "max_retries": 3, "max_node_failures": 10, "backoff_s": 0.1, "backoff_max_s": 10.0,
    "idempotency_key": None, "notify": None, "state": "running", "attempts": 1,
    "node_failures": 0, "agent": None, "result": None, "error": None, "progress": 0.5,
    "progress_message": "half", "created_ms": 1796010595940, "queued_ms": 1796010595940,
    "assigned_ms": None, "started_ms": 1796010595941, "finished_ms": None,
    "updated_ms": 1796010595941, "log": [{"ts": 1796010595940, "event": "submitted"}],
    "aggregation": "quorum", "quorum": 2, "failure_threshold": None,
    "expected": ["e1@head", "e2@head"],
}  # fmt: skip
"""A scatter in flight as the previous version of the coordinator stored it (captured)."""


def test_the_legal_transitions_are_exactly_these() -> None:
    assert {(a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets} == LEGAL
    assert {s.value for s in FINAL} == {"succeeded", "failed", "cancelled"}


@pytest.mark.parametrize(
    ("start", "to"),
    sorted((a, b) for a, b in itertools.product(TaskState, TaskState) if (a, b) not in LEGAL),
)
def test_every_other_move_raises(start: TaskState, to: TaskState) -> None:
    task = Task.submitted("t1", {"type": "work"}, 1_000)
    task.state = start
    with pytest.raises(
        InternalError,
        match=rf"^task t1 cannot go from {start.value} to {to.value}; this is a bug in the "
        r"coordinator$",
    ):
        task.move(to)
    assert task.state is start


@pytest.mark.parametrize(("start", "to"), sorted(LEGAL))
def test_a_legal_move_changes_the_state(start: str, to: str) -> None:
    task = Task.submitted("t1", {"type": "work"}, 1_000)
    task.state = TaskState(start)
    task.move(TaskState(to))
    assert task.state is TaskState(to)


def test_a_spec_gets_the_defaults_it_leaves_out() -> None:
    task = Task.submitted("t1", {"type": "work", "capabilities": ["b", "a", "b"]}, 1_000)
    assert (task.priority, task.timeout_s, task.max_retries, task.max_node_failures,
            task.backoff_s, task.backoff_max_s) == (1, 30.0, 3, 10, 0.1, 10.0)  # fmt: skip
    assert DEFAULTS.timeout_s == 30.0
    assert (task.state, task.kind, task.capabilities) == (
        TaskState.PENDING,
        TaskKind.TASK,
        ["a", "b"],
    )
    assert task.log == [{"ts": 1_000, "event": "submitted"}]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "a task is a map with at least a 'type'"),
        ({"type": ""}, "task field 'type' must be a non-empty string, e.g. 'summarize'"),
        ({"type": "w", "capabilities": "gpu"},
         "task field 'capabilities' must be a list of strings, not 'gpu'"),
        ({"type": "w", "notify": 3}, "task field 'notify' must be a string"),
        ({"type": "w", "priority": 4}, "task field 'priority' must be 0 to 3, not 4"),
        ({"type": "w", "timeout_s": 0}, "task field 'timeout_s' must be a number >= 0.001, not 0"),
        ({"type": "w", "max_retries": True},
         "task field 'max_retries' must be an integer >= 0, not True"),
    ],
)  # fmt: skip
def test_a_malformed_spec_is_refused_naming_the_field(spec: Any, message: str) -> None:
    with pytest.raises(InvalidParams, match=f"^{message}$"):
        Task.submitted("t1", spec, 1_000)


def test_the_record_has_the_fields_of_the_journal_format_in_order() -> None:
    task = Task.submitted("t1", {"type": "work", "body": {"x": 1}}, 1_000)
    assert list(task.to_record()) == RECORD_FIELDS
    task.workflow, task.step = "r1", "a"
    assert list(task.to_record()) == [*RECORD_FIELDS, "workflow", "step"]
    scatter = Task.from_record(PREVIOUS_VERSION)
    assert list(scatter.to_record()) == [*RECORD_FIELDS, "aggregation", "quorum",
                                         "failure_threshold", "expected"]  # fmt: skip
    scatter.reason = "2 of 2 agreed"
    assert list(scatter.to_record())[-1] == "reason"


def test_a_record_of_the_previous_version_reads_back_as_it_was_stored() -> None:
    assert task_fault(PREVIOUS_VERSION["id"], PREVIOUS_VERSION) is None
    task = Task.from_record(PREVIOUS_VERSION)
    assert (task.kind, task.state, task.expected) == (
        TaskKind.SCATTER,
        TaskState.RUNNING,
        ["e1@head", "e2@head"],
    )
    record = task.to_record()
    assert record.pop("attempt_history") == []  # its log holds no attempt
    assert msgpack.packb(record) == msgpack.packb(PREVIOUS_VERSION)


def test_a_record_from_before_attempts_were_kept_reads_them_from_its_log() -> None:
    log = [
        {"ts": 1, "event": "submitted"},
        {"ts": 2, "event": "assigned", "agent": "w1@n1", "attempt": 1},
        {"ts": 5, "event": "failed_attempt", "agent": "w1@n1", "node_down": False,
         "error": "AskTimeout: no result"},
        {"ts": 7, "event": "assigned", "agent": "w2@n2", "attempt": 2},
        {"ts": 9, "event": "succeeded", "agent": "w2@n2"},
    ]  # fmt: skip
    older = {**PREVIOUS_VERSION, "kind": "task", "state": "succeeded", "log": log}
    assert [(a["attempt"], a["agent"], a["node"], a["assigned_ms"], a["ended_ms"], a["outcome"])
            for a in Task.from_record(older).attempt_history] == [
        (1, "w1@n1", "n1", 2, 5, "timed_out"), (2, "w2@n2", "n2", 7, 9, "succeeded"),
    ]  # fmt: skip


def test_a_record_from_before_node_failures_were_counted_reads_with_none_counted() -> None:
    older = {k: v for k, v in PREVIOUS_VERSION.items()
             if k not in ("node_failures", "max_node_failures")}  # fmt: skip
    task = Task.from_record(with_new_fields(older))
    assert (task.node_failures, task.max_node_failures) == (0, DEFAULTS.max_node_failures)


def test_the_record_holds_plain_strings_for_its_enums() -> None:
    record = Task.submitted("t1", {"type": "work"}, 1_000).to_record()
    assert (type(record["state"]), type(record["kind"])) == (str, str)


def test_the_log_keeps_the_newest_twenty_entries() -> None:
    task = Task.submitted("t1", {"type": "work"}, 1_000)
    for i in range(30):
        task.note("tick", 1_000 + i, n=i)
    assert len(task.log) == 20
    assert task.log[0] == {"ts": 1_010, "event": "tick", "n": 10}


def test_scrub_replaces_what_cannot_be_stored_and_keeps_the_rest() -> None:
    task = Task.submitted("t1", {"type": "work", "body": {"keep": 1}}, 1_000)
    task.body = {"keep": 1, "tags": {1, 2}}
    task.scrub()
    assert task.body == {"keep": 1, "tags": None}


def test_an_error_whose_data_cannot_be_stored_keeps_its_class_and_message() -> None:
    record = error_record(InvalidParams("bad", data={"when": object()}))  # type: ignore[dict-item]
    assert (record["error"], record["message"]) == ("InvalidParams", "bad")
    assert isinstance(record["data"], dict)
    assert set(record["data"]) == {"unstorable"}
