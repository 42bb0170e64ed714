"""Nothing is lost: a worker node or the head is killed (-9) while tasks are in flight, and
every task still completes exactly once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    import macp
    from macp.testing import LocalCluster

pytestmark = pytest.mark.fault

N = 100_000  # about 10 ms of work per task: enough for tasks to be in flight at the kill
CHECK = sum(i * i for i in range(N)) % 997


def _workers(n: int) -> dict[str, dict[str, str]]:
    return {f"w{i}": {"c1": "agents:Cruncher", "c2": "agents:Cruncher"} for i in range(n)}


def _done(cluster: macp.Cluster) -> int:
    return len(cluster.tasks(states=["succeeded"]))


def _submit_queued(cluster: macp.Cluster, count: int) -> dict[str, int]:
    """Submit ``count`` tasks while every worker is paused, then resume them all: the queue is
    deep from the start, so every worker has tasks in flight until near the end (submitting
    one by one to running workers, a fast machine could finish them as they come)."""
    cluster.control("pause", "all")
    tasks = {cluster.submit("crunch", {"x": x, "n": N}).id: x for x in range(count)}
    cluster.control("resume", "all")
    return tasks


def _check_all_once(cluster: macp.Cluster, tasks: dict[str, int]) -> list[dict[str, Any]]:
    """Every task's result is right, and each task succeeded once and only once."""
    for task_id, x in tasks.items():
        result = cluster.result(task_id, timeout_s=60)
        assert (result["x"], result["y"], result["check"]) == (x, 2 * x, CHECK)
    listed = cluster.tasks()
    assert sorted(t["id"] for t in listed) == sorted(tasks)  # none lost, none added
    assert {t["state"] for t in listed} == {"succeeded"}
    return [cluster.status(task_id) for task_id in tasks]


def test_no_task_is_lost_or_counted_twice_when_a_worker_node_is_killed(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    local = local_cluster(_workers(3), processes=True)
    cluster = local.cluster
    tasks = _submit_queued(cluster, 1000)
    wait_until(lambda: _done(cluster) >= 300, 60, "the first 300 tasks did not finish")
    local.kill("w1")
    statuses = _check_all_once(cluster, tasks)
    redispatched = [s for s in statuses if s["attempts"] > 1]
    assert redispatched, "the killed node had no task in flight: the test proved nothing"
    assert all(not s["agent"].endswith("@w1") for s in redispatched)
    assert {r["address"] for r in cluster.find(node="w1")} == {"c1@w1", "c2@w1"}
    assert {r["status"] for r in cluster.find(node="w1")} == {"offline"}


def test_no_task_is_lost_or_counted_twice_when_the_head_is_killed_and_restarted(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    local = local_cluster(_workers(2), processes=True)
    cluster = local.cluster
    tasks = _submit_queued(cluster, 300)
    wait_until(lambda: _done(cluster) >= 50, 60, "the first 50 tasks did not finish")
    local.restart("head")  # killed (-9), then started on its journal and its address
    statuses = _check_all_once(cluster, tasks)
    recovered = [s for s in statuses if any(e["event"] == "recovered" for e in s["log"])]
    assert recovered, "no task was in flight when the head died: the test proved nothing"
