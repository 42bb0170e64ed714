"""``macp.connect`` from a script to a cluster of node processes: tasks, find, control."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from procs import QUICK_CLUSTER

import macp
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.testing import LocalCluster, NodeProcess

pytestmark = pytest.mark.integration

USERS = ["echo@head", "sq1@head", "sq2@w1"]


@pytest.fixture
def cluster_procs(local_cluster: Callable[..., LocalCluster]) -> tuple[NodeProcess, NodeProcess]:
    """Process "head" (control plane, echo, sq1) and process "w1" (sq2), sq1 and sq2 being
    Squarers; returns once every agent is registered."""
    local = local_cluster(
        {"w1": {"sq2": "agents:Squarer"}},
        head={"echo": "agents:Echo", "sq1": "agents:Squarer"},
        processes=True,
        settings=QUICK_CLUSTER,
    )
    assert sorted(local.agents()) == USERS
    return local.process("head"), local.process("w1")


def _available(cluster: macp.Cluster) -> set[str]:
    return {r["address"] for r in cluster.find(status="available")}


def test_tasks_submitted_through_connect_run_on_the_capable_agents(
    cluster_procs: tuple[NodeProcess, NodeProcess],
) -> None:
    head, _ = cluster_procs
    assert head.address is not None
    with macp.connect(head.address) as cluster:
        assert cluster.head == "head"
        task = cluster.submit("square", {"x": 7}, capabilities=["square"])
        result = task.result(timeout_s=10)
        assert result["square"] == 49
        assert result["by"] in {"sq1@head", "sq2@w1"}
        status = task.status()
        assert (status["id"], status["state"], status["attempts"]) == (task.id, "succeeded", 1)
        assert status["agent"] == result["by"]
        assert cluster.status(task.id)["state"] == "succeeded"

        tasks = [cluster.submit("square", {"x": i}, capabilities=["square"]) for i in range(12)]
        results = [t.result(timeout_s=10) for t in tasks]
        assert [r["square"] for r in results] == [i * i for i in range(12)]
        assert {r["by"] for r in results} == {"sq1@head", "sq2@w1"}  # both took work
        done = {t["id"] for t in cluster.tasks(["succeeded"])}
        assert {t.id for t in tasks} | {task.id} <= done


def test_a_task_with_a_bad_body_fails_with_the_agents_error(
    cluster_procs: tuple[NodeProcess, NodeProcess],
) -> None:
    head, _ = cluster_procs
    assert head.address is not None
    with macp.connect(head.address) as cluster:
        task = cluster.submit("square", {"y": 1}, capabilities=["square"], max_retries=0)
        with pytest.raises(
            macp.PoisonMessage,
            match=rf"^task {task.id} \(square\) failed 1 times; last: AgentError: KeyError: 'x'$",
        ) as info:
            task.result(timeout_s=10)
        last_error = info.value.data["last_error"]
        assert isinstance(last_error, dict)
        assert last_error["data"] == {
            "remote_type": "KeyError",
            "remote_message": "'x'",
        }
        assert task.status()["state"] == "failed"


def test_find_through_connect_filters_the_registry(
    cluster_procs: tuple[NodeProcess, NodeProcess],
) -> None:
    head, _ = cluster_procs
    assert head.address is not None
    with macp.connect(head.address) as cluster:
        squarers = cluster.find(capabilities=["square"])
        assert sorted(r["address"] for r in squarers) == ["sq1@head", "sq2@w1"]
        assert {r["role"] for r in squarers} == {"squarer"}
        assert [r["address"] for r in cluster.find(capabilities=["square"], node="w1")] == [
            "sq2@w1"
        ]
        assert [r["address"] for r in cluster.find(role="squarer", node="head")] == ["sq1@head"]
        assert cluster.find(capabilities=["square"], status="offline") == []
        assert {r["address"] for r in cluster.agents()} >= set(USERS)


def test_pause_and_resume_all_reach_every_user_agent_and_a_task_waits_in_between(
    cluster_procs: tuple[NodeProcess, NodeProcess],
) -> None:
    head, _ = cluster_procs
    assert head.address is not None
    with macp.connect(head.address) as cluster:
        paused = cluster.control("pause", "all")
        assert paused == {a: {"ok": True, "result": {"state": "paused"}} for a in USERS}
        wait_until(
            lambda: {r["address"] for r in cluster.find(status="paused")} == set(USERS),
            5,
            "the registry does not show every user agent paused",
        )
        # The control plane is not paused by "all": it still takes and explains the task.
        task = cluster.submit("square", {"x": 3}, capabilities=["square"])
        status = task.status()
        assert status["state"] == "pending"
        assert status["wait_reason"] == (
            "no agent with capabilities [square] is available (2 are paused)"
        )

        resumed = cluster.control("resume", "all")
        assert resumed == {a: {"ok": True, "result": {"state": "running"}} for a in USERS}
        assert task.result(timeout_s=10)["square"] == 9


def test_control_reaches_one_agent_or_a_role_and_refuses_unknown_targets(
    cluster_procs: tuple[NodeProcess, NodeProcess],
) -> None:
    head, _ = cluster_procs
    assert head.address is not None
    with macp.connect(head.address) as cluster:
        answers = cluster.control("status", "sq2")
        assert list(answers) == ["sq2@w1"]
        status = answers["sq2@w1"]
        assert status["ok"] is True
        assert (status["result"]["address"], status["result"]["state"]) == ("sq2@w1", "running")
        assert status["result"]["capabilities"] == ["square"]

        by_role = cluster.control("configure", "role:squarer", {"level": 2})
        assert by_role == {
            "sq1@head": {"ok": True, "result": {"config": {"level": 2}}},
            "sq2@w1": {"ok": True, "result": {"config": {"level": 2}}},
        }
        with pytest.raises(
            macp.InvalidParams, match=r"^no registered agent matches target 'nobody'$"
        ):
            cluster.control("status", "nobody")
        with pytest.raises(
            macp.InvalidParams,
            match=r"^'command' must be one of start, stop, pause, resume, configure, status, "
            r"reset, restart, not 'explode'$",
        ):
            cluster.control("explode", "all")


def test_connect_through_a_member_that_is_not_the_head_reaches_the_control_plane(
    cluster_procs: tuple[NodeProcess, NodeProcess],
) -> None:
    _, worker = cluster_procs
    assert worker.address is not None
    with macp.connect(worker.address) as cluster:
        assert cluster.head == "head"
        task = cluster.submit("square", {"x": 5}, capabilities=["square"])
        assert task.result(timeout_s=10)["square"] == 25


def test_connect_to_a_node_without_a_control_plane_is_a_config_error(
    procs: Callable[..., NodeProcess],
) -> None:
    plain = procs("plain", "--agent", "echo=agents:Echo")
    assert plain.address is not None
    with pytest.raises(
        macp.ConfigError,
        match=r"^no control plane at tcp://127\.0\.0\.1:\d+: node 'plain' there knows no head; "
        r"start one node of the cluster with --control-plane$",
    ):
        macp.connect(plain.address)


def test_connect_to_an_address_where_no_node_answers_times_out() -> None:
    # Port 1 is privileged and unused: the client's DEALER never connects.
    with pytest.raises(
        macp.AskTimeout,
        match=r"^no answer from tcp://127\.0\.0\.1:1 within 0\.5 s; is a node running there\?$",
    ):
        macp.connect("tcp://127.0.0.1:1", timeout_s=0.5)


_CONNECT_NONSENSE = """
import macp
try:
    macp.connect("nonsense", timeout_s=1)
except macp.ConfigError as e:
    print(f"ConfigError: {e}")
"""


def test_connect_to_a_malformed_address_is_a_config_error_naming_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CONNECT_NONSENSE],
        capture_output=True,
        text=True,
        timeout=4,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ConfigError: ")
    assert "'nonsense'" in done.stdout
