"""The JSON-RPC server never falls over: whatever line a client sends (random bytes, random
JSON, requests of any shape), it answers a well-formed response or nothing, and the next
request on the same connection is answered."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonrpc_client import LineClient
from procs import QUICK_CLUSTER

from macp import start_control_plane
from macp.gateway import Gateway, JsonRpcLimits, Member

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from macp import Node

pytestmark = pytest.mark.integration

CODES = {-32700, -32600, -32601, -32602, -32603, -32000, -32001, -32002, -32003, -32004, -32007}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
methods = st.sampled_from(
    ["ping", "initialize", "tools/list", "tools/call", "batch", "task_status", "task_list",
     "task_cancel", "nope", ""]
)  # fmt: skip
requests = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0"]), "method": methods},
    optional={
        "id": st.integers() | st.text(max_size=8) | st.none() | st.booleans(),
        "params": json_values,
    },
)
messages = requests | st.lists(requests, max_size=5) | json_values


@pytest.fixture
def client(make_node: Callable[..., Node], tmp_path: Path) -> Iterator[LineClient]:
    head = make_node("head", listen="tcp://127.0.0.1:0", settings=QUICK_CLUSTER)
    start_control_plane(head, journal=tmp_path / "journal.db")
    assert head.address is not None
    member = Member.join(head.address, name="gw", settings=QUICK_CLUSTER)
    limits = JsonRpcLimits(requests_per_s=100_000)
    with (
        Gateway(member, jsonrpc="127.0.0.1:0", limits=limits) as gateway,
        LineClient(gateway.addresses["jsonrpc"]) as client,
    ):
        yield client


def well_formed(answer: Any) -> None:
    for response in answer if isinstance(answer, list) else [answer]:
        assert response["jsonrpc"] == "2.0"
        assert "id" in response
        assert ("result" in response) != ("error" in response), response
        if "error" in response:
            assert response["error"]["code"] in CODES, response
            assert isinstance(response["error"]["message"], str)


def exchange(client: LineClient, line: bytes) -> None:
    """Send ``line``, then a ping; every answer before the ping's is well formed."""
    client.send(line.replace(b"\n", b" ") + b"\n")
    client.send({"jsonrpc": "2.0", "id": "fence", "method": "ping"})
    while True:
        answer = client.receive()
        assert answer is not None, f"the server closed the connection after {line!r}"
        if isinstance(answer, dict) and answer.get("id") == "fence":
            assert answer["result"]["status"] == "ok"
            return
        well_formed(answer)


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


@FUZZ
@given(line=st.binary(max_size=200))
def test_random_bytes_are_answered_and_the_connection_lives_on(
    client: LineClient, line: bytes
) -> None:
    exchange(client, line)


@FUZZ
@given(message=messages)
def test_random_requests_are_answered_well_formed(client: LineClient, message: Any) -> None:
    exchange(client, json.dumps(message).encode())
