"""``macp gateway --http`` end to end, as a process: the WebSocket at /ws serves events from
the runtime, an external program registers there as an agent, and a task posted over REST
runs on it, its changes seen on the WebSocket."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import websockets
from procs import QUICK_CLUSTER_FLAGS
from test_gateway_cli import ready_line
from topology_procs import ROOT

from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration

AGENT = ROOT / "examples" / "external_agent" / "agent.py"


@pytest.fixture
def gateway(procs: Callable[..., NodeProcess], env: dict[str, str]) -> Iterator[str]:
    """A head process and ``macp gateway --http`` joined to it: the gateway's base URL."""
    head = procs("head", "--control-plane", *QUICK_CLUSTER_FLAGS)
    assert head.address is not None
    proc = subprocess.Popen(
        [sys.executable, "-m", "macp", "gateway", "--connect", head.address, "--http",
         "127.0.0.1:0", "--log-json", *QUICK_CLUSTER_FLAGS], cwd=ROOT, env=env, text=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield str(ready_line(proc)["http"])
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_an_external_agent_runs_a_task_posted_over_rest_and_its_changes_reach_the_websocket(
    gateway: str, env: dict[str, str]
) -> None:
    ws_url = gateway.replace("http://", "ws://") + "/ws"
    agent = subprocess.Popen(
        [sys.executable, str(AGENT), "--url", ws_url, "--name", "outsider", "--capability",
         "echo"], env=env, text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=gateway, timeout=10) as http:

            def registered() -> bool:
                agents = http.get("/api/v1/agents").json()["agents"]
                return any(a["name"] == "outsider" for a in agents)

            wait_until(registered, 20, "the external agent never registered")
            events = asyncio.run(_submit_and_follow(ws_url, http))
        assert events[0]["type"] == "authenticated"
        states = [e["data"]["state"] for e in events[1:]]
        assert states[-1] == "succeeded", events
        assert "running" in states or "assigned" in states
        assert all(e["timestamp"] for e in events[1:])
    finally:
        agent.kill()
        agent.communicate(timeout=10)


async def _submit_and_follow(ws_url: str, http: httpx.Client) -> list[dict[str, Any]]:
    async with websockets.connect(ws_url) as socket:
        await socket.send(json.dumps({"type": "auth", "token": "", "topics": ["task_update"]}))
        events = [json.loads(await asyncio.wait_for(socket.recv(), 10))]
        posted = await asyncio.to_thread(
            http.post, "/api/v1/tasks", json={"type": "echo", "body": {"hello": "world"}}
        )
        assert posted.status_code == 201, posted.text
        task_id = posted.json()["id"]
        while not events[1:] or events[-1]["data"]["state"] not in {"succeeded", "failed"}:
            event = json.loads(await asyncio.wait_for(socket.recv(), 20))
            if event["type"] == "task_update" and event["data"]["task_id"] == task_id:
                events.append(event)
        answer = await asyncio.to_thread(http.get, f"/api/v1/tasks/{task_id}")
        assert answer.json()["result"] == {"echo": {"hello": "world"}, "agent": "outsider"}
        return events
