"""The issue's six-stage pipeline, created and executed over REST against ``macp gateway
--http`` as a process, with its progress seen on the WebSocket: worker agents in a node
process run ingestion -> transformation -> analysis -> validation -> processing -> output
(tests/pipeline_agents.py) on a list of numbers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import websockets
from pipeline_agents import STAGES
from procs import QUICK_CLUSTER_FLAGS
from test_gateway_cli import ready_line
from topology_procs import ROOT

from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration

WORKERS = ("stage-1", "stage-2")
DATA = ["4", "8", " ", "15", "16", "23", "42"]
EXPECTED = {
    "report": "6 values, sum 324, mean 54",
    "stats": {"count": 6, "sum": 324, "min": 12, "max": 126, "mean": 54.0},
    "normalised": [0.0, 0.1053, 0.2895, 0.3158, 0.5, 1.0],
}


@pytest.fixture
def gateway(procs: Callable[..., NodeProcess], env: dict[str, str]) -> Iterator[str]:
    """A head, a worker process with two agents that run every stage, and ``macp gateway
    --http`` joined to them: the gateway's base URL."""
    head = procs("head", "--control-plane", *QUICK_CLUSTER_FLAGS)
    assert head.address is not None
    agents = [a for name in WORKERS for a in ("--agent", f"{name}=pipeline_agents:Stages")]
    procs("worker", "--join", head.address, *agents, *QUICK_CLUSTER_FLAGS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "macp", "gateway", "--connect", head.address, "--http",
         "127.0.0.1:0", *QUICK_CLUSTER_FLAGS], cwd=ROOT, env=env, text=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield str(ready_line(proc)["http"])
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_the_six_stage_pipeline_runs_over_rest_with_its_progress_on_the_websocket(
    gateway: str,
) -> None:
    with httpx.Client(base_url=gateway, timeout=10) as http:

        def workers_up() -> bool:
            agents = http.get("/api/v1/agents").json()["agents"]
            return {a["name"] for a in agents if a["status"] == "available"} >= set(WORKERS)

        wait_until(workers_up, 20, "the stage workers never registered")
        created = http.post("/api/v1/pipelines", json={
            "id": "numbers", "description": "the issue's data pipeline",
            "stages": [{"name": stage, "type": stage} for stage in STAGES],
        })  # fmt: skip
        assert created.status_code == 201, created.text
        assert created.json()["dependencies"] == {
            stage: list(STAGES[i - 1 : i]) for i, stage in enumerate(STAGES)
        }
        ws_url = gateway.replace("http://", "ws://") + "/ws"
        run_id, events = asyncio.run(_execute_and_follow(ws_url, http))
        answer = http.get("/api/v1/pipelines/numbers")
    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert (run["id"], run["run_id"], run["status"], run["progress"]) == (
        "numbers", run_id, "succeeded", 1.0
    )  # fmt: skip
    assert list(run["stages"]) == list(STAGES)
    assert all(s["state"] == "succeeded" for s in run["stages"].values()), run["stages"]
    assert run["stages"]["output"]["output"] == EXPECTED
    assert run["stages"]["ingestion"]["output"]["dropped"] == 1
    assert run["result"] == {"output": EXPECTED}  # the sink stage's output, by its name

    steps = [e for e in events if "step" in e]
    succeeded = [e["step"] for e in steps if e["state"] == "succeeded"]
    assert succeeded == list(STAGES), steps
    first_seen = list(dict.fromkeys(e["step"] for e in steps))
    assert first_seen == list(STAGES), steps
    for stage in STAGES:  # each stage started only once the stage before it had succeeded
        started = next(i for i, e in enumerate(events) if e.get("step") == stage)
        before = STAGES[STAGES.index(stage) - 1] if stage != STAGES[0] else None
        if before is not None:
            done = next(i for i, e in enumerate(events)
                        if e.get("step") == before and e["state"] == "succeeded")  # fmt: skip
            assert done < started, events
    summaries = [e for e in events if "progress" in e]
    progress = [e["progress"] for e in summaries]
    assert progress == sorted(progress), summaries
    assert summaries[-1]["progress"] == 1.0
    assert summaries[-1]["state"] == "succeeded"
    assert summaries[-1]["steps_done"] == summaries[-1]["steps_total"] == len(STAGES)
    assert {e["workflow"] for e in summaries} == {"numbers"}


async def _execute_and_follow(ws_url: str, http: httpx.Client) -> tuple[str, list[dict[str, Any]]]:
    """Execute the pipeline with a WebSocket client subscribed to its progress; the run's id
    and its ``pipeline_progress`` events, until the run's summary says it is done and its
    last stage's own event has come (the two may come in either order)."""
    async with websockets.connect(ws_url) as socket:
        await socket.send(json.dumps({"type": "auth", "token": "",
                                      "topics": ["pipeline_progress"]}))  # fmt: skip
        hello = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert hello["type"] == "authenticated", hello
        executed = await asyncio.to_thread(
            http.post, "/api/v1/pipelines/numbers/execute",
            json={"input": DATA, "parameters": {"factor": 3}},
        )  # fmt: skip
        assert executed.status_code == 201, executed.text
        run_id: str = executed.json()["run_id"]
        events: list[dict[str, Any]] = []

        def finished() -> bool:
            done = any(e.get("progress") == 1.0 and e["state"] == "succeeded" for e in events)
            last = any(e.get("step") == STAGES[-1] and e["state"] == "succeeded" for e in events)
            return done and last

        while not finished():
            event = json.loads(await asyncio.wait_for(socket.recv(), 30))
            assert event["type"] == "pipeline_progress", event
            assert event["timestamp"], event
            if event["data"]["run_id"] == run_id:
                events.append(event["data"])
                assert event["data"]["state"] != "failed", events
        return run_id, events
