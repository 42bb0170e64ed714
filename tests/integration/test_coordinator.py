"""The coordinator with real actors and a real journal: routing, priorities, retries, timeouts,
cancellation, the circuit breaker, scatter-gather, idempotency, and resuming from the journal."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from typing import TYPE_CHECKING, Any

import pytest
from procs import QUICK_CLUSTER

import macp
from macp import Agent, Cluster, Context, handler, start_control_plane
from macp.store import Journal
from macp.testing import Probe, ProbedAgent, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp import Node

pytestmark = pytest.mark.integration


class Worker(ProbedAgent):
    capabilities = ("work",)

    @handler("work")
    def work(self, body: Any, ctx: Context) -> Any:
        self.probe.record((self.name, body, ctx.attempt))
        return {"by": self.name, "x": body}

    @handler("wait")
    def wait(self, body: Any, ctx: Context) -> Any:
        self.probe.record((self.name, body, ctx.attempt))
        ctx.progress(0.5, "half way")
        self.probe.wait_open(timeout_s=10)
        return {"by": self.name, "x": body}


class Broken(Worker):
    def work(self, body: Any, ctx: Context) -> Any:
        self.probe.record((self.name, body, ctx.attempt))
        raise RuntimeError(f"{self.name} is broken")


class Quick(Agent):
    @handler("wait")
    def wait(self, body: Any) -> Any:
        return {"by": self.name, "x": body}


class Flaky(ProbedAgent):
    capabilities = ("flaky",)

    @handler("flaky")
    def flaky(self, body: dict[str, int], ctx: Context) -> Any:
        self.probe.record(("flaky", ctx.attempt))
        if ctx.attempt < body["succeed_on"]:
            raise RuntimeError(f"attempt {ctx.attempt} fails")
        return ctx.attempt

    @handler("reject")
    def reject(self, _body: Any) -> Any:
        raise macp.InvalidParams("the body is missing 'text'")


class Voter(Agent):
    capabilities = ("vote",)

    @handler("vote")
    def vote(self, _body: Any) -> Any:
        return self.config["vote"]


class Auditor(Agent):
    """Answers what the coordinator's journal (the SQLite file, read through a connection of
    its own) holds for the task it is running: its state, or None if it has no row."""

    capabilities = ("audit",)

    @handler("audit")
    def audit(self, _body: Any, ctx: Context) -> Any:
        with contextlib.closing(sqlite3.connect(self.config["journal"])) as db:
            row = db.execute("SELECT state FROM tasks WHERE id = ?", (ctx.task_id,)).fetchone()
        return None if row is None else row[0]


class Listener(ProbedAgent):
    @handler("task.done")
    def done(self, body: Any) -> None:
        self.probe.record(("done", body["task_id"], body["state"], body["result"]))


@pytest.fixture
def control(make_node: Callable[..., Node], tmp_path: Path) -> Callable[..., tuple[Node, Cluster]]:
    def start(name: str = "head", **coordinator: Any) -> tuple[Node, Cluster]:
        node = make_node(name, settings=QUICK_CLUSTER)
        config = {"max_in_flight": 1, **coordinator}
        start_control_plane(node, journal=tmp_path / "journal.sqlite3", coordinator=config)
        return node, Cluster(node)

    return start


def _agents_of(task: macp.Task) -> list[str]:
    return [e["agent"] for e in task.status()["log"] if e["event"] == "assigned"]


def test_a_task_goes_only_to_an_agent_with_its_capabilities(probe: Probe, control: Any) -> None:
    node, cluster = control()
    node.spawn(Flaky, "flaky", probe=probe)
    node.spawn(Worker, "worker", probe=probe)
    assert cluster.submit("work", 7).result() == {"by": "worker", "x": 7}
    assert cluster.submit("flaky", {"succeed_on": 1}).result() == 1
    assert probe.events == [("worker", 7, 1), ("flaky", 1)]


def test_tasks_go_to_the_least_loaded_agents(probe: Probe, control: Any) -> None:
    node, cluster = control()
    for i in range(3):
        node.spawn(Worker, f"w{i}", probe=probe)
    tasks = [cluster.submit("wait", i) for i in range(3)]
    events = probe.wait_count(3)
    assert sorted(e[0] for e in events) == ["w0", "w1", "w2"]
    probe.open()
    assert sorted(t.result()["by"] for t in tasks) == ["w0", "w1", "w2"]


def test_higher_priorities_go_first_and_equal_ones_in_order(probe: Probe, control: Any) -> None:
    node, cluster = control()
    node.spawn(Worker, "only", probe=probe)
    blocker = cluster.submit("wait", "blocker")
    probe.wait_count(1)
    priorities = [0, 1, 3, 2, 1, 3, 0, 2]
    tasks = [cluster.submit("work", f"{p}-{i}", priority=p) for i, p in enumerate(priorities)]
    probe.open()
    for task in [blocker, *tasks]:
        task.result()
    order = [e[1] for e in probe.events[1:]]
    assert order == ["3-2", "3-5", "2-3", "2-7", "1-1", "1-4", "0-0", "0-6"]


def test_a_failing_task_is_retried_with_exponential_backoff(probe: Probe, control: Any) -> None:
    node, cluster = control()
    node.spawn(Flaky, "flaky", probe=probe)
    task = cluster.submit("flaky", {"succeed_on": 3}, backoff_s=0.05, max_retries=3)
    assert task.result() == 3
    status = task.status()
    assert (status["state"], status["attempts"]) == ("succeeded", 3)
    log = status["log"]
    failed = [e["ts"] for e in log if e["event"] == "failed_attempt"]
    assigned = [e["ts"] for e in log if e["event"] == "assigned"]
    assert assigned[1] - failed[0] >= 50
    assert assigned[2] - failed[1] >= 100


def test_a_task_that_keeps_failing_becomes_a_poison_message(probe: Probe, control: Any) -> None:
    node, cluster = control()
    node.spawn(Flaky, "flaky", probe=probe)
    task = cluster.submit("flaky", {"succeed_on": 99}, max_retries=2, backoff_s=0.01)
    with pytest.raises(macp.PoisonMessage, match=r"failed 3 times; last: AgentError: RuntimeError"):
        task.result()
    assert probe.events == [("flaky", 1), ("flaky", 2), ("flaky", 3)]
    assert task.status()["state"] == "failed"


def test_a_task_refused_as_invalid_is_not_retried(probe: Probe, control: Any) -> None:
    node, cluster = control()
    node.spawn(Flaky, "flaky", probe=probe)
    task = cluster.submit("reject", capabilities=["flaky"], max_retries=3)
    with pytest.raises(macp.InvalidParams, match=r"^the body is missing 'text'$"):
        task.result()
    assert task.status()["attempts"] == 1


def test_a_task_that_times_out_is_retried_then_failed(probe: Probe, control: Any) -> None:
    node, cluster = control()
    node.spawn(Worker, "w", probe=probe)
    task = cluster.submit("wait", "t", timeout_s=0.2, max_retries=1, backoff_s=0.01)
    with pytest.raises(macp.PoisonMessage, match="failed 2 times; last: AskTimeout"):
        task.result()
    probe.open()


def test_a_late_completion_of_an_earlier_attempt_is_ignored(probe: Probe, control: Any) -> None:
    node, cluster = control()
    node.spawn(Worker, "slow", probe=probe)
    task = cluster.submit("wait", "x", timeout_s=0.3, max_retries=2, backoff_s=0.01)
    probe.wait_count(1)
    node.spawn(Quick, "quick")  # attempt 1 times out at "slow"; attempt 2 succeeds here
    assert task.result() == {"by": "quick", "x": "x"}
    probe.open()  # now attempt 1 completes too, and must not count
    wait_until(lambda: task.status()["log"][-1]["event"] == "duplicate_ignored")
    status = task.status()
    assert (status["state"], status["result"], status["attempts"]) == (
        "succeeded", {"by": "quick", "x": "x"}, 2,
    )  # fmt: skip


def test_cancel_a_waiting_task_and_a_running_one(probe: Probe, control: Any) -> None:
    node, cluster = control()
    waiting = cluster.submit("nobody-does-this")
    assert waiting.cancel() is True
    with pytest.raises(macp.Cancelled, match="was cancelled"):
        waiting.result()
    node.spawn(Worker, "w", probe=probe)
    running = cluster.submit("wait", 1)
    probe.wait_count(1)
    assert running.cancel() is True
    probe.open()
    with pytest.raises(macp.Cancelled):
        running.result()
    wait_until(lambda: running.status()["log"][-1]["event"] == "duplicate_ignored")
    assert running.cancel() is False


def test_the_circuit_breaker_stops_sending_work_to_a_failing_agent(
    probe: Probe, control: Any
) -> None:
    node, cluster = control(breaker_failures=2, breaker_cooldown_s=60)
    node.spawn(Broken, "bad", probe=probe)
    node.spawn(Worker, "good", probe=probe)
    for i in range(8):
        assert cluster.submit("work", i, max_retries=5, backoff_s=0).result()["by"] == "good"
    assert [e[0] for e in probe.events].count("bad") == 2


def test_a_task_waits_for_a_capable_agent_and_says_why(probe: Probe, control: Any) -> None:
    node, cluster = control()
    task = cluster.submit("work", 5)
    wait_until(lambda: task.status().get("wait_reason") ==
               "no agent that handles 'work' is registered")  # fmt: skip
    node.spawn(Worker, "late", probe=probe)
    assert task.result() == {"by": "late", "x": 5}


def test_a_task_with_no_capable_agent_fails_after_its_timeout(control: Any) -> None:
    _, cluster = control()
    task = cluster.submit("work", 1, timeout_s=0.3)
    with pytest.raises(macp.ResourceUnavailable, match=r"waited 0.3 s: no agent that handles"):
        task.result()


def test_progress_and_acknowledgement_show_in_the_status(probe: Probe, control: Any) -> None:
    node, cluster = control()
    node.spawn(Worker, "w", probe=probe)
    task = cluster.submit("wait", 1)
    wait_until(lambda: task.status()["progress"] == 0.5)
    status = task.status()
    assert (status["state"], status["progress_message"], status["agent"]) == (
        "running", "half way", "w@head",
    )  # fmt: skip
    assert status["started_ms"] >= status["assigned_ms"]
    probe.open()
    task.result()
    assert task.status()["progress"] == 1.0


def test_the_same_idempotency_key_gives_the_same_task(probe: Probe, control: Any) -> None:
    node, cluster = control()
    node.spawn(Worker, "w", probe=probe)
    first = cluster.submit("work", 1, idempotency_key="order-42")
    again = cluster.submit("work", 2, idempotency_key="order-42")
    assert first.id == again.id
    assert again.result() == {"by": "w", "x": 1}
    assert len(probe.events) == 1


def test_the_notify_address_is_told_when_the_task_is_done(probe: Probe, control: Any) -> None:
    node, cluster = control()
    node.spawn(Worker, "w", probe=probe)
    node.spawn(Listener, "listener", probe=probe)
    task = cluster.submit("work", 3, notify="listener@head")
    probe.wait_for(lambda ev: any(e[0] == "done" for e in ev))
    assert ("done", task.id, "succeeded", {"by": "w", "x": 3}) in probe.events


def test_a_task_reaches_its_agent_only_once_the_journal_holds_its_assignment(
    control: Any, tmp_path: Path
) -> None:
    node, cluster = control(max_in_flight=4)
    journal = str(tmp_path / "journal.sqlite3")
    for name in ("a1", "a2", "a3"):
        node.spawn(Auditor, name, config={"journal": journal})
    cluster.wait_for_agents(["a1@head", "a2@head", "a3@head"])
    tasks = [cluster.submit("audit", i, capabilities=["audit"]) for i in range(30)]
    assert {t.result() for t in tasks} <= {"assigned", "running"}  # never None: not journaled
    votes = cluster.scatter("audit", capabilities=["audit"], aggregation="all").result()
    assert len(votes) == 3
    assert {v["result"] for v in votes} <= {"assigned", "running"}


@pytest.mark.parametrize(
    ("aggregation", "quorum", "expected"),
    [
        ("majority", None, 1),
        ("quorum", 2, 1),
        ("first", None, "one of the votes"),
        ("all", None, [1, 1, 2]),
    ],
)
def test_scatter_gather_aggregates(
    control: Any, aggregation: str, quorum: int | None, expected: Any
) -> None:
    node, cluster = control()
    for name, vote in (("v1", 1), ("v2", 1), ("v3", 2)):
        node.spawn(Voter, name, config={"vote": vote})
    cluster.wait_for_agents(["v1@head", "v2@head", "v3@head"])
    result = cluster.scatter("vote", aggregation=aggregation, quorum=quorum).result()
    if aggregation == "first":
        assert result in (1, 2)
    elif aggregation == "all":
        assert sorted(a["result"] for a in result) == expected
        assert sorted(a["agent"] for a in result) == ["v1@head", "v2@head", "v3@head"]
    else:
        assert result == expected


def test_scatter_fails_when_no_value_can_reach_the_quorum(control: Any) -> None:
    node, cluster = control()
    for name, vote in (("v1", 1), ("v2", 1), ("v3", 2)):
        node.spawn(Voter, name, config={"vote": vote})
    cluster.wait_for_agents(["v1@head", "v2@head", "v3@head"])
    with pytest.raises(macp.AgentError, match="no value can reach 3 of 3 votes"):
        cluster.scatter("vote", aggregation="quorum", quorum=3).result()
    with pytest.raises(macp.InvalidParams, match="quorum must be an integer from 1 to 3"):
        cluster.scatter("vote", aggregation="quorum", quorum=4)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": ""}, "task field 'type' must be a non-empty string, e.g. 'summarize'"),
        ({"priority": "high"}, "task field 'priority' must be an integer >= 0, not 'high'"),
        ({"priority": 7}, "task field 'priority' must be 0 to 3, not 7"),
        ({"capabilities": "summarize"},
         "task field 'capabilities' must be a list of strings, not 'summarize'"),
        ({"timeout_s": -1}, "task field 'timeout_s' must be a number >= 0.001, not -1"),
        ({"max_retries": -2}, "task field 'max_retries' must be an integer >= 0, not -2"),
    ],
)  # fmt: skip
def test_a_bad_task_is_refused_naming_the_field_and_nothing_is_queued(
    control: Any, fields: dict[str, Any], message: str
) -> None:
    _, cluster = control()
    spec = {"type": "work", "body": 1, **fields}
    with pytest.raises(macp.InvalidParams, match=f"^{re.escape(message)}$"):
        cluster.submit(spec.pop("type"), **spec)
    assert cluster.tasks() == []


def test_a_scatter_with_an_unknown_aggregation_is_refused_before_voters_are_sought(
    control: Any,
) -> None:
    _, cluster = control()  # no agent at all: the aggregation is still what is wrong
    with pytest.raises(
        macp.InvalidParams,
        match=r"^aggregation must be one of all, first, majority, quorum, not 'most'$",
    ):
        cluster.scatter("vote", aggregation="most")


def test_waiting_for_agents_names_those_that_never_came(probe: Probe, control: Any) -> None:
    node, cluster = control()
    node.spawn(Worker, "w", probe=probe)
    with pytest.raises(macp.AskTimeout, match=r"^agents not routable within 0.5 s: \['x@head'\]$"):
        cluster.wait_for_agents(["w@head", "x@head"], timeout_s=0.5)
    cluster.wait_for_agents(["w@head"])  # it is there: no error


def test_control_commands_reach_one_agent_a_group_or_all(probe: Probe, control: Any) -> None:
    node, cluster = control()
    node.spawn(Worker, "a", group="blue", probe=probe)
    node.spawn(Worker, "b", group="blue", probe=probe)
    node.spawn(Worker, "c", group="red", probe=probe)
    cluster.wait_for_agents(["a@head", "b@head", "c@head"])
    assert cluster.control("pause", "group:blue") == {
        "a@head": {"ok": True, "result": {"state": "paused"}},
        "b@head": {"ok": True, "result": {"state": "paused"}},
    }
    assert set(cluster.control("status", "all")) == {"a@head", "b@head", "c@head"}
    resumed = {"a@head": {"ok": True, "result": {"state": "running"}}}
    assert cluster.control("resume", "a") == resumed
    with pytest.raises(macp.InvalidParams, match="no registered agent matches target 'ghost'"):
        cluster.control("pause", "ghost")


def test_submit_answers_only_once_the_task_is_in_the_journal(control: Any, tmp_path: Path) -> None:
    _, cluster = control()
    task = cluster.submit("work", 1)
    with Journal(tmp_path / "journal.sqlite3").open() as journal:
        record = journal.get_task(task.id)
    assert record is not None
    assert record["state"] == "pending"


def test_a_restarted_coordinator_resumes_from_its_journal(
    probe: Probe, control: Any, make_node: Callable[..., Node]
) -> None:
    node, cluster = control("first")
    node.spawn(Worker, "w", probe=probe)
    done = cluster.submit("work", "before")
    assert done.result() == {"by": "w", "x": "before"}
    waiting = [cluster.submit("flaky", {"succeed_on": 1}) for _ in range(3)]
    node.stop()

    _, again = control("first")  # a new process would do the same: same name, same journal
    assert again.result(done.id) == {"by": "w", "x": "before"}
    again.node.spawn(Flaky, "flaky", probe=probe)
    assert [again.result(t.id) for t in waiting] == [1, 1, 1]
    assert all(e[0] == "flaky" for e in probe.events[1:])
    assert {again.status(t.id)["log"][-2]["event"] for t in waiting} == {"assigned"}
