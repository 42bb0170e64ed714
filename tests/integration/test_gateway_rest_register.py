"""``POST /api/v1/agents/register`` against ``macp gateway --http`` as a process: an
administrator makes an external agent's identity (a key bound to its name), the example agent
program connects with what the answer says and runs a task, and the key registers no other
name."""

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

from macp.gateway.auth import KeyStore
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration

AGENT = ROOT / "examples" / "external_agent" / "agent.py"


def start_gateway(head: str, env: dict[str, str], *flags: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "macp", "gateway", "--connect", head, "--name", "gw", "--http",
         "127.0.0.1:0", *flags, *QUICK_CLUSTER_FLAGS], cwd=ROOT, env=env, text=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    return proc, str(ready_line(proc)["http"])


@pytest.fixture
def head(procs: Callable[..., NodeProcess]) -> str:
    node = procs("head", "--control-plane", *QUICK_CLUSTER_FLAGS)
    assert node.address is not None
    return node.address


@pytest.fixture
def keyed(head: str, env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A gateway with API keys (an admin's, an operator's): its base URL and the keys."""
    path = tmp_path / "keys.sqlite3"
    with KeyStore(path) as store:
        keys = {role: store.create(f"the-{role}", role)[1] for role in ("admin", "operator")}
    proc, base = start_gateway(head, env, "--keys-db", str(path))
    try:
        yield base, keys
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_an_admin_registers_an_agent_whose_program_connects_with_the_answer(
    keyed: tuple[str, dict[str, str]], env: dict[str, str]
) -> None:
    base, keys = keyed
    with httpx.Client(base_url=base, timeout=10) as http:
        refused = http.post("/api/v1/agents/register", json={"name": "w7"},
                            headers={"Authorization": f"Bearer {keys['operator']}"})  # fmt: skip
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["message"] == (
            "the-operator (operator) may not call rest_agent_register: it needs the "
            "agents:admin scope"
        )
        admin = {"Authorization": f"Bearer {keys['admin']}"}
        answer = http.post("/api/v1/agents/register", headers=admin,
                           json={"name": "w7", "capabilities": ["echo"]})  # fmt: skip
        assert answer.status_code == 201, answer.text
        made = answer.json()
        key = made["key"]
        assert key.startswith("macpk_")
        assert made == {
            "name": "w7", "address": "w7@gw", "key": key, "key_id": key[6:22],
            "principal": "w7", "websocket": base.replace("http://", "ws://") + "/ws",
            "register": {"type": "register", "name": "w7", "capabilities": ["echo"],
                         "key": key},
        }  # fmt: skip
        # the key registers w7 only
        refusal = asyncio.run(_register(made["websocket"], {**made["register"], "name": "w8"}))
        assert refusal == (4401, {
            "type": "error", "code": -32006, "about": "register",
            "message": "the key of w7 is bound to the agent 'w7': it may not register 'w8'; "
                       "register as 'w7' or ask for a key for 'w8'",
            "data": {"error": "Unauthorized"},
        })  # fmt: skip
        program = subprocess.Popen(
            [sys.executable, str(AGENT), "--url", made["websocket"], "--name", "w7",
             "--capability", "echo", "--key", key], env=env, text=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert program.stdout is not None
            registered = json.loads(program.stdout.readline())
            assert (registered["event"], registered["address"]) == ("registered", "w7@gw")
            posted = http.post("/api/v1/tasks", headers=admin,
                               json={"type": "echo", "body": [1, 2], "agent": "w7@gw"})  # fmt: skip
            assert posted.status_code == 201, posted.text
            task: list[dict[str, Any]] = []

            def completed() -> bool:
                task[:] = [http.get(f"/api/v1/tasks/{posted.json()['id']}", headers=admin).json()]
                return bool(task[0]["status"] == "completed")

            wait_until(completed, 20, f"the registered agent did not run the task: {task}")
            assert task[0]["result"] == {"echo": [1, 2], "agent": "w7"}
        finally:
            program.kill()
            program.communicate(timeout=10)


async def _register(url: str, message: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps(message))
        answer = json.loads(await asyncio.wait_for(socket.recv(), 10))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 10)
        return socket.close_code, answer


def test_without_authentication_the_register_message_needs_no_key(
    head: str, env: dict[str, str]
) -> None:
    proc, base = start_gateway(head, env)
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            answer = http.post("/api/v1/agents/register", json={
                "name": "free", "capabilities": ["echo"], "handles": ["echo"], "role": "helper",
                "metadata": {"language": "any"},
            })  # fmt: skip
            assert answer.status_code == 201, answer.text
            made = answer.json()
            assert (made["key"], made["key_id"], made["principal"]) == (None, None, None)
            assert made["register"] == {
                "type": "register", "name": "free", "capabilities": ["echo"],
                "handles": ["echo"], "role": "helper", "metadata": {"language": "any"},
            }  # fmt: skip
            registered = asyncio.run(_first_answer(made["websocket"], made["register"]))
            assert (registered["type"], registered["address"]) == ("registered", "free@gw")
            bad = http.post("/api/v1/agents/register", json={"name": "no spaces"})
            assert bad.status_code == 422, bad.text
            assert bad.json()["error"]["field"] == "name"
            assert bad.json()["error"]["message"].startswith(
                "POST /api/v1/agents/register: 'name' agent name 'no spaces' is invalid"
            )
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


async def _first_answer(url: str, message: dict[str, Any]) -> dict[str, Any]:
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps(message))
        answer: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), 10))
        return answer
