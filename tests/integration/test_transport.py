"""Nodes as real OS processes on 127.0.0.1: messaging, order, errors, failure and recovery."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

import macp
from macp import Context, Settings, handler
from macp.testing import Probe, ProbedAgent, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp import Node
    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration

HEARTBEAT = ("--heartbeat-s", "0.2", "--acceptable-pause-s", "0.4")
SETTINGS = Settings(strict=True, heartbeat_interval_s=0.2, acceptable_pause_s=0.4)
THRESHOLD_S = 3 * 0.2 + 0.4


class Watcher(ProbedAgent):
    """Records node.up / node.down events with the time they arrived."""

    def on_start(self) -> None:
        self.subscribe("node.up", "node.down")

    @handler("node.up")
    def up(self, body: dict[str, Any], ctx: Context) -> None:
        self.probe.record(("up", body["node"], time.monotonic(), ctx.sender))

    @handler("node.down")
    def down(self, body: dict[str, Any]) -> None:
        self.probe.record(("down", body["node"], time.monotonic(), body["reason"]))


def _agents(*specs: str) -> list[str]:
    return [arg for spec in specs for arg in ("--agent", spec)]


@pytest.fixture
def cluster(
    probe: Probe, procs: Callable[..., NodeProcess], make_node: Callable[..., Node]
) -> tuple[Node, NodeProcess, NodeProcess]:
    """This process's node "test" plus node processes "p1" and "p2", all peered."""
    node = make_node("test", listen="tcp://127.0.0.1:0", settings=SETTINGS)
    node.spawn(Watcher, "watcher", probe=probe)
    agents = _agents("echo=agents:Echo", "relay=agents:Relay", "seq=agents:Sequencer")
    p1 = procs("p1", *HEARTBEAT, "--peer", f"test={node.address}", *agents)
    p2 = procs("p2", *HEARTBEAT, "--peer", f"test={node.address}", "--peer", f"p1={p1.address}",
               *_agents("echo=agents:Echo", "relay=agents:Relay"))  # fmt: skip
    probe.wait_for(lambda ev: {("up", "p1"), ("up", "p2")} <= {e[:2] for e in ev})
    p1.wait_for_log("node.up", peer="p2")
    return node, p1, p2


def test_tell_and_ask_cross_nodes_in_both_directions(cluster: tuple[Node, Any, Any]) -> None:
    node, _, _ = cluster
    assert node.ask("echo@p1", "echo", 1).get()["me"] == "echo@p1"
    assert node.ask("echo@p2", "echo", 2).get()["me"] == "echo@p2"
    there = node.ask("relay@p1", "relay", {"to": "echo@p2", "type": "echo", "body": "x"}).get()
    back = node.ask("relay@p2", "relay", {"to": "echo@p1", "type": "echo", "body": "y"}).get()
    assert (there["sender"], there["me"]) == ("relay@p1", "echo@p2")
    assert (back["sender"], back["me"]) == ("relay@p2", "echo@p1")
    node.tell("seq@p1", "seq", {"from": "one-tell", "i": 0})
    wait_until(lambda: "one-tell" in node.ask("seq@p1", "report").get())


def test_order_is_kept_per_sender_and_receiver_over_10000_messages(
    cluster: tuple[Node, Any, Any],
) -> None:
    node, _, _ = cluster
    assert (
        node.ask("relay@p2", "blast", {"to": "seq@p1", "n": 10_000}, timeout_s=30).get() == 10_000
    )
    for i in range(10_000):
        node.tell("seq@p1", "seq", {"from": "test", "i": i})
    expected = {"test": {"count": 10_000, "in_order": True},
                "relay@p2": {"count": 10_000, "in_order": True}}  # fmt: skip
    wait_until(lambda: node.ask("seq@p1", "report").get() == expected, 30)


def test_a_remote_handler_error_is_raised_again_with_its_class_and_message(
    cluster: tuple[Node, Any, Any],
) -> None:
    node, _, _ = cluster
    with pytest.raises(macp.AgentError, match=r"ValueError: cannot handle 3$") as info:
        node.ask("echo@p1", "fail", 3).get()
    assert (info.value.remote_type, info.value.remote_message) == ("ValueError", "cannot handle 3")
    with pytest.raises(macp.InvalidParams, match=r"^text is required$"):
        node.ask("echo@p2", "refuse").get()
    with pytest.raises(macp.ActorNotFound, match="no actor named 'ghost' on node 'p1'"):
        node.ask("ghost@p1", "echo").get()
    # An error a handler lets through keeps its class across two hops.
    with pytest.raises(macp.UnknownMessageType, match="echo@p2 has no handler for 'nope'"):
        node.ask("relay@p1", "relay", {"to": "echo@p2", "type": "nope"}).get()


def test_an_ask_to_an_unknown_node_fails_at_once_with_node_down(
    cluster: tuple[Node, Any, Any],
) -> None:
    node, _, _ = cluster
    with pytest.raises(macp.NodeDown, match="node 'nowhere' is not a known peer of 'test'"):
        node.ask("echo@nowhere", "echo").get(timeout_s=10)


def test_a_killed_node_is_found_down_its_asks_fail_and_it_comes_back(
    probe: Probe, cluster: tuple[Node, Any, Any], procs: Callable[..., NodeProcess]
) -> None:
    node, p1, p2 = cluster
    hanging = node.ask("echo@p2", "hang", timeout_s=30)
    killed_at = time.monotonic()
    p2.kill()
    for _ in range(3):  # queued for p2 before it is found down: never for its successor
        node.tell("echo@p2", "hang")
    with pytest.raises(macp.NodeDown, match="node 'p2' went down"):
        hanging.get()
    events = probe.wait_for(lambda ev: any(e[:2] == ("down", "p2") for e in ev))
    down_at = next(e[2] for e in events if e[:2] == ("down", "p2"))
    assert down_at - killed_at < THRESHOLD_S + 1.0  # the window, plus slack for a busy machine
    p1.wait_for_log("node.down", peer="p2")
    with pytest.raises(macp.NodeDown, match="node 'p2' is down"):
        node.ask("echo@p2", "echo").get(timeout_s=10)

    assert p2.address is not None
    procs("p2", *HEARTBEAT, "--peer", f"test={node.address}", "--peer", f"p1={p1.address}",
          "--agent", "echo=agents:Echo", listen=p2.address)  # fmt: skip
    probe.wait_for(lambda ev: ev[-1][:2] == ("up", "p2"))
    assert node.ask("echo@p2", "echo", "again").get()["echo"] == "again"
    relayed = node.ask("relay@p1", "relay", {"to": "echo@p2", "type": "echo", "body": 1}).get()
    assert relayed["me"] == "echo@p2"


def test_a_node_that_joins_learns_every_member(
    probe: Probe, cluster: tuple[Node, Any, Any], procs: Callable[..., NodeProcess]
) -> None:
    node, p1, _ = cluster
    p3 = procs("p3", *HEARTBEAT, "--join", str(p1.address), "--agent", "echo=agents:Echo")
    p3.wait_for_log("node.up", peer="p2")
    p3.wait_for_log("node.up", peer="test")
    probe.wait_for(lambda ev: any(e[:2] == ("up", "p3") for e in ev))
    assert (
        node.ask("relay@p2", "relay", {"to": "echo@p3", "type": "echo", "body": 3}).get()["me"]
        == "echo@p3"
    )
    assert node.ask("echo@p3", "echo", 4).get()["me"] == "echo@p3"


def _ping(address: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "macp", "node", "ping", address, *flags],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_node_ping_shows_name_uptime_peers_and_actors(cluster: tuple[Node, Any, Any]) -> None:
    _, p1, _ = cluster
    result = _ping(str(p1.address), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["name"], info["address"], info["actors"]) == (
        "p1",
        p1.address,
        ["echo", "relay", "seq"],
    )
    assert {name: peer["state"] for name, peer in info["peers"].items()} == {
        "test": "up",
        "p2": "up",
    }
    assert info["uptime_s"] > 0
    text = _ping(str(p1.address)).stdout
    assert "node     p1 at tcp://127.0.0.1:" in text
    assert "actors   echo, relay, seq" in text


def test_node_ping_of_a_silent_address_fails_with_a_clear_message() -> None:
    result = _ping("tcp://127.0.0.1:9", "--timeout-s", "0.5")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: no answer from tcp://127.0.0.1:9 within 0.5 s; is the node running there?"
    )


def test_sigterm_stops_the_node_cleanly_with_exit_code_0(
    procs: Callable[..., NodeProcess],
) -> None:
    proc = procs("solo", "--agent", "echo=agents:Echo", "--agent", "relay=agents:Relay")
    assert proc.terminate() == 0
    proc.wait_for_log("node.stopped", exit_code=0)
    assert proc.logs("node.threads_left") == []


def test_bad_flags_exit_2_with_one_sentence_naming_the_flag() -> None:
    def start(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "macp", "node", "start", "--name", "n", *args],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

    result = start("--listen", "tcp://127.0.0.1:0", "--peer", "p1")
    assert (result.returncode, result.stderr.strip()) == (
        2, "error: --peer 'p1' must be NAME=VALUE, e.g. --peer worker=tcp://10.0.0.2:5555",
    )  # fmt: skip
    result = start("--listen", "udp://x")
    assert result.returncode == 2
    assert "listen address 'udp://x' is invalid; use tcp://HOST:PORT" in result.stderr
    result = start("--listen", "tcp://127.0.0.1:0", "--agent", "a=nosuchmodule:X")
    assert result.returncode == 2
    assert "--agent a: cannot import module 'nosuchmodule'" in result.stderr
