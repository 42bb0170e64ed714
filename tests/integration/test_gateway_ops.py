"""The gateway's operations against a real cluster (a head process, a worker process with real
agents, the gateway a member node): shared state, agents and workflows. Each operation's
effect is checked through another path (the Python API, the registry), and each refuses a bad
parameter with one sentence naming the field."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from gateway_cluster import call, cluster_procs, member

from macp import (
    ActorNotFound,
    InsufficientResources,
    InvalidParams,
    ResourceUnavailable,
    Run,
)
from macp.testing import wait_until

if TYPE_CHECKING:
    from macp.gateway import Member

pytestmark = pytest.mark.integration
__all__ = ["cluster_procs", "member"]  # the fixtures, used by name


# -- memory ---------------------------------------------------------------------------------------


def test_memory_stored_through_the_gateway_is_the_memory_stores_own(member: Member) -> None:
    stored = call(member, "memory_store", {"namespace": "notes", "key": "k1", "value": {"a": [1]}})
    assert stored == {"namespace": "notes", "key": "k1", "stored": True, "expires_at_ms": None}
    assert member.cluster.memory("get", namespace="notes", key="k1")["value"] == {"a": [1]}
    member.cluster.memory("put", namespace="notes", key="k2", value="two")
    assert call(member, "memory_retrieve", {"namespace": "notes", "key": "k2"}) == {
        "namespace": "notes", "key": "k2", "found": True, "value": "two", "expires_at_ms": None,
    }  # fmt: skip
    listed = call(member, "memory_list", {"namespace": "notes", "prefix": "k"})
    assert listed["keys"] == ["k1", "k2"]
    assert listed["count"] == 2
    assert call(member, "memory_delete", {"namespace": "notes", "key": "k1"})["deleted"] is True
    assert member.cluster.memory("get", namespace="notes", key="k1")["found"] is False
    assert call(member, "memory_delete", {"namespace": "notes", "key": "k1"})["deleted"] is False


def test_a_key_stored_with_a_ttl_expires(member: Member) -> None:
    stored = call(member, "memory_store", {"key": "brief", "value": 1, "ttl_s": 0.5})
    assert stored["namespace"] == "default"
    assert stored["expires_at_ms"] is not None
    assert call(member, "memory_retrieve", {"key": "brief"})["found"] is True
    wait_until(
        lambda: not call(member, "memory_retrieve", {"key": "brief"})["found"],
        10, "the key did not expire",
    )  # fmt: skip
    assert "brief" not in call(member, "memory_list", {})["keys"]


def test_memory_parameters_are_named_when_wrong(member: Member) -> None:
    with pytest.raises(InvalidParams, match=r"^memory_store: 'value' is required"):
        call(member, "memory_store", {"key": "k"})
    with pytest.raises(InvalidParams, match=r"^memory_store: 'ttl_s' must be greater than 0"):
        call(member, "memory_store", {"key": "k", "value": 1, "ttl_s": -1})
    with pytest.raises(InvalidParams, match=r"^memory_retrieve: 'key' is required"):
        call(member, "memory_retrieve", {"namespace": "notes"})


# -- locks and resources --------------------------------------------------------------------------


def test_a_lock_is_held_by_one_owner_until_released(member: Member) -> None:
    held = call(member, "lock_acquire", {"path": "/data/a", "owner": "alice", "ttl_s": 30})
    assert held["acquired"] is True
    assert member.cluster.resources("check_lock", path="/data/a")["owner"] == "alice"
    with pytest.raises(ResourceUnavailable, match=r"path '/data/a' is locked by 'alice'"):
        call(member, "lock_acquire", {"path": "/data/a", "owner": "bob"})
    with pytest.raises(ResourceUnavailable, match=r"only its owner may release it"):
        call(member, "lock_release", {"path": "/data/a", "owner": "bob"})
    assert call(member, "lock_check", {"path": "/data/a"})["locked"] is True
    released = call(member, "lock_release", {"path": "/data/a", "owner": "alice"})
    assert released == {"path": "/data/a", "owner": "alice", "released": True}
    assert member.cluster.resources("check_lock", path="/data/a")["locked"] is False
    with pytest.raises(InvalidParams, match=r"^lock_acquire: 'owner' is required"):
        call(member, "lock_acquire", {"path": "/data/a"})


def test_resources_are_leased_all_or_nothing(member: Member) -> None:
    member.cluster.resources("define_pool", pool="gpu", capacity=2)
    lease = call(member, "resource_allocate", {"owner": "trainer", "amounts": {"gpu": 2}})
    assert lease["owner"] == "trainer"
    assert member.cluster.resources("usage")["gpu"]["free"] == 0
    with pytest.raises(InsufficientResources, match=r"'gpu' is short by 1"):
        call(member, "resource_allocate", {"owner": "other", "amounts": {"gpu": 1}})
    assert call(member, "resource_usage", {})["pools"]["gpu"] == {
        "capacity": 2, "allocated": 2, "free": 0,
    }  # fmt: skip
    released = call(member, "resource_release", {"lease_id": lease["lease_id"]})
    assert released == {"lease_id": lease["lease_id"], "released": True}
    assert member.cluster.resources("usage")["gpu"]["free"] == 2
    with pytest.raises(InvalidParams, match=r"^resource_allocate: 'amounts.gpu' must be greater"):
        call(member, "resource_allocate", {"owner": "o", "amounts": {"gpu": 0}})
    with pytest.raises(
        InvalidParams, match=r"^resource_allocate: 'amounts' must list at least one"
    ):
        call(member, "resource_allocate", {"owner": "o", "amounts": {}})


# -- agents ---------------------------------------------------------------------------------------


def test_agents_are_listed_and_found_as_the_registry_knows_them(member: Member) -> None:
    listed = call(member, "agent_list", {})
    addresses = {a["address"] for a in listed["agents"]}
    assert {"echo1@w1", "v1@w1", "crew2@w1"} <= addresses
    assert "coordinator@head" not in addresses
    everything = call(member, "agent_list", {"include_control_plane": True})
    assert "coordinator@head" in {a["address"] for a in everything["agents"]}
    voters = call(member, "find_agents", {"capabilities": ["vote"], "role": "voter"})
    assert sorted(a["address"] for a in voters["agents"]) == ["v1@w1", "v2@w1", "v3@w1"]
    assert voters["count"] == 3
    crew = call(member, "find_agents", {"group": "crew", "status": "available", "node": "w1"})
    assert sorted(a["address"] for a in crew["agents"]) == ["crew1@w1", "crew2@w1"]
    assert call(member, "find_agents", {"group": "crew", "status": ["paused"]})["count"] == 0
    recent = call(member, "find_agents", {"capabilities": ["square"], "active_within_s": 5})
    assert [a["address"] for a in recent["agents"]] == ["sq1@w1"]
    with pytest.raises(InvalidParams, match=r"^find_agents: 'status\[0\]' must be one of avail"):
        call(member, "find_agents", {"status": "sleeping"})


def test_agent_status_is_the_registrys_record_and_the_agents_own(member: Member) -> None:
    status = call(member, "agent_status", {"agent": "echo1"})
    assert status["address"] == "echo1@w1"
    assert status["node"] == "w1"
    assert status["status"] == "available"
    assert status["live"]["state"] == "running"
    assert status["live"]["address"] == "echo1@w1"
    assert status["live_error"] is None
    with pytest.raises(ActorNotFound, match=r"no agent named 'nobody' is registered"):
        call(member, "agent_status", {"agent": "nobody"})
    with pytest.raises(ActorNotFound, match=r"no agent 'nobody@w1' is registered"):
        call(member, "agent_status", {"agent": "nobody@w1"})
    with pytest.raises(InvalidParams, match=r"^agent_status: 'agent' is required"):
        call(member, "agent_status", {})


def test_a_group_is_paused_and_resumed_by_control_commands(member: Member) -> None:
    def statuses() -> set[str]:
        return {a["status"] for a in member.cluster.find(group="crew")}

    paused = call(member, "agent_control", {"command": "pause", "target": "group:crew"})
    try:
        assert paused["ok"] is True
        assert sorted(paused["answers"]) == ["crew1@w1", "crew2@w1"]
        assert paused["answers"]["crew1@w1"]["result"] == {"state": "paused"}
        wait_until(lambda: statuses() == {"paused"}, 10, "the registry does not show them paused")
        one = call(member, "agent_control", {"command": "status", "target": "crew1@w1"})
        assert one["answers"]["crew1@w1"]["result"]["state"] == "paused"
    finally:
        resumed = call(member, "agent_control", {"command": "resume", "target": "role:deckhand"})
    assert sorted(resumed["answers"]) == ["crew1@w1", "crew2@w1"]
    wait_until(lambda: statuses() == {"available"}, 10, "the registry does not show them back")
    with pytest.raises(InvalidParams, match=r"^agent_control: 'command' must be one of start"):
        call(member, "agent_control", {"command": "explode", "target": "all"})
    with pytest.raises(InvalidParams, match=r"no registered agent matches target 'group:nobody'"):
        call(member, "agent_control", {"command": "status", "target": "group:nobody"})


def test_an_agent_is_told_or_asked_a_message(member: Member) -> None:
    asked = call(member, "agent_message", {"agent": "echo1", "type": "echo", "body": [1, 2]})
    assert asked["agent"] == "echo1@w1"
    assert asked["reply"]["echo"] == [1, 2]
    assert asked["reply"]["me"] == "echo1@w1"
    tell = {"agent": "seq@w1", "type": "seq", "body": {"from": "gw", "i": 0}, "mode": "tell"}
    told = call(member, "agent_message", tell)
    assert told == {"agent": "seq@w1", "type": "seq", "mode": "tell", "sent": True}
    wait_until(
        lambda: member.cluster.ask("seq@w1", "report").get().get("gw", {}).get("count") == 1,
        10, "the told message did not arrive",
    )  # fmt: skip
    with pytest.raises(InvalidParams, match=r"'type' 'control.pause' is a control command"):
        call(member, "agent_message", {"agent": "echo1", "type": "control.pause"})
    with pytest.raises(InvalidParams, match=r"^agent_message: 'mode' must be one of ask, tell"):
        call(member, "agent_message", {"agent": "echo1", "type": "echo", "mode": "shout"})


# -- workflows ------------------------------------------------------------------------------------

SQUARES = {
    "name": "squares",
    "steps": [
        {"id": "a", "type": "square", "body": {"x": "${input}"}, "capabilities": ["square"]},
        {"id": "b", "type": "square", "body": {"x": "${deps.a.square}"}, "depends_on": ["a"],
         "capabilities": ["square"]},
    ],
}  # fmt: skip


def test_a_workflow_defined_and_executed_runs_its_steps_on_real_agents(member: Member) -> None:
    assert call(member, "workflow_define", SQUARES) == {"name": "squares", "steps": ["a", "b"]}
    execute = {"workflow": "squares", "input": 3, "strategy": "sequential"}
    run_id = call(member, "workflow_execute", execute)["run_id"]
    result = Run(member.cluster, run_id).result(timeout_s=30)
    assert result == {"b": {"square": 81, "by": "sq1@w1"}}
    status = call(member, "workflow_status", {"run_id": run_id})
    assert status["state"] == "succeeded"
    assert status["chosen"]["strategy"] == "sequential"
    listed = call(member, "workflow_list", {})
    assert "squares" in listed["definitions"]
    assert run_id in {r["id"] for r in listed["runs"]}


def test_a_workflow_definition_is_checked_by_name(member: Member) -> None:
    cycle = {"name": "loop", "steps": [{"id": "a", "type": "t", "depends_on": ["b"]},
                                       {"id": "b", "type": "t", "depends_on": ["a"]}]}  # fmt: skip
    with pytest.raises(InvalidParams, match=r"workflow 'loop': the steps form a cycle"):
        call(member, "workflow_define", cycle)
    with pytest.raises(InvalidParams, match=r"^workflow_define: 'steps\[0\].type' is required"):
        call(member, "workflow_define", {"name": "w", "steps": [{"id": "a"}]})
    with pytest.raises(InvalidParams, match=r"^workflow_execute: give 'workflow' .* or 'defin"):
        call(member, "workflow_execute", {"input": 1})
    with pytest.raises(InvalidParams, match=r"no workflow 'never-defined' is defined"):
        call(member, "workflow_execute", {"workflow": "never-defined"})
    with pytest.raises(InvalidParams, match=r"^workflow_status: 'run_id' is required"):
        call(member, "workflow_status", {})


def test_a_run_is_paused_resumed_and_cancelled(member: Member) -> None:
    hold = {"name": "hold", "steps": [
        {"id": "wait", "type": "hang", "agent": "hanger@w1", "retries": 0},
        {"id": "after", "type": "echo", "agent": "echo1@w1", "depends_on": ["wait"]},
    ]}  # fmt: skip
    run_id = call(member, "workflow_execute", {"definition": hold, "concurrency": 1})["run_id"]
    run = Run(member.cluster, run_id)
    wait_until(lambda: run.status()["steps"]["wait"]["state"] == "running", 10, "never ran")
    assert run.status()["max_concurrency"] == 1
    assert call(member, "workflow_pause", {"run_id": run_id}) == {"run_id": run_id,
                                                                  "state": "paused"}  # fmt: skip
    assert run.status()["state"] == "paused"
    assert call(member, "workflow_resume", {"run_id": run_id})["state"] == "running"
    cancelled = call(member, "workflow_cancel", {"run_id": run_id})
    assert cancelled == {"run_id": run_id, "cancelled": True, "state": "cancelled"}
    assert run.status()["state"] == "cancelled"
    assert run.status()["steps"]["after"]["state"] != "succeeded"
