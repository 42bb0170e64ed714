"""A worker node killed with SIGKILL while tasks submitted through the gateway's JSON-RPC run:
every task still completes exactly once, and the gateway shows it (each result, each status)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from jsonrpc_client import LineClient
from procs import QUICK_CLUSTER

from macp.gateway import Gateway, JsonRpcLimits, Member
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp.testing import NodeProcess

pytestmark = pytest.mark.fault

FAST = ("--heartbeat-s", "0.1", "--acceptable-pause-s", "0.2")
N = 100_000  # about 10 ms of work per task: enough for tasks to be in flight at the kill
CHECK = sum(i * i for i in range(N)) % 997
TASKS = 300


def batch(method: str, params: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"jsonrpc": "2.0", "id": i, "method": method, "params": p} for i, p in enumerate(params)
    ]


def results_of(client: LineClient, requests: list[dict[str, Any]]) -> list[Any]:
    """The results of a batch array, in the order of its requests (each must succeed)."""
    client.send(requests)
    answers = sorted(client.receive(), key=lambda a: a["id"])
    assert [a["id"] for a in answers] == list(range(len(requests)))
    failed = [a for a in answers if "error" in a]
    assert failed == [], failed[:3]
    return [a["result"] for a in answers]


def test_tasks_submitted_through_the_gateway_complete_once_when_a_worker_is_killed(
    procs: Callable[..., NodeProcess], tmp_path: Path
) -> None:
    head = procs("head", *FAST, "--control-plane", "--journal", str(tmp_path / "j.sqlite3"))
    assert head.address is not None
    crunchers = ("--agent", "c1=agents:Cruncher", "--agent", "c2=agents:Cruncher")
    procs("w0", *FAST, "--join", head.address, *crunchers)
    w1 = procs("w1", *FAST, "--join", head.address, *crunchers)
    member = Member.join(head.address, name="gw", settings=QUICK_CLUSTER)
    cluster = member.cluster
    cluster.wait_for_agents([f"c{c}@w{w}" for c in (1, 2) for w in (0, 1)], timeout_s=15)
    limits = JsonRpcLimits(requests_per_s=10_000)  # whole batches at once
    with (
        Gateway(member, jsonrpc="127.0.0.1:0", limits=limits) as gateway,
        LineClient(gateway.addresses["jsonrpc"], timeout_s=120) as client,
    ):
        client.result("agent_control", {"command": "pause", "target": "all"})  # a deep queue
        submits = [{"type": "crunch", "body": {"x": x, "n": N}, "max_retries": 1}
                   for x in range(TASKS)]  # fmt: skip
        ids = [r["task_id"] for r in results_of(client, batch("task_orchestrate", submits))]
        assert len(set(ids)) == TASKS
        client.result("agent_control", {"command": "resume", "target": "all"})

        def some_done() -> bool:
            listed = client.result("task_list", {"states": ["succeeded"]})
            return bool(listed["count"] >= TASKS // 4)

        wait_until(some_done, 60, "a quarter of the tasks did not finish", poll_s=0.05)
        w1.kill()
        waits = [{"task_id": t, "wait_s": 90} for t in ids]
        results = results_of(client, batch("task_result", waits))
        statuses = results_of(client, batch("task_status", [{"task_id": t} for t in ids]))
    for x, (task_id, result) in enumerate(zip(ids, results, strict=True)):
        assert result["task_id"] == task_id
        assert (result["done"], result["state"]) == (True, "succeeded")
        assert (result["result"]["x"], result["result"]["y"]) == (x, 2 * x)
        assert result["result"]["check"] == CHECK
    for status in statuses:
        assert status["state"] == "succeeded"
        succeeded = [e for e in status["log"] if e["event"] == "succeeded"]
        assert len(succeeded) == 1, status["log"]  # completed exactly once
    lost = [s for s in statuses if s["node_failures"]]
    assert lost, "the killed node had no task in flight: the test proved nothing"
    assert {s["agent"].rpartition("@")[2] for s in lost} == {"w0"}
