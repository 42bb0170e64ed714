"""W5 scatter-gather: a hub sends one request to each of 100 agents and waits for every reply,
round after round; tasks/s = 100 * rounds / elapsed.

Two groups, each with its own baselines:

- ``local`` (everything in this process): macp ``agent hub`` (the main figure: a
  :class:`~bench.agents.Hub` agent ``self.ask`` s 100 :class:`~bench.agents.Echo` agents and
  waits for every future), macp ``cluster.scatter`` (the coordinator's scatter, ``aggregation
  "all"``, explicit agent list, then ``result()``: two asks of the benchmark thread per round),
  and ``pykka`` (a hub ``ThreadingActor`` asking 100 echo ``ThreadingActor`` s with
  ``block=False``, then ``pykka.get_all``).
- ``2 nodes``: the 100 echo agents on node B (a ``macp node start`` process); the hub and the
  control plane on node A (this process). Baseline ``raw``: one pyzmq DEALER (this process)
  sending 100 msgpack requests per round to the ROUTER of :mod:`bench.peer` (another process),
  which answers each, then taking the 100 answers.

The control plane (for ``cluster.scatter``) runs on the hub's node in both groups, journal on
(a SQLite file in a temporary directory). ``--peers`` adds Ray (remote tasks) when installed.
"""

from __future__ import annotations

import time
from typing import Any

import pykka

from bench import others, procs
from bench.agents import Echo, Hub
from bench.core import BenchError, Ctx, Deadline, Figure, Run, measure, payload, workload
from bench.nodes import head_node, journal_dir, peer_process, wait_up, worker_names
from bench.peer import RawClient
from macp import Cluster, Node, Wire

__all__ = ["w5_scatter"]

FANOUT = 100
_ASK_TIMEOUT_S = 30.0
_LOCAL = "local"
_REMOTE = "2 nodes"
_PEER = "B"


def _per_s(rounds: int, elapsed: float) -> dict[str, float]:
    return {"tasks_per_s": FANOUT * rounds / elapsed}


# -- macp ---------------------------------------------------------------------------------------


def _macp_hub(node: Node, targets: list[str], rounds: int, deadline: Deadline) -> dict[str, float]:
    timeout_s = deadline.remaining("scattering")
    body: dict[str, Wire] = {
        "targets": list(targets),
        "rounds": rounds,
        "timeout_s": min(_ASK_TIMEOUT_S, timeout_s),
    }
    elapsed = node.ask("hub", "scatter", body, timeout_s=timeout_s).get()
    return _per_s(rounds, elapsed)


def _macp_cluster(
    cluster: Cluster, targets: list[str], rounds: int, deadline: Deadline
) -> dict[str, float]:
    start = time.perf_counter()
    for r in range(rounds):
        timeout_s = min(_ASK_TIMEOUT_S, deadline.remaining("scattering through the coordinator"))
        task = cluster.scatter("echo", payload(r), agents=targets, timeout_s=timeout_s)
        answers = task.result(timeout_s=timeout_s)
        if len(answers) != len(targets):
            raise BenchError(f"cluster.scatter answered {len(answers)} of {len(targets)}")
    return _per_s(rounds, time.perf_counter() - start)


# -- Pykka --------------------------------------------------------------------------------------


class _PykkaEcho(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        return message


class _PykkaHub(pykka.ThreadingActor):
    def __init__(self, workers: list[pykka.ActorRef[Any]]) -> None:
        super().__init__()
        self.workers = workers

    def on_receive(self, message: Any) -> float:
        rounds, timeout_s = message
        start = time.perf_counter()
        for r in range(rounds):
            base = r * len(self.workers)
            futures = [w.ask(payload(base + i), block=False) for i, w in enumerate(self.workers)]
            pykka.get_all(futures, timeout=timeout_s)
        return time.perf_counter() - start


def _pykka_hub(ctx: Ctx) -> pykka.ActorRef[Any]:
    workers = [_PykkaEcho.start() for _ in range(FANOUT)]
    hub = _PykkaHub.start(workers)

    def stop() -> None:
        refs: list[pykka.ActorRef[Any]] = [hub, *workers]
        for ref in refs:
            ref.stop()

    ctx.on_exit(stop)
    return hub


def _pykka_scatter(hub: pykka.ActorRef[Any], rounds: int, deadline: Deadline) -> dict[str, float]:
    timeout_s = deadline.remaining("pykka scatter")
    elapsed: float = hub.ask(
        (rounds, min(_ASK_TIMEOUT_S, timeout_s)), block=True, timeout=timeout_s
    )
    return _per_s(rounds, elapsed)


# -- the workload -------------------------------------------------------------------------------


def _local_runs(ctx: Ctx, rounds: int) -> list[Run]:
    d = ctx.deadline
    node = head_node("hub", journal_dir(ctx) / "local.sqlite3")
    ctx.on_exit(node.stop)
    for name in worker_names(FANOUT):
        node.spawn(Echo, name)
    node.spawn(Hub, "hub")
    targets = [f"{name}@{node.name}" for name in worker_names(FANOUT)]
    cluster = Cluster(node, timeout_s=_ASK_TIMEOUT_S)
    hub = _pykka_hub(ctx)
    warm = max(1, rounds // 10)
    return [
        Run(
            "macp",
            lambda: _macp_hub(node, targets, rounds, d),
            variant=f"{_LOCAL}, agent hub",
            group=_LOCAL,
            warmup=lambda: _macp_hub(node, targets, warm, d),
        ),
        Run(
            "macp",
            lambda: _macp_cluster(cluster, targets, rounds, d),
            variant=f"{_LOCAL}, cluster.scatter",
            group=_LOCAL,
            main=False,
            warmup=lambda: _macp_cluster(cluster, targets, warm, d),
        ),
        Run(
            "pykka",
            lambda: _pykka_scatter(hub, rounds, d),
            variant=f"{_LOCAL}, hub actor + get_all",
            group=_LOCAL,
            warmup=lambda: _pykka_scatter(hub, warm, d),
        ),
        *others.scatter_runs(ctx, rounds, FANOUT, group=_LOCAL),
    ]


def _remote_runs(ctx: Ctx, rounds: int) -> list[Run]:
    d = ctx.deadline
    agents = dict.fromkeys(worker_names(FANOUT), "bench.agents:Echo")
    b = peer_process(ctx, _PEER, agents)
    node = head_node(
        "A",
        journal_dir(ctx) / "remote.sqlite3",
        listen="tcp://127.0.0.1:0",
        peers={_PEER: b.ready["address"]},
    )
    ctx.on_exit(node.stop)
    wait_up(node, _PEER, b, d)
    node.spawn(Hub, "hub")
    targets = [f"{name}@{_PEER}" for name in worker_names(FANOUT)]
    cluster = Cluster(node, timeout_s=_ASK_TIMEOUT_S)
    peer = procs.raw_peer(d)
    ctx.on_exit(peer.stop)
    client = RawClient(peer.ready["address"])
    ctx.on_exit(client.close)
    warm = max(1, rounds // 10)

    def raw(n: int) -> dict[str, float]:
        return _per_s(n, client.scatter(n, FANOUT, d.remaining("raw scatter")))

    return [
        Run(
            "macp",
            lambda: _macp_hub(node, targets, rounds, d),
            variant=f"{_REMOTE}, agent hub",
            group=_REMOTE,
            warmup=lambda: _macp_hub(node, targets, warm, d),
        ),
        Run(
            "macp",
            lambda: _macp_cluster(cluster, targets, rounds, d),
            variant=f"{_REMOTE}, cluster.scatter",
            group=_REMOTE,
            main=False,
            warmup=lambda: _macp_cluster(cluster, targets, warm, d),
        ),
        Run(
            "raw",
            lambda: raw(rounds),
            variant=f"{_REMOTE}, zmq DEALER->ROUTER",
            group=_REMOTE,
            warmup=lambda: raw(warm),
        ),
    ]


@workload(
    "W5",
    "scatter-gather: a hub asks 100 agents at once and waits for all, N rounds (tasks/s)",
    budget_s=300,
    quick_budget_s=90,
)
def w5_scatter(ctx: Ctx) -> list[Figure]:
    rounds = ctx.n(200, 100)
    runs = _local_runs(ctx, rounds) + _remote_runs(ctx, rounds)
    ctx.note(
        f"{rounds} rounds of {FANOUT}; the control plane (for cluster.scatter) runs on the hub's "
        "node, journal on; cluster.scatter sends one body to all 100"
    )
    return measure(ctx, runs)
