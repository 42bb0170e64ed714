"""The gateway's anti-jam checks, metrics and scatter tasks against a real cluster (a head
process, a worker process with real agents, the gateway a member node)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from gateway_cluster import Procs, call, cluster_procs, member
from procs import QUICK_CLUSTER_FLAGS

from macp import ActorNotFound, InvalidParams
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.gateway import Member
    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration
__all__ = ["cluster_procs", "member"]  # the fixtures, used by name


# -- task_orchestrate: a scatter over several agents, with a consensus ---------------------------


def test_a_consensus_over_agents_with_a_role_asks_only_them(member: Member) -> None:
    submitted = call(member, "task_orchestrate", {
        "type": "vote", "body": {"x": 3}, "role": "voter", "consensus": "majority",
    })  # fmt: skip
    answer = call(member, "task_result", {"task_id": submitted["task_id"], "wait_s": 20})
    assert answer["result"] == 9
    status = call(member, "task_status", {"task_id": submitted["task_id"]})
    assert sorted(status["expected"]) == ["v1@w1", "v2@w1", "v3@w1"]
    assert status["aggregation"] == "majority"


def test_parallelism_chooses_that_many_agents(member: Member) -> None:
    submitted = call(member, "task_orchestrate", {
        "type": "vote", "body": {"x": 4}, "role": "voter", "parallelism": 2, "priority": 3,
    })  # fmt: skip
    answer = call(member, "task_result", {"task_id": submitted["task_id"], "wait_s": 20})
    assert [a["result"] for a in answer["result"]] == [16, 16]
    status = call(member, "task_status", {"task_id": submitted["task_id"]})
    assert len(status["expected"]) == 2
    assert status["priority"] == 3


def test_a_scatter_to_agents_named(member: Member) -> None:
    submitted = call(member, "task_orchestrate", {
        "type": "vote", "body": {"x": 2}, "agents": ["v1@w1", "dis@w1"], "consensus": "all",
    })  # fmt: skip
    answer = call(member, "task_result", {"task_id": submitted["task_id"], "wait_s": 20})
    assert answer["result"] == [
        {"agent": "v1@w1", "ok": True, "result": 4},
        {"agent": "dis@w1", "ok": True, "result": "dis@w1"},
    ]


def test_a_scatter_refuses_what_it_cannot_honour(member: Member) -> None:
    with pytest.raises(InvalidParams, match=r"^task_orchestrate: 'idempotency_key' is not kept"):
        call(member, "task_orchestrate",
             {"type": "vote", "consensus": "majority", "idempotency_key": "k"})  # fmt: skip
    with pytest.raises(InvalidParams, match=r"^task_orchestrate: 'agent' runs it on one agent"):
        call(member, "task_orchestrate", {"type": "vote", "agent": "v1@w1", "parallelism": 2})
    with pytest.raises(InvalidParams, match=r"^task_orchestrate: 'consensus' must be one of all"):
        call(member, "task_orchestrate", {"type": "vote", "consensus": "most"})


# -- anti-jam checks ------------------------------------------------------------------------------


def test_a_responsive_agent_answers_a_timed_status_round_trip(member: Member) -> None:
    checked = call(member, "check_agent_responsiveness", {"agent": "echo1"})
    assert checked["agent"] == "echo1@w1"
    assert checked["responsive"] is True
    assert checked["state"] == "running"
    assert 0 < checked["round_trip_ms"] < 5000
    assert checked["why"].startswith("answered a status command in ")
    assert checked["heartbeat_age_ms"] is not None
    assert checked["heartbeat_stale"] is False
    with pytest.raises(InvalidParams, match=r"^check_agent_responsiveness: 'timeout_s' must be"):
        call(member, "check_agent_responsiveness", {"agent": "echo1", "timeout_s": 0})


def test_an_agent_stuck_in_a_handler_is_not_responsive(member: Member) -> None:
    call(member, "agent_message", {"agent": "stuck@w1", "type": "hang", "mode": "tell"})
    wait_until(
        lambda: "stuck@w1" in {a["address"] for a in member.cluster.find(status="busy")},
        10, "the stuck agent never got busy",
    )  # fmt: skip
    checked = call(member, "check_agent_responsiveness", {"agent": "stuck@w1", "timeout_s": 0.5})
    assert checked["responsive"] is False
    assert checked["round_trip_ms"] is None
    assert checked["status"] == "busy"
    assert checked["why"].startswith("no answer to a status command: AskTimeout")
    assert checked["error"]["code"] == -32004
    assert checked["heartbeat_stale"] is False  # its node is fine: the agent is the problem


def test_a_message_to_an_available_or_paused_agent_can_be_delivered(member: Member) -> None:
    checked = call(member, "check_message_recipient_status", {"agent": "echo1"})
    assert checked["deliverable"] is True
    assert checked["status"] == "available"
    assert checked["node_up"] is True
    assert checked["load"] == 0
    member.cluster.control("pause", "crew2@w1")
    try:
        paused = call(member, "check_message_recipient_status", {"agent": "crew2@w1"})
    finally:
        member.cluster.control("resume", "crew2@w1")
    assert paused["deliverable"] is True
    assert paused["why"].startswith("it is paused: a message is held")
    with pytest.raises(ActorNotFound, match=r"no agent named 'ghost' is registered"):
        call(member, "check_message_recipient_status", {"agent": "ghost"})


def test_a_message_to_an_agent_whose_node_is_down_cannot_be_delivered(
    member: Member, procs: Callable[..., NodeProcess], cluster_procs: Procs
) -> None:
    assert cluster_procs.head.address is not None
    lone = procs("w2", "--join", cluster_procs.head.address, "--agent", "lone=agents:Echo",
                 *QUICK_CLUSTER_FLAGS)  # fmt: skip
    member.cluster.wait_for_agents(["lone@w2"], timeout_s=20)
    assert call(member, "check_message_recipient_status", {"agent": "lone@w2"})["node_up"]
    lone.kill()

    def offline() -> bool:  # the node seen down, and the registry's record of it
        checked = call(member, "check_message_recipient_status", {"agent": "lone@w2"})
        return not checked["deliverable"] and checked["status"] == "offline"

    wait_until(offline, 15, "the agent of a killed node still looks deliverable")
    checked = call(member, "check_message_recipient_status", {"agent": "lone@w2"})
    assert checked["status"] == "offline"
    assert checked["node_up"] is False
    assert checked["why"] == "its node 'w2' is down (the registry has it offline)"


def test_a_flood_of_messages_is_flagged_from_the_monitors_counts(member: Member) -> None:
    blast = {"to": "seq@w1", "n": 300}
    call(member, "agent_message", {"agent": "relay", "type": "blast", "body": blast})
    arguments = {"window_s": 30, "flood_per_s": 5}

    def counted() -> bool:  # every message of the blast, in the monitor's sample
        seq = call(member, "check_message_frequency", arguments)["agents"].get("seq@w1", {})
        return bool(seq.get("messages", 0) >= 300)

    wait_until(counted, 15, "the monitor never counted the flood")
    answer = call(member, "check_message_frequency", arguments)
    assert answer["flooded"] == ["seq@w1"]
    assert answer["flooding"] is True
    assert answer["agents"]["seq@w1"]["rate_per_s"] >= 300 / 30
    assert answer["agents"]["echo1@w1"]["flood"] is False
    assert not any(a.endswith("@head") for a in answer["agents"])  # the control plane's own
    every = call(member, "check_message_frequency", {**arguments, "include_control_plane": True})
    assert "monitor@head" in every["agents"]
    one = call(member, "check_message_frequency", {**arguments, "agent": "seq"})
    assert list(one["agents"]) == ["seq@w1"]
    with pytest.raises(InvalidParams, match=r"^check_message_frequency: 'window_s' must be great"):
        call(member, "check_message_frequency", {"window_s": 0})


def test_metrics_are_the_monitors_figures_and_alerts(member: Member) -> None:
    submitted = call(member, "task_orchestrate", {"type": "square", "body": {"x": 5}})
    call(member, "task_result", {"task_id": submitted["task_id"], "wait_s": 20})

    def counted() -> bool:
        figures = call(member, "metrics", {"prefix": "tasks."})["metrics"]
        return any("type=square" in name for name in figures)

    wait_until(counted, 15, "the monitor never counted the task")
    answer = call(member, "metrics", {"prefix": "tasks."})
    assert all(name.startswith("tasks.") for name in answer["metrics"])
    assert answer["alerts"] == member.cluster.metrics()["alerts"]
    assert answer["firing"] == len(answer["alerts"])
    everything = call(member, "metrics", {})["metrics"]
    assert any(name.startswith("node.") for name in everything)
    with pytest.raises(InvalidParams, match=r"^metrics: unknown key 'prefx'"):
        call(member, "metrics", {"prefx": "tasks."})
