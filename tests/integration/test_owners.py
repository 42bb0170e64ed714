"""Leases and locks of agents that die are released by the resource manager on its own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from agents import CrashesOnRequest
from procs import QUICK_CLUSTER, QUICK_CLUSTER_FLAGS

import macp
from macp import Agent, ChildSpec, Settings, handler, start_control_plane
from macp.actors.registry import LIST, Registry
from macp.actors.resources import (
    RESOURCES_ACQUIRE_LOCK,
    RESOURCES_ALLOCATE,
    RESOURCES_CHECK_LOCK,
    RESOURCES_RELEASE,
    RESOURCES_USAGE,
)
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp import Node
    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration

POOLS = {"gpu": 4.0, "cpu": 8.0}


class Worker(Agent):
    @handler("ping")
    def ping(self, _body: macp.Wire) -> str:
        return self.address


class Fragile(CrashesOnRequest, Worker):
    """Dies on ``crash``."""


@pytest.fixture
def head(make_node: Callable[..., Node], tmp_path: Path) -> Node:
    node = make_node("head", listen="tcp://127.0.0.1:0", settings=QUICK_CLUSTER)
    start_control_plane(node, journal=tmp_path / "j.sqlite3", pools=POOLS)
    return node


def _registry(node: Node) -> dict[str, str]:
    return {r["address"]: r["status"] for r in node.ask("registry", LIST).get()}


def _wait_registered(node: Node, *addresses: str) -> None:
    wait_until(
        lambda: all(_registry(node).get(a) == "available" for a in addresses),
        10,
        f"{addresses} not available in the registry",
    )


def _allocate(node: Node, owner: str, **amounts: float) -> str:
    lease = node.ask("resources", RESOURCES_ALLOCATE, {"owner": owner, "amounts": amounts}).get()
    return str(lease["lease_id"])


def _allocated(node: Node) -> dict[str, Any]:
    return {
        pool: u["allocated"] for pool, u in node.ask("resources", RESOURCES_USAGE).get().items()
    }


def _lock(node: Node, path: str, owner: str) -> None:
    node.ask("resources", RESOURCES_ACQUIRE_LOCK, {"path": path, "owner": owner}).get()


def _lock_owner(node: Node, path: str) -> str | None:
    owner = node.ask("resources", RESOURCES_CHECK_LOCK, {"path": path}).get()["owner"]
    return None if owner is None else str(owner)


def _wait_allocated(
    node: Node, expected: dict[str, float], why: str, timeout_s: float = 10.0
) -> None:
    wait_until(lambda: _allocated(node) == expected, timeout_s, why)


def test_a_terminated_agent_loses_its_leases_and_locks_and_no_one_else_does(head: Node) -> None:
    head.spawn(Worker, "holder")
    head.spawn(Worker, "bystander")
    _wait_registered(head, "holder@head", "bystander@head")
    lease = _allocate(head, "holder@head", gpu=2, cpu=3)
    _allocate(head, "bystander@head", gpu=1)
    _allocate(head, "a-script", cpu=1)  # not an agent address: never released for it
    _lock(head, "/data/a", "holder@head")
    _lock(head, "/data/b", "bystander@head")
    assert _allocated(head) == {"cpu": 4.0, "gpu": 3.0}

    assert head.terminate("holder") is True
    _wait_allocated(head, {"cpu": 1.0, "gpu": 1.0}, "holder@head's lease was not released")
    assert _lock_owner(head, "/data/a") is None
    assert _lock_owner(head, "/data/b") == "bystander@head"
    assert head.ask("resources", RESOURCES_RELEASE, {"lease_id": lease}).get() == {
        "released": False
    }


def test_a_temporary_agent_that_crashes_loses_its_leases_and_locks(head: Node) -> None:
    head.spawn(Fragile, "temp", restart="temporary")
    _wait_registered(head, "temp@head")
    _allocate(head, "temp@head", gpu=1)
    _lock(head, "/data/t", "temp@head")

    with pytest.raises(macp.AgentError, match=r"^RuntimeError: crashed on purpose$"):
        head.ask("temp", "crash").get()
    _wait_allocated(head, {"cpu": 0.0, "gpu": 0.0}, "temp@head's lease was not released")
    assert _lock_owner(head, "/data/t") is None
    assert "temp" not in [c["name"] for c in head.children()]
    assert "temp@head" not in _registry(head)


def test_a_permanent_agent_that_crashes_and_restarts_keeps_its_leases_and_locks(
    head: Node,
) -> None:
    head.spawn(Fragile, "phoenix")
    _wait_registered(head, "phoenix@head")
    _allocate(head, "phoenix@head", gpu=1)
    _lock(head, "/data/p", "phoenix@head")

    with pytest.raises(macp.AgentError, match=r"^RuntimeError: crashed on purpose$"):
        head.ask("phoenix", "crash").get()
    wait_until(
        lambda: next(c["restarts"] for c in head.children() if c["name"] == "phoenix") == 1,
        5,
        "phoenix was not restarted",
    )
    assert head.ask("phoenix", "ping").get() == "phoenix@head"
    _wait_registered(head, "phoenix@head")
    # The registry tells the manager every change before it answers the list above, so a
    # release would already be queued ahead of these asks.
    assert _allocated(head) == {"cpu": 0.0, "gpu": 1.0}
    assert _lock_owner(head, "/data/p") == "phoenix@head"


def test_the_leases_and_locks_of_agents_on_a_killed_node_are_released(
    head: Node, procs: Callable[..., NodeProcess]
) -> None:
    head.spawn(Worker, "local")
    worker = procs("w1", "--head", "head", "--peer", f"head={head.address}",
                   "--agent", "echo=agents:Echo", *QUICK_CLUSTER_FLAGS)  # fmt: skip
    _wait_registered(head, "echo@w1", "local@head")
    _allocate(head, "echo@w1", gpu=2)
    _allocate(head, "local@head", gpu=1)
    _lock(head, "/data/w1", "echo@w1")

    worker.kill()
    _wait_allocated(head, {"cpu": 0.0, "gpu": 1.0}, "echo@w1's lease was not released")
    assert _lock_owner(head, "/data/w1") is None
    assert _registry(head)["echo@w1"] == "offline"


def test_a_restarted_manager_releases_what_unregistered_agents_held_after_a_grace_period(
    make_node: Callable[..., Node], tmp_path: Path
) -> None:
    journal = tmp_path / "j.sqlite3"
    first = make_node("head", listen="tcp://127.0.0.1:0", settings=QUICK_CLUSTER)
    start_control_plane(first, journal=journal, pools=POOLS)
    assert first.address is not None
    # A pause long enough not to find the new head down while it heartbeats every 0.5 s.
    worker_settings = Settings(strict=True, heartbeat_interval_s=0.1, acceptable_pause_s=1.0)
    worker = make_node("w1", listen="tcp://127.0.0.1:0", peers={"head": first.address},
                       head="head", settings=worker_settings)  # fmt: skip
    worker.spawn(Worker, "keeper")
    worker.spawn(Worker, "ghost")
    _wait_registered(first, "keeper@w1", "ghost@w1")
    _allocate(first, "keeper@w1", gpu=1)
    _allocate(first, "ghost@w1", gpu=2)
    _allocate(first, "a-script", cpu=1)
    _lock(first, "/data/k", "keeper@w1")
    _lock(first, "/data/g", "ghost@w1")

    first.stop()
    wait_until(lambda: worker.peers()["head"]["state"] == "down", 10, "w1 did not see head go")
    assert worker.terminate("ghost") is True  # while no registry can hear of it

    # The grace period is 3 heartbeat intervals of the head: 1.5 s here.
    slow = Settings(strict=True, heartbeat_interval_s=0.5, acceptable_pause_s=0.5)
    assert worker.address is not None
    second = make_node("head", listen=first.address, peers={"w1": worker.address},
                       settings=slow)  # fmt: skip
    start_control_plane(second, journal=journal, pools=POOLS)
    assert _allocated(second) == {"cpu": 1.0, "gpu": 3.0}  # all reloaded, nothing reaped yet

    _wait_allocated(second, {"cpu": 1.0, "gpu": 1.0}, "ghost@w1's lease was not released")
    assert _lock_owner(second, "/data/g") is None
    assert _lock_owner(second, "/data/k") == "keeper@w1"
    assert _registry(second)["keeper@w1"] == "available"
    assert "ghost@w1" not in _registry(second)


def test_leases_are_still_released_after_the_registry_restarts(
    make_node: Callable[..., Node], tmp_path: Path
) -> None:
    # A grace period of 0.6 s, so the first reap surely comes after the allocation below.
    settings = Settings(strict=True, heartbeat_interval_s=0.2, acceptable_pause_s=0.2)
    head = make_node("head", settings=settings)
    start_control_plane(head, journal=tmp_path / "j.sqlite3", pools=POOLS)
    _allocate(head, "nobody@head", cpu=1)
    # The manager's one reap after it starts releases this lease of an unregistered owner:
    # from then on only registry events can release anything.
    _wait_allocated(head, {"cpu": 0.0, "gpu": 0.0}, "the manager's first reap did not run")
    head.spawn(Worker, "holder")
    _wait_registered(head, "holder@head")

    assert head.terminate("registry", supervisor="control") is True
    head.start_child(ChildSpec(Registry, "registry"), supervisor="control")
    _wait_registered(head, "holder@head")  # the node re-sent its records to the new registry
    _allocate(head, "holder@head", gpu=1)
    assert head.terminate("holder") is True
    wait_until(lambda: "holder@head" not in _registry(head), 10, "holder@head still registered")
    _wait_allocated(head, {"cpu": 0.0, "gpu": 0.0}, "holder@head's lease was not released")
