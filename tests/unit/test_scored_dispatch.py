"""The dispatcher's tie-break by performance score (``prefer_scored``): among capable agents
with as many tasks in flight, the better scored first; load always first; off, in turn."""

from __future__ import annotations

from typing import Any

import pytest

from macp.actors.coordinator.dispatch import UNSCORED, CoordinatorOptions, Dispatcher
from macp.actors.coordinator.table import TaskTable
from macp.actors.coordinator.task import Task
from macp.errors import ConfigError


def _dispatcher(scores: dict[str, float | None], **options: Any) -> tuple[Dispatcher, TaskTable]:
    table = TaskTable(clock=lambda: 1_000)
    dispatcher = Dispatcher(CoordinatorOptions(**{"max_in_flight": 1, **options}), table,
                            clock=lambda: 100.0)  # fmt: skip
    for address, score in scores.items():
        dispatcher.agent_changed({
            "address": address, "node": "n", "status": "available", "capabilities": ["work"],
            "handles": ["work"], "role": None, "group": None, "performance_score": score,
        })  # fmt: skip
    return dispatcher, table


def _route(dispatcher: Dispatcher, table: TaskTable, *ids: str) -> list[str]:
    for task_id in ids:
        task = Task.submitted(task_id, {"type": "work"}, 1_000)
        table.submit(task)
        dispatcher.enqueue(task)
    taken = dispatcher.pump()
    for task, view in taken:
        table.assign(task, view.address)
    return [view.address for _, view in taken]


def test_equally_loaded_agents_are_taken_best_scored_first_an_unscored_one_in_the_middle() -> None:
    dispatcher, table = _dispatcher({"low@n": 0.2, "none@n": None, "high@n": 0.9})
    assert _route(dispatcher, table, "t1", "t2", "t3") == ["high@n", "none@n", "low@n"]
    assert UNSCORED == 0.5


def test_a_new_score_changes_the_order_at_once() -> None:
    dispatcher, table = _dispatcher({"a@n": 0.4, "b@n": 0.6}, max_in_flight=4)
    assert _route(dispatcher, table, "t1") == ["b@n"]
    dispatcher.release("b@n", "t1")
    dispatcher.agent_changed({**_record("a@n"), "performance_score": 0.7})
    assert _route(dispatcher, table, "t2") == ["a@n"]


def test_load_comes_before_the_score() -> None:
    dispatcher, table = _dispatcher({"good@n": 1.0, "poor@n": 0.0}, max_in_flight=4)
    assert _route(dispatcher, table, "t1", "t2") == ["good@n", "poor@n"]  # then one each
    assert _route(dispatcher, table, "t3") == ["good@n"]  # as loaded again: the better


def test_with_prefer_scored_off_the_agents_take_turns_whatever_their_scores() -> None:
    dispatcher, table = _dispatcher({"poor@n": 0.0, "good@n": 1.0}, prefer_scored=False,
                                    max_in_flight=4)  # fmt: skip
    ran = []
    for task_id in ("t1", "t2", "t3", "t4"):
        [address] = _route(dispatcher, table, task_id)
        dispatcher.release(address, task_id)
        ran.append(address)
    assert ran == ["poor@n", "good@n", "poor@n", "good@n"]


def test_voters_are_chosen_least_loaded_then_best_scored() -> None:
    dispatcher, table = _dispatcher({"a@n": 0.1, "b@n": 0.8, "c@n": None}, max_in_flight=4)
    task = Task.submitted("v", {"type": "work"}, 1_000)
    assert dispatcher.voters(task, 2) == ["b@n", "c@n"]
    assert _route(dispatcher, table, "t1") == ["b@n"]
    assert dispatcher.voters(task, 2) == ["c@n", "a@n"]  # b has one in flight


def test_prefer_scored_must_be_true_or_false() -> None:
    with pytest.raises(ConfigError, match=r"^coordinator: 'prefer_scored' "):
        CoordinatorOptions.of({"prefer_scored": "yes"})


def _record(address: str) -> dict[str, Any]:
    return {"address": address, "node": "n", "status": "available", "capabilities": ["work"],
            "handles": ["work"], "role": None, "group": None}  # fmt: skip
