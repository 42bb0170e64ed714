"""Node set-ups shared by the cluster workloads (W5, W7, W8, W9): a node in this process with
the control plane and a journal in a temporary directory, a peer node in a child process, and
bounded waits for a peer to be up and for agents to be registered.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench import procs
from bench.core import BenchError
from macp import Cluster, Node, Settings, start_control_plane

if TYPE_CHECKING:
    from collections.abc import Mapping

    from bench.core import Ctx, Deadline

__all__ = [
    "head_node",
    "journal_dir",
    "peer_process",
    "wait_registered",
    "wait_up",
    "worker_names",
]

_POLL_S = 0.01


def worker_names(count: int) -> list[str]:
    """``w0`` ... ``w{count-1}``: the worker agents' names."""
    return [f"w{i}" for i in range(count)]


def journal_dir(ctx: Ctx) -> Path:
    """A temporary directory for SQLite journals, removed when the workload ends."""
    path = Path(tempfile.mkdtemp(prefix=f"macp-bench-{ctx.workload.lower()}-"))
    ctx.on_exit(lambda: shutil.rmtree(path, ignore_errors=True))
    return path


def head_node(
    name: str,
    journal: Path,
    *,
    listen: str | None = None,
    peers: Mapping[str, str] | None = None,
    max_in_flight: int = 4,
) -> Node:
    """A started node (default settings, strict off) running the control plane, with its
    journal (a real SQLite file) at ``journal``. The caller stops it."""
    node = Node(name, listen=listen, peers=peers, settings=Settings(strict=False)).start()
    try:
        start_control_plane(node, journal=journal, coordinator={"max_in_flight": max_in_flight})
    except BaseException:
        node.stop()
        raise
    return node


def peer_process(ctx: Ctx, name: str, agents: Mapping[str, str], *flags: str) -> procs.Child:
    """A ``macp node start`` process with ``agents``, default liveness settings, stopped when
    the workload ends."""
    child = procs.macp_node(name, agents, ctx.deadline, *flags)
    ctx.on_exit(child.stop)
    return child


def wait_up(node: Node, peer: str, child: procs.Child | None, deadline: Deadline) -> None:
    """Wait until ``node`` sees ``peer`` up (``child`` is its process, checked to be alive)."""
    while node.peers().get(peer, {}).get("state") != "up":
        deadline.remaining(f"waiting for node {peer} to be up at {node.name}")
        if child is not None and not child.running():
            raise BenchError(f"node {peer} exited before it was up")
        time.sleep(_POLL_S)


def wait_registered(cluster: Cluster, addresses: list[str], deadline: Deadline) -> None:
    """Wait until the registry knows every agent in ``addresses``."""
    wanted = set(addresses)
    while True:
        known = {a["address"] for a in cluster.agents()}
        if wanted <= known:
            return
        deadline.remaining(f"waiting for {len(wanted - known)} agents to be registered")
        time.sleep(0.05)
