"""A task whose node goes down is retried on a live agent, without using up the retries that
its agent's own errors count against: the coordinator knows at once which nodes are down and
routes nothing there, counts the attempts lost with a node apart (``node_failures``, with a
bound of its own), and a task pinned to an agent of a down node waits for the node."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pytest

import macp
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.testing import LocalCluster, NodeProcess

pytestmark = pytest.mark.fault

N = 100_000  # about 10 ms of work per task: enough for tasks to be in flight at the kill
CHECK = sum(i * i for i in range(N)) % 997
CRUNCHERS = {"c1": "agents:Cruncher", "c2": "agents:Cruncher"}
HANGS = {"s1": "agents:FirstAttemptHangs"}


def _ms(record: dict[str, Any]) -> int:
    """A JSON log record's time, epoch milliseconds."""
    return int(dt.datetime.fromisoformat(record["timestamp"]).timestamp() * 1000)


def _known_down_ms(head: NodeProcess, node: str) -> int:
    """When the head's coordinator learned that ``node`` is down (its own log line)."""
    return _ms(head.wait_for_log("coordinator.node_down", node=node))


def _running(cluster: macp.Cluster, task: macp.Task) -> bool:
    return bool(task.status()["state"] == "running")


def test_tasks_of_a_killed_worker_run_elsewhere_without_using_their_retries(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    local = local_cluster({"w0": CRUNCHERS, "w1": CRUNCHERS}, processes=True)
    cluster = local.cluster
    cluster.control("pause", "all")  # a deep queue: every agent has tasks in flight
    tasks = {cluster.submit("crunch", {"x": x, "n": N}, max_retries=1).id: x for x in range(400)}
    cluster.control("resume", "all")
    wait_until(lambda: len(cluster.tasks(states=["succeeded"])) >= 100, 60, "100 tasks not done")
    local.kill("w1")
    for task_id, x in tasks.items():  # a PoisonMessage would be raised here
        result = cluster.result(task_id, timeout_s=60)
        assert (result["x"], result["y"], result["check"]) == (x, 2 * x, CHECK)
    statuses = [cluster.status(task_id) for task_id in tasks]
    assert {s["state"] for s in statuses} == {"succeeded"}
    lost = [s for s in statuses if s["node_failures"]]
    assert lost, "the killed node had no task in flight: the test proved nothing"
    # each lost its attempt on w1 and succeeded at the next, on w0: no retry was used up
    assert {(s["attempts"], s["node_failures"], s["agent"][-3:]) for s in lost} == {(2, 1, "@w0")}
    assert all(s["node_failures"] == 0 for s in statuses if s["attempts"] == 1)
    known_down = _known_down_ms(local.process("head"), "w1")
    late = [
        (s["id"], e)
        for s in statuses
        for e in s["log"]
        if e["event"] == "assigned" and e["agent"].endswith("@w1") and e["ts"] > known_down
    ]
    assert late == []


def test_a_task_pinned_to_an_agent_of_a_down_node_waits_for_the_node_and_runs_there(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    # w0 is capable, but not the one pinned
    local = local_cluster({"w0": HANGS, "w1": HANGS}, processes=True)
    cluster = local.cluster
    task = cluster.submit("stall", {"n": 1}, agent="s1@w1", max_retries=0, timeout_s=20)
    wait_until(lambda: _running(cluster, task), 10, "the pinned task did not start")
    local.kill("w1")
    wait_until(lambda: task.status()["state"] == "pending", 10, "the task was not requeued")
    waiting = task.status()
    assert waiting["wait_reason"] == (
        "waiting: node down: its agent s1@w1 is on node 'w1', which is down; it runs once "
        "the node is back"
    )
    assert (waiting["attempts"], waiting["node_failures"]) == (1, 1)
    local.restart("w1")
    assert task.result(timeout_s=20) == {"body": {"n": 1}, "attempt": 2, "by": "s1@w1"}
    done = task.status()
    assert (done["attempts"], done["node_failures"], done["agent"]) == (2, 1, "s1@w1")
    assigned = [e["agent"] for e in done["log"] if e["event"] == "assigned"]
    assert assigned == ["s1@w1", "s1@w1"]


def test_a_task_pinned_to_an_agent_of_a_node_that_stays_down_fails_with_node_down_at_its_timeout(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    local = local_cluster({"w1": HANGS}, processes=True)
    cluster = local.cluster
    task = cluster.submit("stall", None, agent="s1@w1", timeout_s=4)
    wait_until(lambda: _running(cluster, task), 10, "the pinned task did not start")
    local.kill("w1")
    with pytest.raises(
        macp.NodeDown,
        match=rf"^task {task.id} waited 4 s: its agent s1@w1 is on node 'w1', which is down$",
    ):
        task.result(timeout_s=20)
    failed = task.status()
    assert (failed["state"], failed["attempts"], failed["node_failures"]) == ("failed", 1, 1)


def test_a_task_that_brings_down_every_node_it_runs_on_fails_after_its_node_failure_bound(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    local = local_cluster({f"w{i}": {"k": "agents:NodeKiller"} for i in range(3)}, processes=True)
    cluster = local.cluster
    workers = [local.process(f"w{i}") for i in range(3)]
    task = cluster.submit("die", None, max_retries=0, max_node_failures=1, timeout_s=10)
    with pytest.raises(
        macp.PoisonMessage,
        match=rf"^task {task.id} \(die\) lost its node 2 times \(max_node_failures 1\); "
        r"last: NodeDown: node 'w\d' went down \((silent|disconnected)\) before k@w\d "
        r"answered$",
    ):
        task.result(timeout_s=30)
    status = task.status()
    assert (status["attempts"], status["node_failures"]) == (2, 2)
    ran_on = [e["agent"] for e in status["log"] if e["event"] == "assigned"]
    assert len(set(ran_on)) == 2
    assert sorted(w.name for w in workers if not w.running()) == sorted(
        a.partition("@")[2] for a in ran_on
    )


def test_an_attempt_lost_with_the_head_does_not_use_up_the_tasks_retries(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    local = local_cluster({"w0": {"f": "agents:FailsOnSecondAttempt"}}, processes=True)
    cluster = local.cluster
    task = cluster.submit("slow_then_flaky", {"n": 1}, max_retries=1, timeout_s=20)
    wait_until(lambda: _running(cluster, task), 10, "the task did not start")
    local.restart("head")  # killed while its first attempt runs, then started on its journal
    # the second attempt fails: the task's one retry; the first was lost with the head
    assert cluster.result(task.id, timeout_s=30) == {"body": {"n": 1}, "attempt": 3}
    status = cluster.status(task.id)
    assert (status["attempts"], status["node_failures"]) == (3, 1)
    events = [e["event"] for e in status["log"]]
    assert events == ["submitted", "assigned", "recovered", "assigned", "failed_attempt",
                      "assigned", "succeeded"]  # fmt: skip
