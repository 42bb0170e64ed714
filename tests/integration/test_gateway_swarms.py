"""Swarms and spawning through the gateway against a real cluster: agents started for real in
the worker process, a swarm's declaration kept in the memory store, and the seed scenario
(a swarm, one more agent, a consensus over three of them, a key that expires, the swarm's
status) end to end."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from gateway_cluster import Procs, call, cluster_procs, member
from procs import QUICK_CLUSTER

from macp import ConfigError, InvalidParams, Unauthorized
from macp.gateway import Member
from macp.gateway.ops.swarms import SWARMS
from macp.testing import wait_until

pytestmark = pytest.mark.integration
__all__ = ["cluster_procs", "member"]  # the fixtures, used by name

if TYPE_CHECKING:
    from typing import Any


def test_the_seed_scenario_end_to_end(member: Member, cluster_procs: Procs) -> None:
    voters = {"class": "agents:Voter", "count": 2, "role": "council"}
    swarm = call(member, "swarm_init", {
        "name": "seed", "topology": "mesh",
        "agents": [voters, {"class": "agents:Squarer"}, {"class": "agents:Echo", "name": "scribe"}],
    })  # fmt: skip
    assert swarm == {"name": "seed", "topology": "mesh", "count": 4, "agents": [
        "seed-voter-1@w1", "seed-voter-2@w1", "seed-squarer-1@w1", "scribe@w1",
    ]}  # fmt: skip
    registered = {a["address"]: a for a in member.cluster.find(group="seed")}
    assert set(registered) == set(swarm["agents"])
    assert registered["seed-voter-1@w1"]["role"] == "council"

    more = call(member, "agent_spawn", {"class": "agents:Voter", "name": "seed-voter-3",
                                        "group": "seed", "role": "council"})  # fmt: skip
    assert more == {"address": "seed-voter-3@w1", "node": "w1", "class": "agents:Voter"}

    submitted = call(member, "task_orchestrate", {
        "type": "vote", "body": {"x": 7}, "role": "council", "consensus": "majority",
    })  # fmt: skip
    answer = call(member, "task_result", {"task_id": submitted["task_id"], "wait_s": 20})
    assert answer["result"] == 49
    voted = call(member, "task_status", {"task_id": submitted["task_id"]})["expected"]
    assert sorted(voted) == ["seed-voter-1@w1", "seed-voter-2@w1", "seed-voter-3@w1"]

    call(member, "memory_store", {"namespace": "seed", "key": "verdict", "value": 49,
                                  "ttl_s": 0.5})  # fmt: skip
    assert call(member, "memory_retrieve", {"namespace": "seed", "key": "verdict"})["value"] == 49
    wait_until(
        lambda: not call(member, "memory_retrieve", {"namespace": "seed", "key": "verdict"})[
            "found"
        ],
        10, "the verdict did not expire",
    )  # fmt: skip

    status = call(member, "swarm_status", {"name": "seed"})
    assert status["topology"] == "mesh"
    assert sorted(a["address"] for a in status["agents"]) == sorted(
        [*swarm["agents"], "seed-voter-3@w1"]
    )
    assert status["count"] == 5
    assert status["by_status"] == {"available": 5}
    assert status["missing"] == []
    assert all(a["node"] == "w1" for a in status["agents"])

    # the declaration is the memory store's: a gateway started afresh knows the swarm
    assert cluster_procs.worker.address is not None
    with Member.join(cluster_procs.worker.address, settings=QUICK_CLUSTER) as again:
        assert call(again, "swarm_status", {"name": "seed"})["count"] == 5
    assert member.cluster.memory("get", namespace=SWARMS, key="seed")["value"]["topology"] == "mesh"


def test_a_swarm_whose_agent_cannot_be_spawned_is_not_left_half_made(member: Member) -> None:
    arguments: dict[str, Any] = {"name": "half", "agents": [
        {"class": "agents:Echo", "name": "half-first"}, {"class": "agents:Relay", "node": "w1"},
    ]}  # fmt: skip
    with pytest.raises(Unauthorized, match=r"does not allow spawning 'agents:Relay'"):
        call(member, "swarm_init", arguments)
    wait_until(lambda: not member.cluster.find(group="half"), 10, "half-first was left running")
    with pytest.raises(ConfigError, match=r"^no swarm named 'half'; swarm_init declares one"):
        call(member, "swarm_status", {"name": "half"})


def test_a_swarm_is_declared_once(member: Member) -> None:
    call(member, "swarm_init", {"name": "once", "agents": [{"class": "agents:Echo"}]})
    with pytest.raises(ConfigError, match=r"^swarm 'once' exists already"):
        call(member, "swarm_init", {"name": "once", "agents": [{"class": "agents:Echo"}]})
    with pytest.raises(InvalidParams, match=r"^swarm_init: 'topology' must be one of mesh"):
        call(member, "swarm_init", {"name": "x", "topology": "blob",
                                    "agents": [{"class": "agents:Echo"}]})  # fmt: skip
    with pytest.raises(InvalidParams, match=r"^swarm_init: 'agents\[0\].class' is required"):
        call(member, "swarm_init", {"name": "x", "agents": [{"count": 2}]})


def test_a_class_the_node_does_not_allow_is_not_spawned(member: Member) -> None:
    with pytest.raises(Unauthorized, match=r"node 'w1' does not allow spawning 'agents:Relay'"):
        call(member, "agent_spawn", {"class": "agents:Relay", "node": "w1"})
    with pytest.raises(ConfigError, match=r"no live node allows spawning 'agents:Relay'"):
        call(member, "agent_spawn", {"class": "agents:Relay"})
    with pytest.raises(InvalidParams, match=r"^agent_spawn: 'class' is required"):
        call(member, "agent_spawn", {"name": "x"})
    first = call(member, "agent_spawn", {"class": "agents:Squarer"})["address"]
    second = call(member, "agent_spawn", {"class": "agents:Squarer"})["address"]
    assert first.startswith("squarer-")
    assert second != first
    assert {first, second} <= {a["address"] for a in member.cluster.agents()}
