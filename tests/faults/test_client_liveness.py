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

    from macp.testing import NodeProcess

pytestmark = pytest.mark.fault

FAST = ("--heartbeat-s", "0.1", "--acceptable-pause-s", "0.3")
WINDOW_S = 3 * 1.0 + 1.0  # a client's defaults: 3 missed heartbeats of 1 s, plus 1 s of pause


def _cluster(procs: Callable[..., NodeProcess], tmp_path: Path) -> tuple[NodeProcess, str]:
    journal = str(tmp_path / "journal.sqlite3")
    head = procs("head", *FAST, "--control-plane", "--journal", journal)
    procs("w1", *FAST, "--head", "head", "--peer", f"head={head.address}",
          "--agent", "gate=agents:Gate")  # fmt: skip
    return head, journal


def _reachable(cluster: macp.Cluster) -> bool:
    try:
        cluster.node.ask_node("*", "node.info", timeout_s=1).get()
    except (macp.NodeDown, macp.AskTimeout):
        return False
    return True


def test_a_client_sees_its_node_die_at_once_and_reconnects_when_it_is_back(
    procs: Callable[..., NodeProcess], tmp_path: Path
) -> None:
    head, journal = _cluster(procs, tmp_path)
    assert head.address is not None
    with macp.connect(head.address) as cluster:
        cluster.wait_for_agents(["gate@w1"])
        flag = tmp_path / "open"  # the agent waits for it (until the end of the test)
        waiting = cluster.node.ask("gate@w1", "wait_file", {"path": str(flag)}, timeout_s=60)
        head.kill()
        killed = time.monotonic()
        with pytest.raises(macp.NodeDown, match="the node this client reaches the cluster"):
            waiting.get()
        assert time.monotonic() - killed < WINDOW_S
        start = time.monotonic()
        with pytest.raises(macp.NodeDown, match="is down; retry once it is back"):
            cluster.node.ask("gate@w1", "wait_file", {"path": "x"}, timeout_s=60).get()
        assert time.monotonic() - start < 1.0  # refused at once while the node is down

        procs("head", *FAST, "--control-plane", "--journal", journal, listen=head.address)
        wait_until(lambda: _reachable(cluster), 20, "the client did not reconnect")
        cluster.wait_for_agents(["gate@w1"])  # the same client, the restarted head
        flag.touch()  # the first wait ends (its answer is for an ask that failed), and then:
        answer = cluster.node.ask("gate@w1", "wait_file", {"path": str(flag)}, timeout_s=10)
        assert answer.get()["by"] == "gate@w1"


def test_a_task_result_read_waits_across_a_restart_of_the_head(
    procs: Callable[..., NodeProcess], tmp_path: Path
) -> None:
    head, journal = _cluster(procs, tmp_path)
    assert head.address is not None
    flag = tmp_path / "open"
    with macp.connect(head.address) as cluster:
        cluster.wait_for_agents(["gate@w1"])
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
        head.kill()
        procs("head", *FAST, "--control-plane", "--journal", journal, listen=head.address)
        flag.touch()
        reader.join(30)
        assert not reader.is_alive(), "result() still waits 30 s after the head came back"
        assert outcome.get("result") == {"opened": str(flag), "by": "gate@w1"}, outcome
        assert cluster.status(task.id)["node_failures"] == 1  # its attempt died with the head
