"""Agents in any language: examples/external_agent/agent.py, a program that imports no macp,
registers over a real WebSocket (uvicorn on 127.0.0.1) and is a member of a real cluster: found
by capability, routed tasks by the coordinator, paused and resumed, and killed mid-task with its
task run again by another agent."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn
from procs import QUICK_CLUSTER, QUICK_CLUSTER_FLAGS
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import connect

from macp.errors import PoisonMessage
from macp.gateway import Guard, Member, Role
from macp.gateway.auth import Auth, KeyStore
from macp.gateway.external import run_agent_session
from macp.testing import NodeProcess, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.websockets import WebSocket

pytestmark = pytest.mark.integration

AGENT = Path(__file__).parents[2] / "examples" / "external_agent" / "agent.py"


VIEWER_REFUSED = (
    "dashboard (viewer) may not register an agent: it needs the agents:register scope (an API "
    "key with the agent role)"
)


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[Guard, dict[str, str]]]:
    """A guard with API keys in a real key store: an agent's, a viewer's, and a revoked one."""
    store = KeyStore(tmp_path / "keys.db")
    _, agent = store.create("ext-service", Role.AGENT)
    _, viewer = store.create("dashboard", Role.VIEWER)
    revoked_record, revoked = store.create("old-service", Role.AGENT)
    store.revoke(revoked_record.id)
    yield Guard(Auth(keys=store)), {"agent": agent, "viewer": viewer, "revoked": revoked}
    store.close()


class Served:
    """A WebSocket endpoint for external agents, on uvicorn in a thread of its own."""

    def __init__(self, member: Member, guard: Guard) -> None:
        async def endpoint(websocket: WebSocket) -> None:
            await websocket.accept()
            first = await websocket.receive_json()
            await run_agent_session(websocket, first, member=member, guard=guard)

        app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        wait_until(lambda: self.server.started, 10, "uvicorn did not start")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class Program:
    """The example agent as a separate process; its JSON lines read as they come."""

    def __init__(self, url: str, name: str, *capabilities: str, key: str | None = None) -> None:
        args = [sys.executable, str(AGENT), "--url", url, "--name", name]
        for c in capabilities:
            args += ["--capability", c]
        if key is not None:
            args += ["--key", key]
        env = {k: v for k, v in os.environ.items() if k != "MACP_AGENT_KEY"}
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.events.append(json.loads(line))

    def seen(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e for e in self.events
                if e["event"] == event and all(e.get(k) == v for k, v in fields.items())
            ]  # fmt: skip

    def wait(self, event: str, what: str, **fields: Any) -> dict[str, Any]:
        wait_until(lambda: self.seen(event, **fields), 20, f"{what}; events: {self.events}")
        return self.seen(event, **fields)[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    journal = tmp_path_factory.mktemp("external") / "journal.db"
    process = NodeProcess(
        "head", "--control-plane", "--journal", str(journal), *QUICK_CLUSTER_FLAGS
    ).start()
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture
def member(head: NodeProcess) -> Iterator[Member]:
    assert head.address is not None
    with Member.join(head.address, settings=QUICK_CLUSTER) as joined:
        yield joined


@pytest.fixture
def programs() -> Iterator[list[Program]]:
    started: list[Program] = []
    yield started
    for program in started:
        program.stop()


def start(programs: list[Program], *args: Any, **kwargs: Any) -> Program:
    program = Program(*args, **kwargs)
    programs.append(program)
    return program


def test_the_program_registers_is_found_by_capability_and_runs_a_routed_task(
    member: Member, programs: list[Program]
) -> None:
    with Served(member, Guard()) as url:
        program = start(programs, url, "ext-echo", "echo")
        address = program.wait("registered", "the program did not register")["address"]
        assert address == f"ext-echo@{member.node.name}"

        found = member.cluster.find(capabilities=["echo"])
        assert [a["address"] for a in found] == [address]
        assert found[0]["metadata"]["language"] == "python"

        task = member.cluster.submit("echo", {"text": "hi"}, capabilities=["echo"], timeout_s=10)
        assert task.result(timeout_s=20) == {"echo": {"text": "hi"}, "agent": "ext-echo"}
        assert member.cluster.status(task.id)["agent"] == address


def test_progress_from_the_program_is_the_tasks_progress(
    member: Member, programs: list[Program], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    with Served(member, Guard()) as url:
        program = start(programs, url, "ext-count", "count")
        program.wait("registered", "the program did not register")
        task = member.cluster.submit("count", {"to": 4, "gate": str(gate)}, timeout_s=30)
        wait_until(
            lambda: member.cluster.status(task.id).get("progress") == 0.75,
            20,
            "the task's progress did not reach the program's 3 of 4",
        )
        status = member.cluster.status(task.id)
        assert status["state"] == "running"
        gate.touch()
        assert task.result(timeout_s=20) == {"count": 4, "agent": "ext-count"}


def test_a_paused_external_agent_holds_its_task_until_resumed(
    member: Member, programs: list[Program]
) -> None:
    with Served(member, Guard()) as url:
        program = start(programs, url, "ext-paused", "echo")
        address = program.wait("registered", "the program did not register")["address"]
        answers = member.cluster.control("pause", address)
        program.wait("control", "the program was not told of the pause", command="pause")
        assert member.cluster.find(capabilities=["echo"])[0]["status"] == "paused"

        task = member.cluster.submit("echo", {"n": 1}, timeout_s=30)
        wait_until(
            lambda: member.cluster.status(task.id).get("wait_reason") is not None,
            10,
            "the task did not wait for the paused agent",
        )
        assert member.cluster.status(task.id)["state"] == "pending"
        assert program.seen("task") == []

        status = member.node.control(address, "status").get(10)
        assert status["state"] == "paused"
        assert status["external"] == {"connected": True, "tasks": []}

        member.cluster.control("resume", address)
        assert task.result(timeout_s=20) == {"echo": {"n": 1}, "agent": "ext-paused"}
        assert answers  # the pause was answered by the proxy


def test_a_program_killed_mid_task_has_its_task_completed_once_by_another(
    member: Member, programs: list[Program], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    with Served(member, Guard()) as url:
        first = start(programs, url, "ext-a", "count")
        a = first.wait("registered", "ext-a did not register")["address"]
        task = member.cluster.submit("count", {"to": 2, "gate": str(gate)}, timeout_s=60)
        wait_until(
            lambda: member.cluster.status(task.id).get("progress") == 0.5,
            20,
            "ext-a did not start the task",
        )
        assert member.cluster.status(task.id)["agent"] == a

        second = start(programs, url, "ext-b", "count")
        b = second.wait("registered", "ext-b did not register")["address"]
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        second.wait("task", "the task did not go to ext-b", task_id=task.id)
        gate.touch()
        assert task.result(timeout_s=30) == {"count": 2, "agent": "ext-b"}

        status = member.cluster.status(task.id)
        assert (status["agent"], status["attempts"], status["node_failures"]) == (b, 2, 1)
        assert [e["task_id"] for e in second.seen("done")] == [task.id]
        wait_until(
            lambda: [r["address"] for r in member.cluster.find(capabilities=["count"])] == [b],
            10,
            "ext-a was not deregistered",
        )


def test_the_same_name_registers_again_once_its_program_is_gone(
    member: Member, programs: list[Program]
) -> None:
    with Served(member, Guard()) as url:
        first = start(programs, url, "ext-again", "echo")
        first.wait("registered", "the first program did not register")
        taken = start(programs, url, "ext-again", "echo")
        refused = taken.wait("refused", "a second program took the name")
        assert refused["code"] == -32002
        assert "ext-again@" in refused["message"]
        assert "is connected already" in refused["message"]
        assert taken.proc.wait(10) == 2

        first.proc.kill()
        first.proc.wait(10)
        again = start(programs, url, "ext-again", "echo")
        again.wait("registered", "the name was not free once its program was gone")
        task = member.cluster.submit("echo", {"n": 2}, timeout_s=10)
        assert task.result(timeout_s=20) == {"echo": {"n": 2}, "agent": "ext-again"}


@pytest.mark.parametrize(
    ("which", "sentence"),
    [
        ("wrong", r"^this gateway takes API keys only \(macpk_\.\.\.\), not bearer tokens$"),
        ("forged", r"^unknown API key 0+: no key of this gateway matches it$"),
        ("revoked", r"^API key \w+ was revoked at .+; ask for a new one$"),
        ("viewer", "^" + re.escape(VIEWER_REFUSED) + "$"),
        (None, r"^register needs 'key': an API key with the agent role$"),
    ],
)  # fmt: skip
def test_a_register_without_a_valid_agent_key_is_refused(
    member: Member,
    programs: list[Program],
    keyed: tuple[Guard, dict[str, str]],
    which: str | None,
    sentence: str,
) -> None:
    guard, keys = keyed
    key = {"wrong": "not-a-key", "forged": "macpk_" + "0" * 16 + "_secret"}.get(which or "")
    key = key or (keys[which] if which is not None else None)
    with Served(member, guard) as url:
        program = start(programs, url, "ext-refused", "echo", key=key)
        refused = program.wait("refused", "the register was not refused")
        assert refused["code"] == -32006
        assert re.match(sentence, refused["message"]), refused["message"]
        assert program.proc.wait(10) == 2
        assert member.cluster.find(capabilities=["echo"]) == []


def test_an_agent_key_registers_on_a_gateway_with_authentication(
    member: Member, programs: list[Program], keyed: tuple[Guard, dict[str, str]]
) -> None:
    guard, keys = keyed
    with Served(member, guard) as url:
        program = start(programs, url, "ext-keyed", "echo", key=keys["agent"])
        program.wait("registered", "the agent key was refused")
        task = member.cluster.submit("echo", {"k": 1}, timeout_s=10)
        assert task.result(timeout_s=20) == {"echo": {"k": 1}, "agent": "ext-keyed"}


async def _talk(url: str, member: Member) -> list[dict[str, Any]]:
    """A program written here, against the protocol: it answers what does not fit, then a task
    it fails."""
    answers: list[dict[str, Any]] = []
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "register", "name": "ext-raw", "capabilities": ["oops"]}))
        assert json.loads(await ws.recv())["type"] == "registered"
        for bad in (
            "not json",
            json.dumps([1, 2]),
            json.dumps({"type": "shout"}),
            json.dumps({"type": "result", "task_id": "t-none", "attempt": 1, "result": 1}),
            json.dumps({"type": "progress", "task_id": "t-none", "fraction": 2}),
        ):
            await ws.send(bad)
            answers.append(json.loads(await ws.recv()))
        submitted = asyncio.to_thread(member.cluster.submit, "oops", None, max_retries=0)
        task = await submitted
        assigned = json.loads(await ws.recv())
        assert (assigned["type"], assigned["task_type"], assigned["task_id"]) == (
            "task_assigned", "oops", task.id,
        )  # fmt: skip
        failure = {"type": "error", "task_id": task.id, "attempt": assigned["attempt"],
                   "message": "no oops today"}  # fmt: skip
        await ws.send(json.dumps(failure))
        with pytest.raises(PoisonMessage, match=r"AgentError: no oops today$"):
            await asyncio.to_thread(task.result, timeout_s=20)
    return answers


def test_what_a_program_sends_that_does_not_fit_is_answered_and_the_session_goes_on(
    member: Member,
) -> None:
    with Served(member, Guard()) as url:
        answers = asyncio.run(_talk(url, member))
    assert [(a["type"], a["code"], a.get("about"), a["message"]) for a in answers] == [
        ("error", -32602, None, "a message must be one JSON object"),
        ("error", -32602, None, "a message must be a JSON object, not list"),
        ("error", -32602, "shout", "'type' must be one of result, error, progress, not 'shout'"),
        ("error", -32602, "result",
         "no attempt 1 of task t-none is in hand (never assigned, answered already, or expired)"),
        ("error", -32602, "progress",
         "progress: 'fraction' must be less than or equal to 1"),
    ]  # fmt: skip
