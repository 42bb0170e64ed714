"""A client sees the node it reaches the cluster through die: its waiting asks fail with
NodeDown within the heartbeat window (not after their timeout), new asks fail at once, it
reconnects by itself when the node is back, and a result read waits across a head restart."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

import macp
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp.testing import LocalCluster

pytestmark = pytest.mark.fault

WINDOW_S = 3 * 1.0 + 1.0  # a client's defaults: 3 missed heartbeats of 1 s, plus 1 s of pause


GATED = {"w1": {"gate": "agents:Gate"}}


def _reachable(cluster: macp.Cluster) -> bool:
    try:
        cluster.node.ask_node("*", "node.info", timeout_s=1).get()
    except (macp.NodeDown, macp.AskTimeout):
        return False
    return True


def test_a_client_sees_its_node_die_at_once_and_reconnects_when_it_is_back(
    local_cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    local = local_cluster(GATED, processes=True)
    cluster = local.cluster  # a client connected to the head
    flag = tmp_path / "open"  # the agent waits for it (until the end of the test)
    waiting = cluster.node.ask("gate@w1", "wait_file", {"path": str(flag)}, timeout_s=60)
    local.kill("head")
    killed = time.monotonic()
    with pytest.raises(macp.NodeDown, match="the node this client reaches the cluster"):
        waiting.get()
    assert time.monotonic() - killed < WINDOW_S
    start = time.monotonic()
    with pytest.raises(macp.NodeDown, match="is down; retry once it is back"):
        cluster.node.ask("gate@w1", "wait_file", {"path": "x"}, timeout_s=60).get()
    assert time.monotonic() - start < 1.0  # refused at once while the node is down

    local.restart("head")  # on its address and journal; it waits for the client too
    wait_until(lambda: _reachable(cluster), 20, "the client did not reconnect")
    cluster.wait_for_agents(["gate@w1"])  # the same client, the restarted head
    flag.touch()  # the first wait ends (its answer is for an ask that failed), and then:
    answer = cluster.node.ask("gate@w1", "wait_file", {"path": str(flag)}, timeout_s=10)
    assert answer.get()["by"] == "gate@w1"


def test_a_task_result_read_waits_across_a_restart_of_the_head(
    local_cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    local = local_cluster(GATED, processes=True)
    flag = tmp_path / "open"
    cluster = local.cluster
    task = cluster.submit("wait_file", {"path": str(flag)}, timeout_s=30)
    wait_until(lambda: task.status()["state"] == "running", 10, "the task did not start")
    outcome: dict[str, Any] = {}

    def read() -> None:
        try:
            outcome["result"] = task.result(timeout_s=60)
        except macp.MacpError as e:
            outcome["error"] = e

    reader = threading.Thread(target=read)
    reader.start()
    local.restart("head")  # killed, then started on its address and journal
    flag.touch()
    reader.join(30)
    assert not reader.is_alive(), "result() still waits 30 s after the head came back"
    assert outcome.get("result") == {"opened": str(flag), "by": "gate@w1"}, outcome
    assert cluster.status(task.id)["node_failures"] == 1  # its attempt died with the head
