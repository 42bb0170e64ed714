"""History and waiting reasons through the gateway (its operations table, and REST over real
HTTP) against a real cluster of node processes: each reason a task waits for produced and
read as a code, the task list's filters, a task's attempts and timings, the alerts active and
recent, each agent's counts; and the counts the same after the head is SIGKILLed and restarted.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from gateway_cluster import call
from history_cluster import AGENTS, HOLD_GPU, history_nodes, wait_code

from macp import Cluster, Settings
from macp.errors import PoisonMessage
from macp.gateway import Gateway, Member
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from topology_procs import TopologyNodes

    from macp.testing import LocalCluster

pytestmark = pytest.mark.integration
__all__ = ["history_nodes"]  # the fixture, used by name

SETTINGS = Settings(strict=True, heartbeat_interval_s=0.1, acceptable_pause_s=0.3)


@pytest.fixture
def member(history_nodes: TopologyNodes) -> Iterator[Member]:
    with Member.join(history_nodes.head, settings=SETTINGS) as joined:
        yield joined


@pytest.fixture
def api(member: Member) -> Iterator[httpx.Client]:
    gateway = Gateway(member, jsonrpc=None, http="127.0.0.1:0").start()
    try:
        with httpx.Client(base_url=f"{gateway.addresses['http']}/api/v1", timeout=30) as client:
            yield client
    finally:
        gateway.stop()


def _get(api: httpx.Client, path: str, **params: Any) -> Any:
    answer = api.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _submit(member: Member, **spec: Any) -> str:
    return str(call(member, "task_orchestrate", spec)["task_id"])


# -- each waiting reason, a code ------------------------------------------------------------------


def test_a_task_no_agent_handles_waits_none_registered(member: Member) -> None:
    task_id = _submit(member, type="nobody-handles", timeout_s=60)
    status = wait_code(lambda: call(member, "task_status", {"task_id": task_id}),
                       "none_registered", "the task")  # fmt: skip
    reason = "no agent that handles 'nobody-handles' is registered"
    assert status["wait"] == {"code": "none_registered", "reason": reason,
                              "need": ["type", "nobody-handles"]}  # fmt: skip
    assert status["wait_reason"] == reason
    listed = call(member, "task_list", {"type": "nobody-handles"})
    assert [(t["id"], t["wait"]) for t in listed["tasks"]] == [(task_id, status["wait"])]
    assert (listed["total"], listed["counts"]) == (1, {"pending": 1})
    assert call(member, "task_cancel", {"task_id": task_id})["cancelled"] is True


def test_a_task_whose_agents_are_all_paused_waits_all_paused_and_runs_on_resume(
    member: Member, api: httpx.Client
) -> None:
    assert call(member, "agent_control", {"command": "pause", "target": "sq@w1"})["ok"]
    try:
        posted = api.post("/tasks", json={"type": "square", "body": {"x": 5}, "timeout": 60})
        task_id = posted.json()["id"]
        row = wait_code(lambda: _get(api, "/tasks", type="square", state="pending")["tasks"][0],
                        "all_paused", "the square task")  # fmt: skip
        assert row["id"] == task_id
        assert row["wait"] == {
            "code": "all_paused", "need": ["type", "square"], "states": ["paused"], "count": 1,
            "down": 0, "reason": "no agent that handles 'square' is available (1 is paused)",
        }  # fmt: skip
        assert _get(api, f"/tasks/{task_id}")["wait"] == row["wait"]
    finally:
        assert call(member, "agent_control", {"command": "resume", "target": "sq@w1"})["ok"]
    assert member.cluster.result(task_id, timeout_s=20) == {"square": 25, "by": "sq@w1"}
    assert "wait" not in _get(api, f"/tasks/{task_id}")


def test_a_task_behind_busy_agents_waits_all_busy_until_one_frees(
    api: httpx.Client, tmp_path: Path
) -> None:
    gate = {"type": "wait_file", "body": {"path": str(tmp_path / "open")}, "timeout": 60}
    first = api.post("/tasks", json=gate).json()["id"]
    wait_until(lambda: _get(api, f"/tasks/{first}")["state"] == "running", 15, "not running")
    second = api.post("/tasks", json=gate).json()["id"]
    row = wait_code(lambda: _get(api, f"/tasks/{second}"), "all_busy", "the second gate task")
    assert row["wait"] == {
        "code": "all_busy", "need": ["type", "wait_file"], "count": 1, "down": 0, "limit": 1,
        "reason": "the pool of capable agents is exhausted: all 1 are busy (at most 1 tasks each)",
    }  # fmt: skip
    listed = _get(api, "/tasks", type="wait_file", state=["running", "pending"])
    assert [t["id"] for t in listed["tasks"]] == [second, first]  # newest first
    assert listed["counts"] == {"running": 1, "pending": 1}
    (tmp_path / "open").touch()
    done = lambda: _get(api, "/tasks", type="wait_file", states="succeeded")["total"] == 2  # noqa: E731
    wait_until(done, 20, "the gate tasks did not both succeed")


def test_a_failing_agent_opens_its_breaker_and_its_task_waits_breakers_open(
    member: Member, api: httpx.Client
) -> None:
    failing = member.cluster.submit("fail", {"n": 1}, agent="flaky@w1", max_retries=1)
    with pytest.raises(PoisonMessage, match=r"failed 2 times; last: AgentError"):
        failing.result(timeout_s=20)
    history = call(member, "task_status", {"task_id": failing.id})["attempt_history"]
    assert [(a["attempt"], a["agent"], a["node"], a["outcome"], a["error"]["code"])
            for a in history] == [(1, "flaky@w1", "w1", "failed", -32001),
                                  (2, "flaky@w1", "w1", "failed", -32001)]  # fmt: skip
    assert all(a["assigned_ms"] <= a["started_ms"] <= a["ended_ms"] for a in history)
    failed = _get(api, "/tasks", type="fail", state="failed")["tasks"]
    assert failed[0]["id"] == failing.id
    assert failed[0]["error"]["code"] == -32001
    assert failed[0]["error"]["message"].startswith(f"task {failing.id} (fail) failed 2 times")

    task_id = _submit(member, type="echo", agent="flaky@w1", timeout_s=60)
    status = wait_code(lambda: call(member, "task_status", {"task_id": task_id}),
                       "breakers_open", "the task pinned to flaky")  # fmt: skip
    assert status["wait"] == {
        "code": "breakers_open", "need": ["agent", "flaky@w1"], "agents": ["flaky@w1"],
        "reason": "the circuit breaker is open for every capable agent: flaky@w1",
    }  # fmt: skip
    assert call(member, "task_cancel", {"task_id": task_id})["cancelled"] is True


def test_the_alert_a_failure_fires_is_active_and_in_the_recent_transitions(
    member: Member, api: httpx.Client
) -> None:
    failing = member.cluster.submit("fail", {"n": 2}, max_retries=0)  # flaky's or sleeper's
    with pytest.raises(PoisonMessage):
        failing.result(timeout_s=20)

    def fired() -> bool:
        return any(a["rule"] == "fail-failed" for a in call(member, "alert_list")["active"])

    wait_until(fired, 15, "the rule on failed 'fail' tasks did not fire")
    alerts = _get(api, "/alerts")
    (active,) = [a for a in alerts["active"] if a["rule"] == "fail-failed"]
    assert (active["metric"], active["op"], active["threshold"]) == (
        "tasks.failed{type=fail}", ">", 0.0)  # fmt: skip
    assert active["value"] >= 1
    (fired_at,) = [a for a in alerts["recent"] if a["rule"] == "fail-failed"]
    assert set(fired_at) == {"rule", "metric", "value", "op", "threshold", "state", "time_ms"}
    assert (fired_at["state"], fired_at["metric"]) == ("firing", "tasks.failed{type=fail}")
    assert fired_at["value"] >= 1
    assert abs(fired_at["time_ms"] - time.time() * 1000) < 60_000


def test_an_attempt_that_times_out_is_timed_out_and_its_run_time_counted(member: Member) -> None:
    task = member.cluster.submit("hang", None, agent="sleeper@w1", timeout_s=0.5, max_retries=0)
    with pytest.raises(PoisonMessage, match=r"AskTimeout"):
        task.result(timeout_s=20)
    status = call(member, "task_status", {"task_id": task.id})
    (attempt,) = status["attempt_history"]
    assert (attempt["outcome"], attempt["agent"], attempt["error"]["code"]) == (
        "timed_out", "sleeper@w1", -32004)  # fmt: skip
    assert 450 <= status["run_ms"] == attempt["ended_ms"] - attempt["started_ms"]
    assert status["wait_ms"] == attempt["assigned_ms"] - status["created_ms"] >= 0


def test_a_step_waiting_for_its_pool_waits_pool_exhausted_and_shows_its_dependencies(
    member: Member, api: httpx.Client
) -> None:
    lease = call(member, "resource_allocate", {"owner": "test", "amounts": {"gpu": 1}})
    try:
        run_id = call(member, "workflow_execute",
                      {"definition": HOLD_GPU, "strategy": "resource-aware"})["run_id"]  # fmt: skip

        def train() -> dict[str, Any]:
            return dict(call(member, "workflow_status", {"run_id": run_id})["steps"]["train"])

        step = wait_code(train, "pool_exhausted", "the train step")
        assert step["state"] == "ready"
        assert step["depends_on"] == ["prep"]
        assert step["wait"] == {
            "code": "pool_exhausted", "resources": {"gpu": 1.0},
            "reason": "step 'train' waits for its resources (gpu 1): a pool has too little "
                      "free until a lease is released",
        }  # fmt: skip
        stages = _get(api, f"/pipelines/{run_id}")["stages"]
        assert (stages["prep"]["state"], stages["prep"]["depends_on"]) == ("succeeded", [])
        assert stages["train"]["wait"] == step["wait"]
        assert call(member, "workflow_cancel", {"run_id": run_id})["cancelled"] is True
        assert "wait" not in member.cluster.run_status(run_id)["steps"]["train"]  # run ended
    finally:
        call(member, "resource_release", {"lease_id": lease["lease_id"]})


def test_a_step_whose_task_waits_for_an_agent_shows_its_tasks_wait(member: Member) -> None:
    stuck = {"name": "stuck", "steps": [{"id": "a", "type": "nobody-steps", "timeout_s": 60}]}
    run_id = call(member, "workflow_execute", {"definition": stuck})["run_id"]

    def step() -> dict[str, Any]:
        return dict(call(member, "workflow_status", {"run_id": run_id})["steps"]["a"])

    shown = wait_code(step, "none_registered", "the step")
    assert shown["state"] == "running"
    assert shown["wait"] == call(member, "task_status", {"task_id": shown["task_id"]})["wait"]
    assert call(member, "workflow_cancel", {"run_id": run_id})["cancelled"] is True


# -- the task list's filters, and each agent's counts ---------------------------------------------


def test_the_task_list_filters_by_state_type_agent_and_since_newest_first(
    member: Member, api: httpx.Client
) -> None:
    since = time.time()
    ids = [member.cluster.submit("square", {"x": x}, agent="sq@w1").id for x in range(3)]
    for task_id in ids:
        member.cluster.result(task_id, timeout_s=20)
    newest = ids[::-1]

    def listed(**params: Any) -> list[str]:
        query = {"type": "square", "since": since, **params}
        return [t["id"] for t in _get(api, "/tasks", **query)["tasks"]]

    assert listed() == newest
    page = _get(api, "/tasks", type="square", since=since, limit=2)
    assert ([t["id"] for t in page["tasks"]], page["count"], page["total"], page["counts"]) == (
        newest[:2], 2, 3, {"succeeded": 3})  # fmt: skip
    assert listed(agent="sq") == listed(agent="sq@w1") == newest
    assert listed(agent="sq@w2") == listed(agent="nobody") == []
    assert listed(state=["succeeded", "failed"]) == listed(states="succeeded,running") == newest
    assert listed(states="failed,cancelled") == []
    assert listed(since=time.time() + 60) == []
    row = _get(api, "/tasks", type="square", since=since, limit=1)["tasks"][0]
    assert set(row) == {"id", "type", "state", "attempts", "node_failures", "agent", "progress",
                        "created_ms", "updated_ms", "finished_ms", "run", "step"}  # fmt: skip
    assert (row["state"], row["attempts"], row["agent"], row["progress"]) == (
        "succeeded", 1, "sq@w1", 1.0)  # fmt: skip
    answer = call(member, "task_list", {"type": "square", "since": since, "states": ["succeeded"]})
    assert [t["id"] for t in answer["tasks"]] == newest


def test_a_retrying_task_lists_its_last_attempts_error(member: Member) -> None:
    task = member.cluster.submit("fail", {"n": 3}, agent="runner@w1", max_retries=1,
                                 backoff_s=60, backoff_max_s=60)  # fmt: skip

    def row() -> dict[str, Any]:
        return next(t for t in member.cluster.tasks(type="fail") if t["id"] == task.id)

    wait_until(lambda: row()["state"] == "retrying", 15, "the task is not retrying")
    error = row()["error"]
    assert error["code"] == -32001
    assert error["message"] == "ValueError: cannot handle {'n': 3}"
    assert member.cluster.cancel(task.id) is True


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"limit": 0}, "limit", "'limit' must be greater than or equal to 1"),
        ({"limit": 10_001}, "limit", "'limit' must be less than or equal to 10000"),
        ({"state": "done"}, "states[0]", ("'states[0]' must be one of pending, assigned, "
         "running, retrying, succeeded, failed, cancelled, not 'done'")),
        ({"since": "yesterday"}, "since",
         "'since' must be a valid number, unable to parse string as a number"),
    ],
)  # fmt: skip
def test_a_bad_filter_is_refused_naming_it(
    api: httpx.Client, params: dict[str, Any], field: str, message: str
) -> None:
    answer = api.get("/tasks", params=params)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert (error["field"], error["message"]) == (field, f"GET /api/v1/tasks: {message}")


def test_each_agent_lists_the_tasks_it_succeeded_and_failed(
    member: Member, api: httpx.Client
) -> None:
    def counts() -> dict[str, tuple[int, int]]:
        agents = call(member, "agent_list")["agents"]
        return {a["address"]: (a["succeeded"], a["failed"]) for a in agents}

    before = counts()
    member.cluster.submit("square", {"x": 9}, agent="sq@w1").result(timeout_s=20)
    never: dict[str, Any] = {"path": "/nonexistent/never", "within_s": 0.01}  # fails at once
    with pytest.raises(PoisonMessage):
        member.cluster.submit("wait_file", never, agent="gate@w1", max_retries=0).result(20)
    after = counts()
    assert after["sq@w1"] == (before["sq@w1"][0] + 1, before["sq@w1"][1])
    assert after["gate@w1"] == (before["gate@w1"][0], before["gate@w1"][1] + 1)
    assert set(after) == AGENTS
    over_rest = {
        a["address"]: (a["succeeded"], a["failed"]) for a in _get(api, "/agents")["agents"]
    }
    assert over_rest == after


def test_a_task_whose_agents_node_is_down_waits_node_down(
    member: Member, history_nodes: TopologyNodes
) -> None:
    history_nodes.procs["w2"].kill()  # the module's last test: w2 stays down
    task_id = _submit(member, type="crunch", body={"x": 1}, timeout_s=60)
    status = wait_code(lambda: call(member, "task_status", {"task_id": task_id}),
                       "node_down", "the crunch task")  # fmt: skip
    assert status["wait"] == {
        "code": "node_down", "need": ["type", "crunch"], "agents": ["doomed@w2"],
        "nodes": ["w2"],
        "reason": "waiting: node down: the agents that can run it (doomed@w2) are on nodes "
                  "that are down ('w2'); it runs once one is back",
    }  # fmt: skip
    assert call(member, "task_cancel", {"task_id": task_id})["cancelled"] is True


# -- counts survive a head restart ----------------------------------------------------------------


def test_counts_and_attempts_are_the_same_after_the_head_is_killed_and_restarted(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    local = local_cluster({"w1": {"sq": "agents:Squarer", "e": "agents:Echo"}}, processes=True)
    cluster = local.cluster
    for x in range(3):
        cluster.submit("square", {"x": x}).result(timeout_s=20)
    failed = cluster.submit("fail", None, agent="e@w1", max_retries=1)
    with pytest.raises(PoisonMessage):
        failed.result(timeout_s=20)
    pending = cluster.submit("nobody-handles", None, timeout_s=300)
    wait_until(lambda: cluster.status(pending.id)["state"] == "pending", 10, "not pending")
    before = (cluster.task_counts(), cluster.task_history(), cluster.status(failed.id))
    assert before[0]["states"] == {"succeeded": 3, "failed": 1, "pending": 1}
    assert before[0]["agents"] == {"sq@w1": {"succeeded": 3}, "e@w1": {"failed": 1}}
    assert before[0]["types"] == {"square": {"succeeded": 3}, "fail": {"failed": 1},
                                  "nobody-handles": {"pending": 1}}  # fmt: skip

    local.kill("head")
    local.restart("head")

    after = (cluster.task_counts(), cluster.task_history(), cluster.status(failed.id))
    assert after[0] == before[0]
    assert [t["id"] for t in after[1]["tasks"]] == [t["id"] for t in before[1]["tasks"]]
    assert (after[1]["total"], after[1]["counts"]) == (before[1]["total"], before[1]["counts"])
    assert after[2]["attempt_history"] == before[2]["attempt_history"]
    assert [a["outcome"] for a in after[2]["attempt_history"]] == ["failed", "failed"]
    wait_until(lambda: _agent_counts(cluster).keys() >= {"sq@w1", "e@w1"}, 20, "not back")
    assert {a: c for a, c in _agent_counts(cluster).items() if a in {"sq@w1", "e@w1"}} == {
        "sq@w1": (3, 0),
        "e@w1": (0, 1),
    }  # cluster.agents() carries the journal's counts too


def _agent_counts(cluster: Cluster) -> dict[str, tuple[int, int]]:
    return {a["address"]: (a["succeeded"], a["failed"]) for a in cluster.agents()}


def test_runs_are_listed_newest_first(local_cluster: Callable[..., LocalCluster]) -> None:
    cluster = local_cluster({"w1": {"sq": "agents:Squarer"}}).cluster
    step = {"id": "a", "type": "square", "body": {"x": 2}, "capabilities": ["square"]}
    runs = [cluster.run({"name": f"one-{i}", "steps": [step]}) for i in range(3)]
    for run in runs:
        run.result(timeout_s=20)
    assert [r["id"] for r in cluster.runs()["runs"]] == [r.id for r in reversed(runs)]
