"""Task events: a subscriber on another node (a TaskEvents agent, as the gateway hosts one) is
told each change of a task's state, in order, for a task that succeeds, one that fails and
is retried, one that fails for good and one cancelled; a subscriber that stops renewing its
lease is dropped; after a restart of the head (a real process, killed) renewing brings the
events back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from procs import QUICK_CLUSTER, QUICK_CLUSTER_FLAGS

import macp
from macp import Agent, Cluster, Context, TaskEvents, handler, start_control_plane
from macp.testing import Recorder, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp import Node
    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration

EVENTS = Recorder()


class Worker(Agent):
    @handler("work")
    def work(self, body: dict[str, Any], ctx: Context) -> int:
        if body["fail_until"] >= ctx.attempt:
            raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
        return ctx.attempt


@pytest.fixture(autouse=True)
def _fresh() -> None:
    EVENTS.clear()


def _of(task_id: str) -> list[dict[str, Any]]:
    return [e for e in EVENTS.events if e["task_id"] == task_id]


def _ended(task_id: str, state: str) -> list[dict[str, Any]]:
    EVENTS.wait_for(lambda es: any(e["task_id"] == task_id and e["state"] == state for e in es))
    events = _of(task_id)
    # in transition order: each event starts where the one before ended
    assert [e["previous"] for e in events] == [None] + [e["state"] for e in events[:-1]]
    return events


def _states(events: list[dict[str, Any]]) -> list[str]:
    """The states, but ``running`` (the agent's acknowledgement may come after its answer)."""
    return [e["state"] for e in events if e["state"] != "running"]


@pytest.fixture
def cluster(make_node: Callable[..., Node], tmp_path: Path) -> Cluster:
    head = make_node("head", listen="tcp://127.0.0.1:0", settings=QUICK_CLUSTER)
    start_control_plane(head, journal=tmp_path / "j.sqlite3")
    head.spawn(Worker, "worker")
    gw = make_node("gw", listen="tcp://127.0.0.1:0", peers={"head": head.address},
                   head="head", settings=QUICK_CLUSTER)  # fmt: skip
    cluster = Cluster(gw)
    cluster.wait_for_agents(["worker@head"], timeout_s=10)
    gw.spawn(TaskEvents, "events", config={"lease_s": 1.0}, on_event=EVENTS.record)
    wait_until(
        lambda: [s["address"] for s in cluster.task_subscribers()] == ["events@gw"],
        5,
        "the follower never subscribed",
    )
    return cluster


def test_a_subscriber_is_told_each_change_of_state_in_order(cluster: Cluster) -> None:
    ok = cluster.submit("work", {"fail_until": 0})
    assert ok.result() == 1
    retried = cluster.submit("work", {"fail_until": 1}, backoff_s=0.01)
    assert retried.result() == 2
    failed = cluster.submit("work", {"fail_until": 9}, max_retries=0)
    with pytest.raises(macp.PoisonMessage, match=r"failed 1 times"):
        failed.result()
    waiting = cluster.submit("nobody.handles.this", timeout_s=60)
    assert waiting.cancel() is True

    events = _ended(ok.id, "succeeded")
    assert _states(events) == ["pending", "assigned", "succeeded"]
    assert events[0]["type"] == "work"
    assert "attempt" not in events[0]
    assert events[-1]["attempt"] == 1
    assert events[-1]["agent"] == "worker@head"
    assert "error" not in events[-1]
    assert all(isinstance(e["time_ms"], int) for e in events)

    events = _ended(retried.id, "succeeded")
    assert _states(events) == ["pending", "assigned", "retrying", "pending", "assigned",
                               "succeeded"]  # fmt: skip
    retrying = next(e for e in events if e["state"] == "retrying")
    assert retrying["attempt"] == 1
    assert retrying["agent"] == "worker@head"
    assert retrying["error"]["message"] == "RuntimeError: attempt 1 fails on purpose"
    assert events[-1]["attempt"] == 2

    events = _ended(failed.id, "failed")
    assert _states(events) == ["pending", "assigned", "failed"]
    assert events[-1]["error"]["error"] == "PoisonMessage"

    events = _ended(waiting.id, "cancelled")
    assert _states(events) == ["pending", "cancelled"]
    assert events[-1]["error"]["error"] == "Cancelled"


def test_a_subscriber_that_stops_renewing_is_dropped(cluster: Cluster) -> None:
    assert cluster.subscribe_tasks("ghost@gw", lease_s=0.3) == {
        "address": "ghost@gw",
        "lease_s": 0.3,
    }
    assert "ghost@gw" in {s["address"] for s in cluster.task_subscribers()}
    wait_until(
        lambda: [s["address"] for s in cluster.task_subscribers()] == ["events@gw"],
        5,
        "the lapsed subscriber was never dropped",
    )
    assert cluster.unsubscribe_tasks("ghost@gw") is False
    assert cluster.unsubscribe_tasks("events@gw") is True
    assert cluster.task_subscribers() == []


def test_a_subscription_needs_an_address_and_a_lease(cluster: Cluster) -> None:
    with pytest.raises(macp.InvalidParams, match=r"^tasks.subscribe needs 'lease_s', seconds"):
        cluster.subscribe_tasks("ghost@gw", lease_s=0)
    with pytest.raises(macp.InvalidParams, match=r"^tasks.subscribe needs the subscriber's"):
        cluster.subscribe_tasks("ghost", lease_s=5)


def test_a_renewing_subscriber_gets_events_again_after_the_head_restarts(
    make_node: Callable[..., Node], procs: Callable[..., NodeProcess], tmp_path: Path
) -> None:
    args = (*QUICK_CLUSTER_FLAGS, "--control-plane", "--journal", str(tmp_path / "j.sqlite3"),
            "--agent", "echo=agents:Echo")  # fmt: skip
    head = procs("head", *args)
    gw = make_node("gw", listen="tcp://127.0.0.1:0", peers={"head": str(head.address)},
                   head="head", settings=QUICK_CLUSTER)  # fmt: skip
    cluster = Cluster(gw, timeout_s=20)
    cluster.wait_for_agents(["echo@head"], timeout_s=15)
    gw.spawn(TaskEvents, "events", config={"lease_s": 1.0}, on_event=EVENTS.record)
    before = cluster.submit("echo", "before")
    before.result()
    _ended(before.id, "succeeded")

    head.kill()
    procs("head", *args, listen=str(head.address))
    cluster.wait_for_agents(["echo@head"], timeout_s=15)
    wait_until(
        lambda: [s["address"] for s in cluster.task_subscribers()] == ["events@gw"],
        10,
        "the follower never subscribed to the restarted head",
    )
    after = cluster.submit("echo", "after")
    after.result()
    assert _states(_ended(after.id, "succeeded")) == ["pending", "assigned", "succeeded"]


def test_the_events_of_a_workflow_steps_task_name_its_run_and_step(cluster: Cluster) -> None:
    steps = [{"id": "first", "type": "work", "body": {"fail_until": 0}},
             {"id": "second", "type": "work", "body": {"fail_until": 0},
              "depends_on": ["first"]}]  # fmt: skip
    run = cluster.run({"name": "two", "steps": steps})
    run.result(timeout_s=20)
    tasks = {step["task_id"]: name for name, step in run.status()["steps"].items()}
    for task_id, step in tasks.items():
        events = _ended(task_id, "succeeded")
        assert {(e["run"], e["step"]) for e in events} == {(run.id, step)}
    plain = cluster.submit("work", {"fail_until": 0})
    plain.result()
    assert all("run" not in e and "step" not in e for e in _ended(plain.id, "succeeded"))
