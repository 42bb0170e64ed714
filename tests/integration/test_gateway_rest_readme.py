"""The README's curl session, run as written (curl, on a free port instead of 8080) against
the peers example started from its topology file, through a ``macp gateway --http`` process."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
from test_gateway_cli import readme_section, ready_line
from topology_procs import ROOT, TopologyNodes, free_ports

from macp.testing import wait_until

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


def curl(args: list[str], port: int, task_id: str = "") -> tuple[int, Any]:
    """``curl`` as the README runs it (with ``-w`` to learn the status); status and JSON."""
    assert args[:2] == ["curl", "-s"]
    line = [a.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace("TASK_ID", task_id)
            for a in args]  # fmt: skip
    done = subprocess.run([*line, "-w", "\n%{http_code}"], capture_output=True, text=True,
                          timeout=30, check=True)  # fmt: skip
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def test_the_readme_curl_session_runs_as_written(env: dict[str, str]) -> None:
    section = readme_section("REST over HTTP: macp for web back ends")
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    serve, ready, submit, read = [shlex.split(line, comments=True) for line in
                                  block[1].splitlines()]  # fmt: skip
    assert serve == ["macp", "gateway", "--connect", "tcp://127.0.0.1:PORT", "--http",
                     "127.0.0.1:8080", "&"]  # fmt: skip
    (port,) = free_ports(1)
    agents = {"analyst@alpha", "factorer-1@beta", "factorer-2@beta", "statistician@beta"}
    nodes = TopologyNodes("examples/peers/topology.yaml", ["alpha", "beta"], env)
    gateway: subprocess.Popen[str] | None = None
    try:
        nodes.start(agents)
        gateway = subprocess.Popen(
            [sys.executable, "-m", "macp", "gateway", "--connect", nodes.head,
             "--http", f"127.0.0.1:{port}", "--heartbeat-s", "0.5"], cwd=ROOT, env=env,
            text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        announced = ready_line(gateway)
        assert announced["http"] == f"http://127.0.0.1:{port}"
        assert curl(ready, port) == (200, {"ready": True, "head": "alpha"})
        status, task = curl(submit, port)
        assert (status, task["status"]) == (201, "pending")
        last: list[Any] = []

        def completed() -> bool:
            last[:] = [curl(read, port, task["id"])]
            return bool(last[0][1]["status"] == "completed")

        wait_until(completed, 30, "the README's task did not complete")
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.communicate(timeout=20)
        nodes.stop()
    status, answer = last[0]
    assert status == 200
    assert answer["result"] == [2, 2, 2, 3, 3, 5]
    assert answer["priority"] == 2


def test_the_readme_websocket_session_runs_as_written(env: dict[str, str], tmp_path: Path) -> None:
    """The README's ``follow.py`` (on a free port instead of 8080), run while its curl line
    posts a task: it prints the task's changes as they come, up to its success, and ends."""
    section = readme_section("WebSocket events: following the runtime")
    python = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert python is not None
    assert block is not None
    docs = (ROOT / "docs" / "gateway.md").read_text(encoding="utf-8")
    assert f"```python\n{python[1]}```\n\n```sh\n{block[1]}```" in docs  # the same session
    follow_line, submit = [shlex.split(line, comments=True) for line in block[1].splitlines()]
    assert follow_line == ["python", "follow.py", "&"]
    (port,) = free_ports(1)
    follow_py = tmp_path / "follow.py"
    follow_py.write_text(python[1].replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
    agents = {"analyst@alpha", "factorer-1@beta", "factorer-2@beta", "statistician@beta"}
    nodes = TopologyNodes("examples/peers/topology.yaml", ["alpha", "beta"], env)
    gateway: subprocess.Popen[str] | None = None
    follow: subprocess.Popen[str] | None = None
    try:
        nodes.start(agents)
        gateway = subprocess.Popen(
            [sys.executable, "-m", "macp", "gateway", "--connect", nodes.head,
             "--http", f"127.0.0.1:{port}", "--heartbeat-s", "0.5"], cwd=ROOT, env=env,
            text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        ready_line(gateway)
        follow = subprocess.Popen([sys.executable, str(follow_py)], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        assert follow.stdout is not None
        assert follow.stdout.readline() == "authenticated\n"
        status, task = curl(submit, port)
        assert (status, task["status"]) == (201, "pending")
        out, err = follow.communicate(timeout=30)
    finally:
        for proc in (follow, gateway):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.communicate(timeout=20)
        nodes.stop()
    assert follow.returncode == 0, err
    lines = [line.split() for line in out.splitlines()]
    assert all(kind == "task_update" and task_id == task["id"] for kind, task_id, _ in lines), out
    states = [state for _, _, state in lines]
    assert states[0] == "pending", out
    assert states[-1] == "succeeded", out
    assert "running" in states, out
