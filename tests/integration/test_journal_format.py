"""A journal written before the coordinator's records were typed replays: the rows below are
what the previous version stored (captured from it: a finished task with an idempotency key, a
task running on an agent, a scatter in flight, and a workflow run with its step's task), so a
head upgraded in place goes on with them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

import macp
from macp import Agent, Cluster, handler, start_control_plane
from macp.envelope import now_ms
from macp.store import Journal

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp import Node

pytestmark = pytest.mark.integration

FAST = macp.Settings(strict=True, supervisor_check_interval_s=0.05, ask_timeout_s=5.0)
AGENTS = ["e1@head", "e2@head"]


class Echo(Agent):
    capabilities = ("echo",)

    @handler("echo")
    def echo(self, body: Any) -> Any:
        return {"echo": body}

    @handler("hang")  # it hung in the previous life; now it answers
    def hang(self, body: Any) -> Any:
        return {"hung": body}


def _task(task_id: str, type_: str, body: Any, at: int, **changes: Any) -> dict[str, Any]:
    record = {
        "id": task_id, "kind": "task", "type": type_, "body": body, "capabilities": [],
        "role": None, "pinned": None, "priority": 1, "timeout_s": 30.0, "max_retries": 3,
        "max_node_failures": 10, "backoff_s": 0.1, "backoff_max_s": 10.0,
        "idempotency_key": None, "notify": None, "state": "running", "attempts": 1,
        "node_failures": 0, "agent": "e2@head", "result": None, "error": None,
        "progress": 0.5, "progress_message": "half", "created_ms": at, "queued_ms": at,
        "assigned_ms": at, "started_ms": at, "finished_ms": None, "updated_ms": at,
        "log": [{"ts": at, "event": "submitted"},
                {"ts": at, "event": "assigned", "agent": "e2@head", "attempt": 1}],
    }  # fmt: skip
    record.update(changes)
    return record


def _write_previous_version(path: Path) -> None:
    at = now_ms() - 1_000
    done = _task(
        "t-done", "echo", {"n": 1}, at, idempotency_key="k-done", state="succeeded",
        agent="e1@head", result={"echo": {"n": 1}}, progress=1.0, progress_message="",
        finished_ms=at,
        log=[{"ts": at, "event": "submitted"},
             {"ts": at, "event": "assigned", "agent": "e1@head", "attempt": 1},
             {"ts": at, "event": "succeeded", "agent": "e1@head"}],
    )  # fmt: skip
    running = _task("t-running", "hang", {"n": 2}, at)
    scatter = _task(
        "t-scatter", "hang", {"n": 3}, at, kind="scatter", timeout_s=20, agent=None,
        assigned_ms=None, log=[{"ts": at, "event": "submitted"}], aggregation="quorum",
        quorum=2, failure_threshold=None, expected=AGENTS,
    )  # fmt: skip
    step = _task(
        "t-step", "hang", {"input": {"x": 1}, "deps": {}}, at, state="assigned",
        agent="e1@head", max_retries=2, progress=0.0, progress_message="", started_ms=None,
        workflow="r-1", step="a",
    )  # fmt: skip
    steps = {
        "a": {"state": "running", "task_id": "t-step", "output": None, "error": None,
              "dispatched": 1, "finished": None, "lease": None, "instead_of": None,
              "dispatched_ms": at},
        "b": {"state": "waiting", "task_id": None, "output": None, "error": None,
              "dispatched": None, "finished": None, "lease": None, "instead_of": None},
    }  # fmt: skip
    run: dict[str, Any] = {
        "id": "r-1", "workflow": "w",
        "definition": {"name": "w", "steps": [{"id": "a", "type": "hang"},
                                              {"id": "b", "type": "echo",
                                               "depends_on": ["a"]}]},
        "input": {"x": 1}, "strategy": "parallel",
        "chosen": {"strategy": "parallel", "reason": "requested"}, "max_concurrency": None,
        "state": "running", "result": None, "error": None, "created_ms": at,
        "finished_ms": None, "updated_ms": at, "steps": steps,
    }  # fmt: skip
    with Journal(path) as journal, journal.transaction():
        for record in (done, running, scatter, step):
            journal.put_task(record["id"], record)
        journal.put_workflow("r-1", run)


@pytest.fixture
def head(make_node: Callable[..., Node], tmp_path: Path) -> Cluster:
    path = tmp_path / "journal.sqlite3"
    _write_previous_version(path)
    node = make_node("head", settings=FAST)
    node.spawn(Echo, "e1")  # first: the scatter is sent to them again as the head starts
    node.spawn(Echo, "e2")
    start_control_plane(node, journal=path)
    cluster = Cluster(node)
    cluster.wait_for_agents(AGENTS)
    return cluster


def test_a_finished_task_of_the_previous_version_answers_and_keeps_its_key(head: Cluster) -> None:
    assert head.result("t-done", timeout_s=5) == {"echo": {"n": 1}}
    assert head.status("t-done")["state"] == "succeeded"
    again = head.submit("echo", {"n": 1}, idempotency_key="k-done")
    assert again.id == "t-done"
    assert head.dead_letters()["count"] == 0


def test_a_task_running_when_the_previous_version_stopped_runs_again(head: Cluster) -> None:
    assert head.result("t-running", timeout_s=10) == {"hung": {"n": 2}}
    status = head.status("t-running")
    assert (status["state"], status["attempts"], status["node_failures"]) == ("succeeded", 2, 1)
    assert [e["event"] for e in status["log"]][-3:] == ["recovered", "assigned", "succeeded"]


def test_a_scatter_of_the_previous_version_is_sent_again_and_decided(head: Cluster) -> None:
    assert head.result("t-scatter", timeout_s=10) == {"hung": {"n": 3}}
    assert head.status("t-scatter")["reason"] == "2 of 2 agreed"


def test_a_workflow_run_of_the_previous_version_goes_on_to_its_end(head: Cluster) -> None:
    run = macp.Run(head, "r-1")
    assert run.result(timeout_s=10) == {
        "b": {"echo": {"input": {"x": 1}, "deps": {"a": {"hung": {"input": {"x": 1}, "deps": {}}}}}}
    }
    status = run.status()
    assert {s: status["steps"][s]["state"] for s in "ab"} == {"a": "succeeded", "b": "succeeded"}
    assert head.status("t-step")["node_failures"] == 1
