"""The rule that derives a goal's and a project's progress from their linked work."""

from __future__ import annotations

import pytest

from macp.actors.teams.work import (
    Item,
    WorkStatus,
    goal_progress,
    item_progress,
    project_progress,
    work_status,
)
from macp.errors import InvalidParams


def test_a_task_counts_its_reported_progress_and_one_once_it_succeeded() -> None:
    assert item_progress("task", "t", {"state": "pending", "progress": 0.0}) == Item(
        "task", "t", "pending", "pending", 0.0
    )
    assert item_progress("task", "t", {"state": "running", "progress": 0.4}).progress == 0.4
    assert item_progress("task", "t", {"state": "succeeded", "progress": 0.4}).progress == 1.0
    failed = item_progress("task", "t", {"state": "failed", "progress": 0.3})
    assert (failed.outcome, failed.progress) == ("failed", 0.3)
    assert item_progress("task", "t", {"state": "cancelled"}).outcome == "failed"
    assert item_progress("task", "t", None) == Item("task", "t", "unknown", "unknown", 0.0)


def test_a_run_counts_its_steps_done_and_a_session_one_once_closed() -> None:
    steps = {
        "a": {"state": "succeeded"}, "b": {"state": "skipped"}, "c": {"state": "running"},
        "d": {"state": "waiting"}, "e": {"state": "standby"},
    }  # fmt: skip
    run = item_progress("run", "r", {"state": "running", "steps": steps})
    assert (run.outcome, run.progress) == ("running", 0.5)  # 2 of 4: the fallback not counted
    assert item_progress("run", "r", {"state": "succeeded", "steps": steps}).progress == 1.0
    assert item_progress("session", "s", {"state": "open"}).outcome == "running"
    assert item_progress("session", "s", {"state": "closed"}).progress == 1.0


def test_a_goal_is_blocked_by_a_failed_item_and_done_when_every_item_is() -> None:
    done, running = Item("task", "a", "succeeded", "done", 1.0), Item("task", "b", "running",
                                                                       "running", 0.5)  # fmt: skip
    failed, pending = Item("task", "c", "failed", "failed", 0.0), Item("task", "d", "pending",
                                                                        "pending", 0.0)  # fmt: skip
    assert goal_progress([]) == {"progress": 0.0, "derived": "no_work"}
    assert goal_progress([done, running]) == {"progress": 0.75, "derived": "in_progress"}
    assert goal_progress([done, failed])["derived"] == "blocked"
    assert goal_progress([done, done]) == {"progress": 1.0, "derived": "done"}
    assert goal_progress([pending]) == {"progress": 0.0, "derived": "pending"}


def test_a_project_leaves_its_cancelled_goals_out() -> None:
    done = {"progress": 1.0, "derived": "done"}
    blocked = {"progress": 0.0, "derived": "blocked"}
    assert project_progress([]) == {"progress": 0.0, "derived": "no_goals"}
    assert project_progress([(WorkStatus.ACTIVE, done), (WorkStatus.ACTIVE, blocked)]) == {
        "progress": 0.5, "derived": "blocked",
    }  # fmt: skip
    assert project_progress([(WorkStatus.ACTIVE, done), (WorkStatus.CANCELLED, blocked)]) == {
        "progress": 1.0, "derived": "done",
    }  # fmt: skip


def test_a_status_outside_the_five_is_refused_by_name() -> None:
    assert work_status("goal.create", "on_hold") is WorkStatus.ON_HOLD
    with pytest.raises(InvalidParams, match=r"^goal.create 'status' must be one of planned, "
                       r"active, on_hold, completed, cancelled, not 'later'$"):  # fmt: skip
        work_status("goal.create", "later")
    with pytest.raises(InvalidParams, match=r"not 3$"):
        work_status("goal.create", 3)
