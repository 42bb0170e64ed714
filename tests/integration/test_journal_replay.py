"""The control plane restarting on a journal with records it cannot replay: each such record is
set aside as a dead letter with its reason, and every actor starts with the rest."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import msgpack
import pytest

import macp
from macp import Agent, Cluster, handler, start_control_plane
from macp.actors.coordinator.task import Task
from macp.envelope import now_ms
from macp.store import Journal

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp import Node

pytestmark = pytest.mark.integration

FAST = macp.Settings(strict=True, supervisor_check_interval_s=0.05, ask_timeout_s=5.0)


class Doubler(Agent):
    capabilities = ("double",)

    @handler("double")
    def double(self, body: Any) -> Any:
        return 2 * (body["input"] if isinstance(body, dict) and "input" in body else body)


class Later(Agent):
    capabilities = ("later",)

    @handler("later")
    def later(self, body: Any) -> Any:
        return body


@pytest.fixture
def head(make_node: Callable[..., Node], journal_path: Path) -> Callable[..., Cluster]:
    """Start a head on the test's journal, with these agents; a later call is a restart."""

    def start(*agents: tuple[type[Agent], str]) -> Cluster:
        node = make_node("head", settings=FAST)
        start_control_plane(node, journal=journal_path)
        for cls, name in agents:
            node.spawn(cls, name)
        cluster = Cluster(node)
        cluster.wait_for_agents(f"{name}@head" for _, name in agents)
        return cluster

    return start


def _letters(cluster: Cluster) -> dict[tuple[str, str], str]:
    letters = cluster.dead_letters(limit=100)
    assert letters["count"] == len(letters["newest"])
    return {(d["source"], d["key"]): d["reason"] for d in letters["newest"]}


def _task(task_id: str, **changes: Any) -> dict[str, Any]:
    record = Task.submitted(task_id, {"type": "double", "body": 21}, now_ms()).to_record()
    record.update(changes)
    return record


def test_task_records_the_coordinator_cannot_replay_are_set_aside_and_the_rest_resume(
    head: Callable[..., Cluster], journal_path: Path
) -> None:
    with Journal(journal_path) as journal:
        journal.put_task("ok", _task("ok"))
        journal.put_task("priority", _task("priority", priority="high"))
        journal.put_task("state", _task("state", state="exploded"))
        journal.put_task("log", _task("log", log={"not": "a list"}))
        journal.put_task("other-id", _task("someone-else"))
        journal.put_task("quorum", _task("quorum", kind="scatter", expected=["a@x"],
                                         aggregation="quorum", quorum=5))  # fmt: skip
    cluster = head((Doubler, "d"))
    assert cluster.result("ok", timeout_s=5) == 42  # replayed, dispatched again, done
    assert _letters(cluster) == {
        ("tasks", "priority"): "its 'priority' is 'high', not an integer 0-3",
        ("tasks", "state"): "its 'state' is 'exploded', not one of assigned, cancelled, "
        "failed, pending, retrying, running, succeeded",
        ("tasks", "log"): "its 'log' is {'not': 'a list'}, not a list",
        ("tasks", "other-id"): "its 'id' 'someone-else' is not its row's id 'other-id'",
        ("tasks", "quorum"): "its aggregation cannot be replayed (quorum must be an integer "
        "from 1 to 1 (the agents asked))",
    }
    assert [t["id"] for t in cluster.tasks()] == ["ok"]
    assert cluster.submit("double", 5).result(timeout_s=5) == 10


def test_workflow_records_of_the_wrong_shape_are_set_aside(
    head: Callable[..., Cluster], journal_path: Path
) -> None:
    cluster = head((Doubler, "d"))
    good = {"name": "good", "steps": [{"id": "a", "type": "double"}]}
    cluster.define(good)
    run = cluster.run("good", 4)
    assert run.result(timeout_s=5) == {"a": 8}
    cluster.node.stop()
    with Journal(journal_path) as journal:
        stored = journal.get_workflow(run.id)
        assert stored is not None
        broken: dict[str, Any] = {**stored, "state": "running"}
        journal.put_workflow("r-limit", {**broken, "id": "r-limit", "max_concurrency": "3"})
        journal.put_workflow("r-steps", {**broken, "id": "r-steps", "steps": {"zz": {}}})
        journal.put_workflow("r-strategy", {**broken, "id": "r-strategy", "strategy": "warp"})
        journal.put_workflow("definition:bad", {"id": "definition:bad", "state": "definition",
                                                "name": "bad", "definition": {"name": "bad"},
                                                "updated_ms": 1})  # fmt: skip

    cluster = head((Doubler, "d"))
    assert _letters(cluster) == {
        ("workflows", "r-limit"): "its 'max_concurrency' is '3', not an integer >= 1",
        ("workflows", "r-steps"): "its steps ['zz'] are not its definition's",
        ("workflows", "r-strategy"): "its 'strategy' is 'warp', not one of sequential, "
        "parallel, priority, resource-aware, adaptive",
        ("workflows", "definition:bad"): "its definition is not a valid workflow (workflow "
        "'bad': 'steps' is required)",
    }
    assert cluster.runs() == {
        "definitions": ["good"],
        "runs": [{"id": run.id, "workflow": "good", "state": "succeeded",
                  "created_ms": stored["created_ms"]}],
    }  # fmt: skip
    assert cluster.run("good", 5).result(timeout_s=5) == {"a": 10}


def test_a_running_step_whose_task_was_set_aside_fails_and_its_run_goes_on_by_its_policy(
    head: Callable[..., Cluster], journal_path: Path
) -> None:
    cluster = head((Doubler, "d"))
    definition = {"name": "w", "steps": [
        {"id": "a", "type": "later", "body": 1, "on_failure": "continue"},
        {"id": "b", "type": "double", "body": 3, "depends_on": ["a"]},
    ]}  # fmt: skip
    run = cluster.run(definition)  # step a waits: no agent handles 'later' yet
    task_a = run.status()["steps"]["a"]["task_id"]
    assert cluster.status(task_a)["state"] == "pending"
    cluster.node.stop()
    conn = sqlite3.connect(journal_path)
    with conn:
        conn.execute("UPDATE tasks SET record = ? WHERE id = ?", (b"\xc1", task_a))
    conn.close()

    cluster = head((Doubler, "d"), (Later, "later"))
    again = macp.Run(cluster, run.id)
    assert again.result(timeout_s=5) == {"b": 6}
    status = again.status()
    assert (status["state"], status["steps"]["a"]["state"]) == ("succeeded", "failed")
    assert status["steps"]["a"]["error"]["message"] == (
        f"the task {task_a} of step 'a' could not be replayed from the journal (see the dead "
        "letters)"
    )
    assert _letters(cluster) == {
        ("tasks", task_a): "its record is not msgpack data an envelope could carry (FormatError)"
    }


def test_resource_and_memory_rows_that_cannot_be_read_back_do_not_stop_their_actors(
    head: Callable[..., Cluster], journal_path: Path
) -> None:
    with Journal(journal_path) as journal:
        journal.put_pool("gpu", 4)
        journal.put_lease("kept", "agent-a", {"gpu": 1}, 1)
        journal.put_lease("broken", "agent-b", {"gpu": 1}, 2)
        journal.put_memory("ns", "kept", "value", None)
        journal.put_memory("ns", "broken", "value", None)
    conn = sqlite3.connect(journal_path)
    with conn:
        conn.execute("UPDATE leases SET amounts = ? WHERE id = 'broken'", (msgpack.packb([1]),))
        conn.execute("UPDATE memory SET expires_at_ms = 'later' WHERE key = 'broken'")
    conn.close()

    cluster = head()
    assert cluster.resources("usage") == {"gpu": {"capacity": 4.0, "allocated": 1.0, "free": 3.0}}
    assert cluster.memory("get", namespace="ns", key="kept")["value"] == "value"
    assert cluster.memory("list", namespace="ns") == {"keys": ["kept"]}
    assert _letters(cluster) == {
        ("leases", "broken"): "its amounts are [1], not a map of pool to amount > 0",
        ("memory", "ns/broken"): "its expiry is 'later', not epoch milliseconds",
    }
