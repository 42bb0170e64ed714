"""JSON-RPC 2.0 over TCP against a real cluster: a head and a worker as node processes, real
agents, the gateway served in this process on 127.0.0.1:0, and raw sockets as clients."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import TYPE_CHECKING, Any

import pytest
from jsonrpc_client import LineClient
from procs import QUICK_CLUSTER, QUICK_CLUSTER_FLAGS

from macp import ConfigError
from macp.gateway import (
    OPERATIONS,
    Gateway,
    JsonRpcLimits,
    JsonRpcServer,
    Member,
    Params,
    Scope,
    Table,
)
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration

TOOLS = len(OPERATIONS)


@pytest.fixture
def cluster(procs: Callable[..., NodeProcess], tmp_path: Path) -> str:
    """A head (control plane, a journal of its own) and a worker running a Squarer, an Echo
    and a staller; the head's address."""
    journal = str(tmp_path / "journal.db")
    head = procs("head", "--control-plane", "--journal", journal, *QUICK_CLUSTER_FLAGS)
    assert head.address is not None
    procs("w1", "--join", head.address, "--agent", "sq=agents:Squarer", "--agent",
          "echo=agents:Echo", "--agent", "staller=agents:FirstAttemptHangs",
          *QUICK_CLUSTER_FLAGS)  # fmt: skip
    return head.address


def serve(head: str, **limits: Any) -> Gateway:
    member = Member.join(head, name="gw", settings=QUICK_CLUSTER)
    member.cluster.wait_for_agents(["sq@w1", "echo@w1", "staller@w1"], timeout_s=15)
    return Gateway(member, jsonrpc="127.0.0.1:0", limits=JsonRpcLimits(**limits)).start()


@pytest.fixture
def gateway(cluster: str) -> Iterator[Gateway]:
    gateway = serve(cluster)
    yield gateway
    gateway.stop()


@pytest.fixture
def client(gateway: Gateway) -> Iterator[LineClient]:
    with LineClient(gateway.addresses["jsonrpc"]) as client:
        yield client


def error_of(response: dict[str, Any]) -> dict[str, Any]:
    assert "error" in response, response
    error: dict[str, Any] = response["error"]
    return error


# -- the methods ------------------------------------------------------------------------------


def test_initialize_answers_the_protocol_version_server_info_and_capabilities(
    client: LineClient,
) -> None:
    answer = client.result("initialize", {"protocolVersion": "2025-03-26", "capabilities": {}})
    assert answer["protocolVersion"] == "2025-03-26"
    assert answer["serverInfo"]["name"] == "macp"
    assert answer["serverInfo"]["version"]
    assert answer["capabilities"] == {"tools": {}}
    assert client.result("initialize")["protocolVersion"] == "2025-06-18"


def test_tools_list_serves_every_operation_with_its_summary_and_schema(
    client: LineClient,
) -> None:
    tools = client.result("tools/list")["tools"]
    assert sorted(t["name"] for t in tools) == OPERATIONS.names()
    orchestrate = next(t for t in tools if t["name"] == "task_orchestrate")
    assert orchestrate["description"] == OPERATIONS["task_orchestrate"].summary
    assert orchestrate["inputSchema"]["required"] == ["type"]


def test_tools_call_runs_a_task_on_an_agent_of_a_worker_process(client: LineClient) -> None:
    arguments = {"type": "square", "body": {"x": 7}}
    submitted = client.result("tools/call", {"name": "task_orchestrate", "arguments": arguments})
    assert submitted["isError"] is False
    task_id = submitted["structuredContent"]["task_id"]
    assert json.loads(submitted["content"][0]["text"]) == submitted["structuredContent"]
    done = client.result(
        "tools/call", {"name": "task_result", "arguments": {"task_id": task_id, "wait_s": 15}}
    )
    assert done["isError"] is False
    assert done["structuredContent"]["result"] == {"square": 49, "by": "sq@w1"}
    assert done["content"] == [{"type": "text", "text": json.dumps(done["structuredContent"])}]


def test_a_failed_tools_call_is_a_result_with_is_error_and_the_macp_code(
    client: LineClient,
) -> None:
    answer = client.result("tools/call", {"name": "task_status", "arguments": {"task_id": "x"}})
    assert answer["isError"] is True
    error = answer["structuredContent"]
    assert error["code"] == -32602
    assert "no task 'x'" in error["message"]
    assert answer["content"][0]["text"] == f"macp error -32602 (NotFound): {error['message']}"
    unknown = client.result("tools/call", {"name": "task_statu", "arguments": {}})
    assert unknown["structuredContent"]["code"] == -32601
    bad = client.call("tools/call", {"arguments": {}})
    assert error_of(bad)["code"] == -32602
    assert error_of(bad)["message"].startswith("tools/call: 'name' is required")


def test_every_operation_is_callable_by_its_name(client: LineClient) -> None:
    ping = client.result("ping")
    assert ping["status"] == "ok"
    assert abs(ping["timestamp"] - time.time() * 1000) < 60_000
    task_id = client.result("task_orchestrate", {"type": "square", "body": {"x": 3}})["task_id"]
    answer = client.result("task_result", {"task_id": task_id, "wait_s": 15})
    assert answer == {"task_id": task_id, "done": True, "state": "succeeded",
                      "result": {"square": 9, "by": "sq@w1"}}  # fmt: skip


# -- errors -----------------------------------------------------------------------------------


def test_bytes_that_are_not_json_are_a_parse_error_with_a_null_id(client: LineClient) -> None:
    client.send(b'{"jsonrpc": "2.0", "id": 1, "method": "ping"\n')
    answer = client.receive()
    assert answer["id"] is None
    assert error_of(answer)["code"] == -32700
    client.send(b'{"jsonrpc":"2.0","id":2,"method":"ping","params":{"x":NaN}}\n')
    assert error_of(client.receive())["code"] == -32700
    client.send(b"\xff\xfe\n")
    assert error_of(client.receive())["code"] == -32700
    assert client.result("ping")["status"] == "ok"  # the connection lives on


@pytest.mark.parametrize(
    ("request_", "answer_id", "message"),
    [
        ([1], None, "a request is a JSON object, not a number"),
        ({"id": 4, "method": "ping"}, 4, "'jsonrpc' must be \"2.0\""),
        ({"jsonrpc": "2.0", "id": 5}, 5, "'method' must be a non-empty string"),
        ({"jsonrpc": "2.0", "id": [1], "method": "ping"}, None, "'id' must be a string"),
        ({"jsonrpc": "2.0", "id": 6, "method": "ping", "params": 3}, 6, "'params' must be an"),
        ([], None, "an empty batch"),
    ],
)
def test_an_invalid_request_is_answered_32600_naming_what_is_wrong(
    client: LineClient, request_: Any, answer_id: Any, message: str
) -> None:
    client.send(request_)
    answer = client.receive()
    if isinstance(answer, list):
        (answer,) = answer
    assert answer["id"] == answer_id
    error = error_of(answer)
    assert error["code"] == -32600
    assert message in error["message"]


def test_an_unknown_method_is_32601_and_bad_params_32602_naming_the_field(
    client: LineClient,
) -> None:
    unknown = error_of(client.call("task_orchestrat", {}))
    assert unknown["code"] == -32601
    assert unknown["message"].startswith("no operation named 'task_orchestrat'")
    bad = error_of(client.call("task_orchestrate", {"type": "square", "priority": 9}))
    assert bad["code"] == -32602
    assert bad["message"].startswith("task_orchestrate: 'priority' must be less than")
    positional = error_of(client.call("task_status", ["x"]))
    assert positional["code"] == -32602
    assert "must be a JSON object, not list" in positional["message"]


def test_macp_errors_keep_their_own_codes(client: LineClient) -> None:
    failing = client.result(
        "task_orchestrate", {"type": "fail", "body": 1, "max_retries": 0, "agent": "echo@w1"}
    )
    failed = error_of(client.call("task_result", {"task_id": failing["task_id"], "wait_s": 15}))
    assert failed["code"] == -32001
    assert failed["data"]["error"] in {"AgentError", "PoisonMessage"}
    stalled = client.result("task_orchestrate", {"type": "stall", "body": 1})["task_id"]
    assert client.result("task_cancel", {"task_id": stalled})
    cancelled = error_of(client.call("task_result", {"task_id": stalled, "wait_s": 15}))
    assert cancelled["code"] == -32007
    assert cancelled["data"] == {"error": "Cancelled"}


def test_a_bug_in_an_operation_is_32603_and_the_server_lives_on(cluster: str) -> None:
    table = Table()

    @table.operation("broken", Params, Scope.SYSTEM_READ, "Always fails.")
    async def broken(_runtime: Any, _params: Params) -> Any:
        return 1 / 0

    @table.operation("nan", Params, Scope.SYSTEM_READ, "Answers what JSON cannot say.")
    async def nan(_runtime: Any, _params: Params) -> Any:
        return {"x": float("nan")}

    with Member.join(cluster, name="gw", settings=QUICK_CLUSTER) as member:

        async def run() -> list[Any]:
            server = JsonRpcServer(table, member.runtime, "127.0.0.1", 0)
            await server.start()
            try:
                return await asyncio.to_thread(calls, server.address)
            finally:
                await server.close()

        def calls(address: str) -> list[Any]:
            with LineClient(address) as client:
                return [client.call("broken"), client.call("nan"), client.call("broken")]

        answers = asyncio.run(run())
    for answer in answers:
        assert error_of(answer)["code"] == -32603
    assert "ZeroDivisionError" in error_of(answers[0])["message"]
    assert "cannot be sent as JSON" in error_of(answers[1])["message"]


# -- batches and notifications ----------------------------------------------------------------


def test_a_batch_array_answers_each_request_by_id_and_no_notification(
    client: LineClient,
) -> None:
    client.send([
        {"jsonrpc": "2.0", "id": "a", "method": "ping"},
        {"jsonrpc": "2.0", "method": "ping"},
        {"jsonrpc": "2.0", "id": "b", "method": "nope"},
        {"jsonrpc": "2.0", "id": "c", "method": "task_orchestrate",
         "params": {"type": "square", "body": {"x": 2}}},
        "junk",
    ])  # fmt: skip
    answers = client.receive()
    assert len(answers) == 4
    by_id = {a["id"]: a for a in answers}
    assert by_id["a"]["result"]["status"] == "ok"
    assert by_id["b"]["error"]["code"] == -32601
    assert by_id["c"]["result"]["task_id"]
    assert by_id[None]["error"]["code"] == -32600


def test_the_batch_method_answers_a_list_of_responses(client: LineClient) -> None:
    answers = client.result("batch", [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "task_status", "params": {"task_id": "x"}},
        {"jsonrpc": "2.0", "method": "ping"},
        {"jsonrpc": "2.0", "id": 3, "method": "batch", "params": []},
    ])  # fmt: skip
    assert [a["id"] for a in answers] == [1, 2, 3]
    assert answers[0]["result"]["status"] == "ok"
    assert answers[1]["error"]["code"] == -32602
    assert answers[2]["error"]["code"] == -32600
    assert "cannot hold another batch" in answers[2]["error"]["message"]
    assert error_of(client.call("batch", {"requests": []}))["code"] == -32602


def test_a_notification_runs_and_is_not_answered(client: LineClient) -> None:
    params = {"type": "square", "body": {"x": 5}, "idempotency_key": "note-1"}
    client.send({"jsonrpc": "2.0", "method": "task_orchestrate", "params": params})
    client.send([{"jsonrpc": "2.0", "method": "ping"}, {"jsonrpc": "2.0", "method": "nope"}])
    # the next line answered is this request's: neither the notification nor the batch of
    # notifications answered anything
    tasks: list[Any] = []

    def listed() -> bool:
        tasks[:] = client.result("task_list")["tasks"]
        return bool(tasks)

    wait_until(listed, 15, "the notified task was never submitted", poll_s=0.05)
    assert [t["type"] for t in tasks] == ["square"]
    again = client.result("task_orchestrate", params)
    assert again["task_id"] == tasks[0]["id"]


# -- limits -----------------------------------------------------------------------------------


def test_a_message_over_10_mib_is_refused_and_its_connection_closed(
    gateway: Gateway, client: LineClient
) -> None:
    limit = 10 * 1024 * 1024
    under = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping",
                        "params": {"pad": "x" * (limit - 100)}}).encode()  # fmt: skip
    assert len(under) <= limit
    client.send(under + b"\n")
    assert "unknown key 'pad'" in error_of(client.receive())["message"]  # read and answered
    client.send(b"[" + b" " * limit + b"\n")
    refused = client.receive()
    assert refused["id"] is None
    assert error_of(refused)["code"] == -32600
    assert f"at most {limit} bytes" in error_of(refused)["message"]
    assert client.receive() is None  # closed
    with LineClient(gateway.addresses["jsonrpc"]) as other:
        assert other.result("ping")["status"] == "ok"


def test_over_100_requests_a_second_are_refused_32000_with_retry_after(
    client: LineClient,
) -> None:
    client.send([{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(150)])
    answers = client.receive()
    refused = [a for a in answers if "error" in a]
    assert len(answers) == 150
    assert len(refused) == 50
    for answer in refused:
        assert answer["error"]["code"] == -32000
        assert 0 < answer["error"]["data"]["retry_after_s"] <= 1.0
    # the window moves on: requests are admitted again
    wait_until(lambda: "result" in client.call("ping"), 5, "never admitted again", poll_s=0.05)


def test_a_client_that_sends_half_a_line_and_hangs_blocks_nobody(gateway: Gateway) -> None:
    address = gateway.addresses["jsonrpc"]
    with LineClient(address) as slow, LineClient(address) as other:
        slow.send(b'{"jsonrpc": "2.0", "id": 1, "meth')
        assert other.result("ping")["status"] == "ok"
        assert other.result("task_list")["count"] == 0
        slow.send(b'od": "ping"}\n')  # the rest of its line, at last
        assert slow.receive()["result"]["status"] == "ok"


def test_200_concurrent_connections_each_make_a_call(gateway: Gateway) -> None:
    host, _, port = gateway.addresses["jsonrpc"].rpartition(":")

    async def one(i: int) -> Any:
        reader, writer = await asyncio.open_connection(host, int(port))
        request = {"jsonrpc": "2.0", "id": i, "method": "task_list"}
        writer.write(json.dumps(request).encode() + b"\n")
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return json.loads(line)

    async def all_of_them() -> list[Any]:
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(200))), 60)

    answers = asyncio.run(all_of_them())
    assert sorted(a["id"] for a in answers) == list(range(200))
    assert all(a["result"]["count"] == 0 for a in answers)


def test_an_idle_connection_is_closed_but_not_one_waiting_for_an_answer(cluster: str) -> None:
    gateway = serve(cluster, idle_timeout_s=0.3)
    try:
        address = gateway.addresses["jsonrpc"]
        with LineClient(address) as idle:
            assert idle.receive() is None  # closed by the server, having sent nothing
        with LineClient(address) as waiting:
            task_id = waiting.result("task_orchestrate", {"type": "stall", "body": 1})["task_id"]
            answer = waiting.result("task_result", {"task_id": task_id, "wait_s": 1.0})
            assert answer["done"] is False  # answered after 1 s: not closed as idle at 0.3 s
    finally:
        gateway.stop()


def test_a_line_without_its_end_at_eof_is_32600_and_whole_lines_are_still_answered(
    client: LineClient,
) -> None:
    client.send(b'{"jsonrpc": "2.0", "id": 1, "method": "task_list"}\n{"jsonrpc": "2.0"')
    client.sock.shutdown(socket.SHUT_WR)  # as `nc -q1` does once its input ends
    answers = [client.receive(), client.receive()]
    by_id = {a["id"]: a for a in answers}
    assert by_id[1]["result"]["count"] == 0
    assert error_of(by_id[None])["code"] == -32600
    assert "ended inside a message" in error_of(by_id[None])["message"]
    assert client.receive() is None


# -- the server -------------------------------------------------------------------------------


def test_a_port_in_use_is_one_sentence_naming_it(cluster: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        member = Member.join(cluster, name="gw", settings=QUICK_CLUSTER)
        gateway = Gateway(member, jsonrpc=f"127.0.0.1:{port}")
        with pytest.raises(
            ConfigError, match=rf"^JSON-RPC address already in use: 127.0.0.1:{port}; "
        ):
            gateway.start()
    assert member.node.wait(5) is not None  # the gateway left the cluster


def test_stopping_fails_calls_still_running_after_the_grace_and_accepts_no_more(
    cluster: str,
) -> None:
    gateway = serve(cluster, stop_grace_s=0.2)
    address = gateway.addresses["jsonrpc"]
    with LineClient(address) as client:
        task_id = client.result("task_orchestrate", {"type": "stall", "body": 1})["task_id"]
        client.send({"jsonrpc": "2.0", "id": 9, "method": "task_result",
                     "params": {"task_id": task_id, "wait_s": 30}})  # fmt: skip
        assert client.result("ping")["status"] == "ok"  # the wait is in flight
        gateway.stop()
        failed = client.receive()
        assert failed["id"] == 9
        assert error_of(failed)["code"] == -32603
        assert "the gateway stopped before the call finished" in error_of(failed)["message"]
        assert client.receive() is None
    with pytest.raises(ConnectionRefusedError):
        LineClient(address)
