"""Cross-process workloads over loopback TCP: W3 cross-node tell, W4 cross-node ask.

Node A is this process (``macp.Node("A", listen=..., peers={"B": ...})``); node B is a
``macp node start`` process running :mod:`bench.agents`. Both figures are agent to agent: the
loop runs in a handler of an agent on A, started by an ask from the benchmark.

Baseline ``raw``: bare pyzmq DEALER (this process) -> ROUTER (:mod:`bench.peer`, another
process) with msgpack; W3 one message per send (``unbatched``) and 100 per frame
(``batch100``), W4 a DEALER/ROUTER ping-pong.
"""

from __future__ import annotations

import time

from bench import procs
from bench.agents import Blaster, Pinger
from bench.core import BenchError, Ctx, Deadline, Figure, Run, latency_metrics, measure, workload
from bench.peer import RawClient
from macp import Node, Settings, Wire

__all__ = ["w3_remote_tell", "w4_remote_ask"]

_ASK_TIMEOUT_S = 10.0
_PEER = "B"


def _macp_pair(ctx: Ctx, remote_agents: dict[str, str]) -> Node:
    """Start node B (a process) with ``remote_agents``, and node A here, peered and up."""
    b = procs.macp_node(_PEER, remote_agents, ctx.deadline)
    ctx.on_exit(b.stop)
    node = Node(
        "A",
        listen="tcp://127.0.0.1:0",
        peers={_PEER: b.ready["address"]},
        settings=Settings(strict=False),
    ).start()
    ctx.on_exit(node.stop)
    while node.peers().get(_PEER, {}).get("state") != "up":
        ctx.deadline.remaining(f"waiting for node {_PEER} to be up")
        if not b.running():
            raise BenchError(f"node {_PEER} exited before it was up")
        time.sleep(0.01)
    return node


def _raw_client(ctx: Ctx) -> RawClient:
    peer = procs.raw_peer(ctx.deadline)
    ctx.on_exit(peer.stop)
    client = RawClient(peer.ready["address"])
    ctx.on_exit(client.close)
    return client


# -- W3 -----------------------------------------------------------------------------------------


def _macp_tell(node: Node, n: int, deadline: Deadline) -> dict[str, float]:
    timeout_s = deadline.remaining("sending tells across nodes")
    body: dict[str, Wire] = {"to": f"sink@{_PEER}", "n": n, "timeout_s": timeout_s}
    elapsed = node.ask("blaster", "blast", body, timeout_s=timeout_s).get()
    return {"msgs_per_s": n / elapsed}


def _raw_tell(client: RawClient, n: int, batch: int, deadline: Deadline) -> dict[str, float]:
    elapsed = client.tell(n, batch, deadline.remaining("sending raw messages"))
    return {"msgs_per_s": n / elapsed}


@workload(
    "W3",
    "cross-node tell: an agent on A tells N messages to an agent on B, until B has them (msgs/s)",
    budget_s=300,
    quick_budget_s=90,
)
def w3_remote_tell(ctx: Ctx) -> list[Figure]:
    n = ctx.n(200_000, 100_000)
    d = ctx.deadline
    node = _macp_pair(ctx, {"sink": "bench.agents:Sink"})
    node.spawn(Blaster, "blaster")
    node.ask(f"sink@{_PEER}", "drain", timeout_s=_ASK_TIMEOUT_S).get()  # both ways work
    client = _raw_client(ctx)
    runs = [
        Run(
            "macp",
            lambda: _macp_tell(node, n, d),
            variant="agent->agent",
            warmup=lambda: _macp_tell(node, n // 10, d),
        ),
        Run(
            "raw",
            lambda: _raw_tell(client, n, 1, d),
            variant="unbatched",
            warmup=lambda: _raw_tell(client, n // 10, 1, d),
        ),
        Run(
            "raw",
            lambda: _raw_tell(client, n, 100, d),
            variant="batch100",
            warmup=lambda: _raw_tell(client, n // 10, 100, d),
        ),
    ]
    return measure(ctx, runs)


# -- W4 -----------------------------------------------------------------------------------------


def _macp_ask(node: Node, n: int, deadline: Deadline) -> dict[str, float]:
    timeout_s = deadline.remaining("asking across nodes")
    body: dict[str, Wire] = {
        "to": f"echo@{_PEER}",
        "n": n,
        "timeout_s": min(_ASK_TIMEOUT_S, timeout_s),
    }
    return latency_metrics(node.ask("pinger", "ping", body, timeout_s=timeout_s).get())


def _raw_ask(client: RawClient, n: int, deadline: Deadline) -> dict[str, float]:
    return latency_metrics(client.ping(n, deadline.remaining("raw round trips")))


@workload(
    "W4",
    "cross-node ask: an agent on A asks an agent on B N times in sequence (p50/p99 us)",
    budget_s=300,
    quick_budget_s=90,
)
def w4_remote_ask(ctx: Ctx) -> list[Figure]:
    n = ctx.n(20_000, 10_000)
    d = ctx.deadline
    node = _macp_pair(ctx, {"echo": "bench.agents:Echo"})
    node.spawn(Pinger, "pinger")
    client = _raw_client(ctx)
    runs = [
        Run(
            "macp",
            lambda: _macp_ask(node, n, d),
            variant="agent->agent",
            warmup=lambda: _macp_ask(node, n // 10, d),
        ),
        Run(
            "raw",
            lambda: _raw_ask(client, n, d),
            variant="ping-pong",
            warmup=lambda: _raw_ask(client, n // 10, d),
        ),
    ]
    return measure(ctx, runs)
