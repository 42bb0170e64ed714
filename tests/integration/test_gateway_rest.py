"""REST over real HTTP: the gateway's HTTP app served by uvicorn on 127.0.0.1 (Gateway
``http=``), called with httpx, against a real cluster (a head process, a worker process with
real agents). Every route, the 6-stage pipeline created and run to completion, MCP on the same
port, and /ready while the head is down."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from gateway_cluster import cluster_procs, member
from procs import QUICK_CLUSTER, QUICK_CLUSTER_FLAGS, TESTS

from macp.errors import AskTimeout, ConfigError
from macp.gateway import Gateway, Member
from macp.testing import NodeProcess, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration
__all__ = ["cluster_procs", "member"]  # the fixtures, used by name


@pytest.fixture
def api(member: Member) -> Iterator[httpx.Client]:
    gateway = Gateway(member, jsonrpc=None, http="127.0.0.1:0").start()
    try:
        base = gateway.addresses["http"]
        with httpx.Client(base_url=f"{base}/api/v1", timeout=30) as client:
            yield client
    finally:
        gateway.stop()


def until(client: httpx.Client, path: str, done: Any, message: str, timeout_s: float = 30) -> Any:
    """GET ``path`` until ``done(answer)``; the last answer."""
    last: list[Any] = [None]

    def check() -> bool:
        answer = client.get(path)
        assert answer.status_code == 200, answer.text
        last[0] = answer.json()
        return bool(done(last[0]))

    try:
        wait_until(check, timeout_s, message)
    except AskTimeout:
        pytest.fail(f"{message}: GET {path} last answered {last[0]}")
    return last[0]


def test_a_task_posted_runs_and_reads_back_in_the_panels_shape(api: httpx.Client) -> None:
    posted = api.post("/tasks", json={
        "type": "echo", "body": {"n": 1}, "priority": "high", "timeout": 10, "retry_count": 1,
        "pipeline_id": "nightly", "stage": "ingestion",
    })  # fmt: skip
    assert posted.status_code == 201, posted.text
    task = posted.json()
    assert task["status"] == "pending"
    assert (task["pipeline_id"], task["stage"]) == ("nightly", "ingestion")
    done = until(api, f"/tasks/{task['id']}", lambda t: t["status"] == "completed", "not done")
    assert done["state"] == "succeeded"
    assert done["result"]["echo"] == {"n": 1}
    assert done["agent"] == done["result"]["me"]
    assert done["priority"] == 2
    assert (done["pipeline_id"], done["stage"]) == ("nightly", "ingestion")
    assert done["created_ms"] <= done["started_ms"] <= done["finished_ms"]
    assert done["logs"][0]["event"] == "submitted"
    assert done["error"] is None
    listed = api.get("/tasks", params={"states": "succeeded"}).json()
    assert task["id"] in {t["id"] for t in listed["tasks"]}


def test_a_failing_task_is_failed_with_its_error_and_a_cancelled_one_too(
    api: httpx.Client,
) -> None:
    failing = api.post("/tasks", json={"type": "fail", "body": 1, "retry_count": 0}).json()
    failed = until(api, f"/tasks/{failing['id']}", lambda t: t["status"] == "failed", "not failed")
    assert failed["state"] == "failed"
    assert "cannot handle 1" in str(failed["error"])
    hanging = api.post("/tasks", json={"type": "hang", "agent": "hanger@w1", "timeout": 30})
    task_id = hanging.json()["id"]
    until(api, f"/tasks/{task_id}", lambda t: t["status"] == "running", "never ran")
    cancelled = api.post(f"/tasks/{task_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json() == {"id": task_id, "cancelled": True, "status": "failed",
                                "state": "cancelled"}  # fmt: skip
    read = api.get(f"/tasks/{task_id}").json()
    assert (read["status"], read["state"]) == ("failed", "cancelled")
    assert read["error"]["code"] == -32007


def test_agents_are_listed_read_and_a_spawned_one_terminated(api: httpx.Client) -> None:
    agents = api.get("/agents").json()
    assert "echo1@w1" in {a["address"] for a in agents["agents"]}
    assert "registry" not in {a["address"].partition("@")[0] for a in agents["agents"]}
    one = api.get("/agents/echo1@w1")
    assert one.status_code == 200
    assert (one.json()["address"], one.json()["live_error"]) == ("echo1@w1", None)
    spawned = api.post("/operations/agent_spawn", json={"class": "agents:Squarer",
                                                        "name": "rest-sq"})  # fmt: skip
    assert spawned.status_code == 200, spawned.text
    address = spawned.json()["address"]
    gone = api.delete(f"/agents/{address}")
    assert gone.status_code == 200, gone.text
    assert gone.json() == {"id": address, "terminated": True}
    until(
        api,
        "/agents",
        lambda a: address not in {r["address"] for r in a["agents"] if r["status"] != "offline"},
        "still there",
    )
    not_spawned = api.delete("/agents/echo1@w1")
    assert not_spawned.status_code == 403
    assert not_spawned.json()["error"]["code"] == -32006


SIX_STAGES = [
    {"name": "ingestion", "type": "square", "body": {"x": "${input.data}"}},
    {"name": "transformation", "type": "square", "body": {"x": "${deps.ingestion.square}"}},
    {"name": "analysis", "type": "echo",
     "body": {"value": "${deps.transformation.square}", "by": "${input.parameters.who}"}},
    {"name": "validation", "type": "vote", "role": "voter",
     "body": {"x": "${deps.analysis.echo.value}"}},
    {"name": "processing", "type": "square", "body": {"x": "${deps.validation}"}},
    {"name": "output", "type": "echo",
     "body": {"processed": "${deps.processing.square}", "parameters": "${input.parameters}"}},
]  # fmt: skip


def test_the_six_stage_pipeline_is_created_and_run_to_completion(api: httpx.Client) -> None:
    created = api.post("/pipelines", json={"id": "etl", "stages": SIX_STAGES})
    assert created.status_code == 201, created.text
    names = [s["name"] for s in SIX_STAGES]
    assert created.json()["stages"] == names
    assert created.json()["dependencies"]["output"] == ["processing"]  # a line, in order
    run = api.post("/pipelines/etl/execute", json={"input": 2, "parameters": {"who": "ci"}})
    assert run.status_code == 201, run.text
    run_id = run.json()["run_id"]
    done = until(api, "/pipelines/etl", lambda p: p["finished_ms"], "did not finish")
    assert done["status"] == "succeeded", done
    assert done["run_id"] == run_id
    assert done["progress"] == 1.0
    assert list(done["stages"]) == names
    assert all(s["state"] == "succeeded" for s in done["stages"].values())
    assert done["stages"]["analysis"]["output"]["echo"] == {"value": 16, "by": "ci"}
    assert done["stages"]["validation"]["output"] == 256
    assert done["result"]["output"]["echo"] == {"processed": 65536, "parameters": {"who": "ci"}}
    step_task = done["stages"]["ingestion"]["task_id"]
    task = api.get(f"/tasks/{step_task}").json()
    assert (task["pipeline_id"], task["stage"], task["status"]) == (run_id, "ingestion",
                                                                    "completed")  # fmt: skip
    assert api.get(f"/pipelines/{run_id}").json()["status"] == "succeeded"


def test_a_pipeline_run_is_paused_resumed_and_cancelled(api: httpx.Client) -> None:
    stages = [{"name": "wait", "type": "hang", "agent": "hanger@w1", "retry_count": 0},
              {"name": "after", "type": "echo", "agent": "echo1@w1"}]  # fmt: skip
    assert api.post("/pipelines", json={"id": "held", "stages": stages}).status_code == 201
    assert api.post("/pipelines/held/execute", json={}).status_code == 201
    until(api, "/pipelines/held", lambda p: p["stages"]["wait"]["state"] == "running", "idle")
    paused = api.post("/pipelines/held/pause")
    assert paused.status_code == 200
    assert paused.json()["state"] == "paused"
    assert api.get("/pipelines/held").json()["status"] == "paused"
    assert api.post("/pipelines/held/resume").json()["state"] == "running"
    cancelled = api.post("/pipelines/held/cancel").json()
    assert (cancelled["cancelled"], cancelled["state"]) == (True, "cancelled")
    assert api.get("/pipelines/held").json()["stages"]["after"]["state"] != "succeeded"


def test_metrics_are_the_monitors(api: httpx.Client) -> None:
    answer = api.get("/metrics", params={"prefix": "tasks."})
    assert answer.status_code == 200
    assert answer.json()["metrics"]
    assert all(k.startswith("tasks.") for k in answer.json()["metrics"])


def test_mcp_is_served_on_the_same_port(api: httpx.Client) -> None:
    base = str(api.base_url).removesuffix("/api/v1/")
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}}}  # fmt: skip
    answer = httpx.post(f"{base}/mcp", json=initialize, timeout=10,
                        headers={"Accept": "application/json, text/event-stream"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert '"serverInfo"' in answer.text


def test_ready_is_false_while_the_head_is_down_and_health_stays_true(tmp_path: Any) -> None:
    head = NodeProcess("head", "--control-plane", "--journal", str(tmp_path / "j.db"),
                       *QUICK_CLUSTER_FLAGS, pythonpath=[TESTS]).start()  # fmt: skip
    try:
        assert head.address is not None
        gateway = Gateway(Member.join(head.address, settings=QUICK_CLUSTER), jsonrpc=None,
                          http="127.0.0.1:0").start()  # fmt: skip
        try:
            base = gateway.addresses["http"]
            ready = httpx.get(f"{base}/ready", timeout=10)
            assert ready.status_code == 200, ready.text
            assert ready.json()["ready"] is True
            head.kill()
            started = time.monotonic()
            down = httpx.get(f"{base}/ready", timeout=10)
            assert time.monotonic() - started < 5  # a short timeout, not the ask's
            assert down.status_code == 503
            assert down.json()["ready"] is False
            assert down.json()["reason"]
            assert httpx.get(f"{base}/health", timeout=10).json() == {"status": "ok"}
            assert httpx.get(f"{base}/api/v1/health", timeout=10).status_code == 200
        finally:
            gateway.stop()
    finally:
        head.kill()


def test_an_http_port_in_use_is_one_sentence_naming_the_flag(member: Member) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gateway = Gateway(member, jsonrpc=None, http=f"127.0.0.1:{port}")
        with pytest.raises(ConfigError, match=rf"^cannot serve HTTP on 127\.0\.0\.1:{port}: .+; "
                           r"choose another --http HOST:PORT$"):  # fmt: skip
            gateway.start()
    with pytest.raises(ConfigError, match=r"^--http 'nowhere' must be HOST:PORT"):
        Gateway(member, jsonrpc=None, http="nowhere")
