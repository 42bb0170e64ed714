"""Agents spawned on other node processes (node.spawn, Cluster.spawn): only classes a node
allows (--spawnable), on the node asked for or the least loaded one that allows the class;
stopped with Cluster.terminate, which stops only what was spawned so."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from procs import QUICK_CLUSTER, QUICK_CLUSTER_FLAGS

import macp
from macp import Cluster, start_control_plane

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp import Node
    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(
    make_node: Callable[..., Node], procs: Callable[..., NodeProcess], tmp_path: Path
) -> Cluster:
    head = make_node("head", listen="tcp://127.0.0.1:0", settings=QUICK_CLUSTER)
    start_control_plane(head, journal=tmp_path / "j.sqlite3")
    member = ("--head", "head", "--peer", f"head={head.address}", *QUICK_CLUSTER_FLAGS,
              "--spawnable", "agents:Echo")  # fmt: skip
    procs("n2", *member)
    procs("n3", *member, "--agent", "a=agents:Echo", "--agent", "b=agents:Echo")
    cluster = Cluster(head, timeout_s=15)
    cluster.wait_for_agents(["a@n3", "b@n3"], timeout_s=15)
    return cluster


def test_an_allowed_class_is_spawned_on_the_node_asked_and_terminated(cluster: Cluster) -> None:
    address = cluster.spawn("agents:Echo", "spawned", node="n3", config={"k": 1})
    assert address == "spawned@n3"
    reply = cluster.node.ask(address, "echo", "hi").get()
    assert reply["me"] == "spawned@n3"
    [record] = [r for r in cluster.agents() if r["address"] == address]
    assert record["metadata"] == {"class": "agents:Echo"}
    assert cluster.terminate(address) is True
    with pytest.raises(macp.Unauthorized, match=r"^node 'n3' did not spawn 'spawned' through"):
        cluster.terminate(address)


def test_the_least_loaded_node_that_allows_the_class_is_chosen(cluster: Cluster) -> None:
    assert cluster.spawn("agents:Echo", "auto") == "auto@n2"  # n3 has two agents; head none


def test_a_class_not_allowed_is_refused_and_never_imported(cluster: Cluster) -> None:
    with pytest.raises(
        macp.Unauthorized,
        match=r"^node 'n2' does not allow spawning 'agents:Relay' \(it allows: agents:Echo\); "
        r"start it with --spawnable agents:Relay",
    ):
        cluster.spawn("agents:Relay", "relay", node="n2")
    with pytest.raises(macp.ConfigError, match=r"^no live node allows spawning 'agents:Relay'"):
        cluster.spawn("agents:Relay", "relay")


def test_a_taken_name_and_an_agent_not_spawned_so_are_refused(cluster: Cluster) -> None:
    with pytest.raises(macp.ConfigError, match=r"'a'"):
        cluster.spawn("agents:Echo", "a", node="n3")
    with pytest.raises(macp.Unauthorized, match=r"^node 'n3' did not spawn 'b' through"):
        cluster.terminate("b@n3")
