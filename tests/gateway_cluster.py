"""A real cluster for the gateway's operations: a head process (the control plane) and a
worker process with real agents, started once per test module; each test joins it with a
gateway member of its own (in this process, stopped when the test ends)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from procs import QUICK_CLUSTER, QUICK_CLUSTER_FLAGS, TESTS

from macp.gateway import OPERATIONS, Member
from macp.testing import NodeProcess

if TYPE_CHECKING:
    from collections.abc import Iterator

WORKER_AGENTS = {
    "echo1": "Echo", "hanger": "Echo", "stuck": "Echo", "seq": "Sequencer", "relay": "Relay",
    "v1": "Voter", "v2": "Voter", "v3": "Voter", "dis": "Dissenter", "sq1": "Squarer",
    "crew1": "Crew", "crew2": "Crew",
}  # fmt: skip
SPAWNABLE = ("agents:Voter", "agents:Squarer", "agents:Echo")


class Procs:
    """The module's node processes."""

    def __init__(self, head: NodeProcess, worker: NodeProcess) -> None:
        self.head = head
        self.worker = worker


@pytest.fixture(scope="module")
def cluster_procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Procs]:
    journal = tmp_path_factory.mktemp("gateway") / "journal.db"
    head = NodeProcess(
        "head",
        "--control-plane",
        "--journal",
        str(journal),
        *QUICK_CLUSTER_FLAGS,
        pythonpath=[TESTS],
    ).start()
    worker: NodeProcess | None = None
    try:
        assert head.address is not None
        agents = [a for n, cls in WORKER_AGENTS.items() for a in ("--agent", f"{n}=agents:{cls}")]
        allowed = [a for cls in SPAWNABLE for a in ("--spawnable", cls)]
        worker = NodeProcess(
            "w1",
            "--join",
            head.address,
            *agents,
            *allowed,
            *QUICK_CLUSTER_FLAGS,
            pythonpath=[TESTS],
        ).start()
        yield Procs(head, worker)
    finally:
        if worker is not None:
            worker.kill()
        head.kill()


@pytest.fixture
def member(cluster_procs: Procs) -> Iterator[Member]:
    assert cluster_procs.worker.address is not None
    with Member.join(cluster_procs.worker.address, settings=QUICK_CLUSTER) as joined:
        addresses = [f"{name}@w1" for name in WORKER_AGENTS if name not in {"hanger", "stuck"}]
        joined.cluster.wait_for_agents(addresses, timeout_s=20)
        yield joined


def call(member: Member, name: str, arguments: dict[str, Any] | None = None) -> Any:
    """Operation ``name`` called with ``arguments``, as a transport would: on an event loop."""
    return asyncio.run(OPERATIONS[name].call(member.runtime, arguments))
