"""The operations table served over MCP, against a real cluster: a head and a worker as node
processes with real agents, the gateway's member node in this process (or in a ``macp mcp``
process). Tools are the table's operations with their schemas; every one is called; a failed
call is a tool result with isError and the macp code, and the session goes on after it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from gateway_calls import CALLS, POOL, SPAWNABLE, SQUARE, Known, McpSession, structured
from mcp import Client, StdioServerParameters
from procs import QUICK_CLUSTER, QUICK_CLUSTER_FLAGS, TESTS

from macp import Run
from macp.gateway import OPERATIONS, Member
from macp.gateway.mcp import mcp_server, serve_http
from macp.testing import NodeProcess, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mcp_types import CallToolResult

pytestmark = pytest.mark.integration


@dataclass
class Cluster:
    head: NodeProcess
    worker: NodeProcess

    @property
    def address(self) -> str:
        assert self.worker.address is not None
        return self.worker.address


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head (control plane) and a worker running a Squarer, two Echoes (one to hang a
    workflow's step on), an Llm (it reports model figures) and a Hub, allowing SPAWNABLE to be
    spawned, for the module."""
    head = NodeProcess("head", "--control-plane", *QUICK_CLUSTER_FLAGS, pythonpath=[TESTS])
    worker = None
    try:
        head.start()
        assert head.address is not None
        worker = NodeProcess(
            "w1",
            "--join",
            head.address,
            "--agent",
            "sq=agents:Squarer",
            "--agent",
            "echo=agents:Echo",
            "--agent",
            "hanger=agents:Echo",
            "--agent",
            "llm=model_agents:Llm",
            "--agent",
            "hub=macp:Hub",
            *(a for cls in SPAWNABLE for a in ("--spawnable", cls)),
            *QUICK_CLUSTER_FLAGS,
            pythonpath=[TESTS],
        ).start()
        yield Cluster(head, worker)
    finally:
        if worker is not None:
            worker.kill()
        head.kill()


@pytest.fixture
def member(cluster: Cluster) -> Iterator[Member]:
    """The gateway's member node, joined through the worker."""
    with Member.join(cluster.address, name="gw", settings=QUICK_CLUSTER) as joined:
        joined.cluster.wait_for_agents(["sq@w1", "echo@w1"], timeout_s=10)
        yield joined


def error(result: CallToolResult) -> dict[str, Any]:
    """A failed tool result's error: ``{"code", "message", "data"}``, named in its text."""
    assert result.is_error, result.structured_content
    err = dict(result.structured_content or {})
    text = result.content[0]
    assert text.type == "text"
    assert text.text == f"macp error {err['code']} ({err['data']['error']}): {err['message']}"
    return err


def test_the_tools_are_the_tables_operations_with_their_schemas(member: Member) -> None:
    async def listed() -> list[Any]:
        async with Client(mcp_server(member.runtime)) as client:
            return list((await client.list_tools()).tools)

    tools = asyncio.run(listed())
    assert [t.name for t in tools] == OPERATIONS.names()
    for tool in tools:
        op = OPERATIONS[tool.name]
        assert tool.description == op.summary
        assert tool.input_schema == op.input_schema()


def test_every_tool_of_the_table_is_called_and_answers(member: Member) -> None:
    missing = set(OPERATIONS.names()) - set(CALLS)
    assert not missing, f"operations with no arguments in CALLS: {sorted(missing)}"
    member.cluster.resources("define_pool", **POOL)
    known = Known()
    with McpSession.of(mcp_server(member.runtime)) as session:
        known.prepare(session)
        for name, call in CALLS.items():
            known.seen[name] = call.check(session, name, known)

    assert set(known.seen) == set(OPERATIONS.names())
    assert member.cluster.status(known.waiting_task)["state"] == "cancelled"
    assert Run(member.cluster, known.run_id).status()["state"] == "cancelled"
    assert member.cluster.memory("get", namespace=known.swarm, key="k1")["found"] is False
    assert member.cluster.resources("usage")["gpu"]["free"] == 2
    spawned = {a["address"] for a in member.cluster.find(group=known.swarm)}
    assert spawned == {*known.seen["swarm_init"]["agents"], known.spawned}


def test_a_failed_call_is_an_error_result_and_the_session_goes_on(member: Member) -> None:
    async def failing() -> list[dict[str, Any]]:
        async with Client(mcp_server(member.runtime)) as client:
            errors = []
            calls: list[tuple[str, dict[str, Any]]] = [
                ("task_orchestrate", {"type": "square", "priority": 9}),  # bad params
                ("task_orchestrat", {"type": "square"}),  # unknown tool
                ("task_status", {"task_id": "nope"}),  # the coordinator refuses it
            ]
            for name, arguments in calls:
                errors.append(error(await client.call_tool(name, arguments)))
                assert structured(await client.call_tool("ping", {}))["status"] == "ok"
            failed = structured(
                await client.call_tool(
                    "task_orchestrate", {"type": "fail", "body": 1, "max_retries": 0}
                )
            )
            errors.append(
                error(
                    await client.call_tool(
                        "task_result", {"task_id": failed["task_id"], "wait_s": 10}
                    )
                )
            )
            assert structured(await client.call_tool("ping", {}))["status"] == "ok"
            return errors

    bad, unknown, refused, failed = asyncio.run(failing())
    assert bad["code"] == -32602
    assert bad["data"] == {"error": "InvalidParams"}
    assert bad["message"].startswith("task_orchestrate: 'priority' must be less than")
    assert unknown["code"] == -32601
    assert unknown["data"] == {"error": "UnknownMessageType"}
    assert unknown["message"].startswith("no operation named 'task_orchestrat'")
    assert (refused["code"], refused["data"]["error"]) == (-32602, "NotFound")
    assert "no task 'nope'" in refused["message"]
    assert failed["code"] == -32001, failed
    assert "cannot handle 1" in failed["message"], failed


def _mcp_args(cluster: Cluster, *extra: str) -> list[str]:
    return [
        "-m",
        "macp",
        "mcp",
        "--connect",
        cluster.address,
        *QUICK_CLUSTER_FLAGS,
        "--log-json",
        *extra,
    ]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }


def test_macp_mcp_serves_the_tools_on_stdio(cluster: Cluster) -> None:
    server = StdioServerParameters(command=sys.executable, args=_mcp_args(cluster), env=_env())

    async def session() -> tuple[list[str], dict[str, Any], dict[str, Any]]:
        async with Client(server) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            pong = structured(await client.call_tool("ping", {}))
            task = structured(await client.call_tool("task_orchestrate", SQUARE))
            result = structured(
                await client.call_tool("task_result", {"task_id": task["task_id"], "wait_s": 10})
            )
            return names, pong, result

    names, pong, result = asyncio.run(session())
    assert names == OPERATIONS.names()
    assert pong["status"] == "ok"
    assert result["result"] == {"square": 49, "by": "sq@w1"}


class McpProcess:
    """``macp mcp --http 127.0.0.1:0`` in the background; its URL once it says it is ready."""

    def __init__(self, cluster: Cluster) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *_mcp_args(cluster, "--http", "127.0.0.1:0")],
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        with stream:
            into.extend(stream)

    def url(self) -> str:
        wait_until(
            lambda: bool(self.out) or self.proc.poll() is not None,
            30,
            "macp mcp --http did not say it is ready",
        )
        assert self.out, "".join(self.err)
        ready = json.loads(self.out[0])
        assert ready["event"] == "mcp.ready", ready
        return str(ready["url"])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        for reader in self.readers:
            reader.join(10)
        return code


def test_macp_mcp_serves_streamable_http_at_slash_mcp(cluster: Cluster) -> None:
    server = McpProcess(cluster)
    try:
        url = server.url()
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/mcp")

        async def session() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
            async with Client(url) as client:
                pong = structured(await client.call_tool("ping", {}))
                bad = error(await client.call_tool("task_status", {}))
                task = structured(await client.call_tool("task_orchestrate", SQUARE))
                result = structured(
                    await client.call_tool(
                        "task_result", {"task_id": task["task_id"], "wait_s": 10}
                    )
                )
                return pong, bad, result

        pong, bad, result = asyncio.run(session())
    finally:
        code = server.stop()
    assert pong["status"] == "ok"
    assert (bad["code"], bad["message"]) == (-32602, "task_status: 'task_id' is required")
    assert result["result"] == {"square": 49, "by": "sq@w1"}
    assert code == 0, "".join(server.err)
    assert [line for line in server.err if not line.startswith("{")] == []


def test_serve_http_stops_when_told_and_answers_until_then(member: Member) -> None:
    async def serve_and_call() -> dict[str, Any]:
        stop = asyncio.Event()
        url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        serving = asyncio.ensure_future(
            serve_http(member.runtime, "127.0.0.1", 0, ready=url.set_result, stop=stop)
        )
        first: set[asyncio.Future[Any]] = {url, serving}
        await asyncio.wait(first, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        assert url.done(), serving
        async with Client(url.result()) as client:
            pong = structured(await client.call_tool("ping", {}))
        stop.set()
        await asyncio.wait_for(serving, 10)
        return pong

    assert asyncio.run(serve_and_call())["status"] == "ok"


def _raw_stdio(cluster: Cluster) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *_mcp_args(cluster)], env=_env(), text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "raw", "version": "0"}},
}  # fmt: skip
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def test_macp_mcp_writes_nothing_but_mcp_on_stdout_and_ends_with_its_input(
    cluster: Cluster,
) -> None:
    proc = _raw_stdio(cluster)
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "ping", "arguments": {}}}  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write("".join(json.dumps(m) + "\n" for m in (INITIALIZE, INITIALIZED, call)))
    proc.stdin.flush()
    answers = [json.loads(proc.stdout.readline()) for _ in range(2)]  # JSON-RPC or it fails
    assert [(a["jsonrpc"], a["id"]) for a in answers] == [("2.0", 1), ("2.0", 2)]
    out, err = proc.communicate(timeout=30)  # closes its input: the client is gone
    assert (proc.returncode, out) == (0, ""), err
    assert answers[0]["result"]["serverInfo"]["name"] == "macp"
    assert answers[1]["result"]["structuredContent"]["status"] == "ok"
    assert [line for line in err.splitlines() if not line.startswith("{")] == []


def test_macp_mcp_on_stdio_stops_on_sigterm(cluster: Cluster) -> None:
    proc = _raw_stdio(cluster)
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(json.dumps(INITIALIZE) + "\n")
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["id"] == 1  # it serves, reading its input
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (0, ""), err


def test_macp_mcp_refuses_a_bad_http_address_and_an_empty_address_in_one_sentence(
    cluster: Cluster,
) -> None:
    bad = subprocess.run(
        [sys.executable, *_mcp_args(cluster, "--http", "localhost")], env=_env(),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr == (
        "error: --http 'localhost' must be HOST:PORT, e.g. --http 127.0.0.1:8765 (port 0: any)\n"
    )
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nobody = subprocess.run(
        [sys.executable, "-m", "macp", "mcp", "--connect", f"tcp://127.0.0.1:{port}",
         "--timeout-s", "0.5"], env=_env(), capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert (nobody.returncode, nobody.stdout) == (1, "")
    assert nobody.stderr.endswith(
        f"error: no answer from tcp://127.0.0.1:{port} within 0.5 s; is a node of the cluster "
        "running there?\n"
    ), nobody.stderr


def test_macp_mcp_refuses_an_http_address_in_use_in_one_sentence(cluster: Cluster) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, *_mcp_args(cluster, "--http", f"127.0.0.1:{port}")], env=_env(),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.endswith(
        f"error: cannot serve MCP over HTTP on 127.0.0.1:{port}: Address already in use; "
        "choose another --http HOST:PORT\n"
    ), done.stderr


def test_a_bad_evaluation_or_model_report_is_an_error_result_in_one_sentence(
    member: Member,
) -> None:
    async def failing() -> list[dict[str, Any]]:
        async with Client(mcp_server(member.runtime)) as client:
            calls: list[tuple[str, dict[str, Any]]] = [
                ("evaluate_contribution", {"evaluator": "x", "contributor": "sq@w1",
                                           "result_ref": "r", "scores": {"accuracy": 7}}),
                ("evaluate_contribution", {"evaluator": "x", "contributor": "sq@w1",
                                           "scores": {"accuracy": 0.5}}),
                ("agent_message", {"agent": "llm@w1", "type": "infer",
                                   "body": {"tokens_out": -2}}),
            ]  # fmt: skip
            return [error(await client.call_tool(name, args)) for name, args in calls]

    score, reference, report = asyncio.run(failing())
    assert (score["code"], score["data"]) == (-32602, {"error": "InvalidParams"})
    assert score["message"] == (
        "evaluate_contribution: 'scores.accuracy' must be less than or equal to 1"
    )
    assert (reference["code"], reference["message"]) == (
        -32602, "an evaluation needs the 'task_id' or the 'result_ref' it evaluates",
    )  # fmt: skip
    assert (report["code"], report["message"]) == (
        -32602, "ctx.report's tokens_out must be a whole number >= 0, not -2",
    )  # fmt: skip
    assert [e for e in member.cluster.evaluations() if e["evaluator"] == "x"] == []
