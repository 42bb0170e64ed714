"""Names and ports, with node processes: a name held by a live node is refused and the live node
is not disturbed, while a restarted node takes its name over; a listen address in use is
refused at once; a node that joins without --head finds the head and registers there."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
from procs import QUICK_CLUSTER, QUICK_CLUSTER_FLAGS, TESTS
from topology_procs import TopologyNodes, free_ports, macp_cli

import macp
from macp import AskTimeout, ConfigError, Node, Settings, handler, start_control_plane
from macp.actors.registry import CHANGED, LIST, SUBSCRIBE
from macp.testing import Probe, ProbedAgent, wait_until
from macp.transport.security import generate_keys

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration

THRESHOLD_S = 3 * QUICK_CLUSTER.heartbeat_interval_s + QUICK_CLUSTER.acceptable_pause_s


class Watcher(ProbedAgent):
    """Records the head's node.up / node.down events and the registry's changes."""

    def on_start(self) -> None:
        self.subscribe("node.up", "node.down")

    @handler("node.up")
    def up(self, body: dict[str, Any]) -> None:
        self.probe.record(("up", body["node"], None))

    @handler("node.down")
    def down(self, body: dict[str, Any]) -> None:
        self.probe.record(("down", body["node"], body["reason"]))

    @handler(CHANGED)
    def changed(self, body: dict[str, Any]) -> None:
        self.probe.record(("changed", body["address"], body["status"]))


def _head(probe: Probe, make_node: Callable[..., Node], tmp_path: Path, settings: Settings) -> Node:
    node = make_node("head", listen="tcp://127.0.0.1:0", settings=settings)
    start_control_plane(node, journal=tmp_path / "j.sqlite3")
    node.spawn(Watcher, "watcher", probe=probe)
    node.ask("registry", SUBSCRIBE, {"address": "watcher@head"}).get()
    return node


@pytest.fixture
def head(probe: Probe, make_node: Callable[..., Node], tmp_path: Path) -> Node:
    """Node "head" (in this process) with the control plane and a watcher of its events."""
    return _head(probe, make_node, tmp_path, QUICK_CLUSTER)


def _worker(head: Node, *flags: str) -> tuple[str, ...]:
    return ("--head", "head", "--peer", f"head={head.address}", "--agent", "echo=agents:Echo",
            *(flags or QUICK_CLUSTER_FLAGS))  # fmt: skip


def _status(head: Node, address: str) -> str | None:
    records = {r["address"]: r for r in head.ask("registry", LIST).get()}
    return records[address]["status"] if address in records else None


def _wait_available(head: Node, address: str) -> None:
    wait_until(lambda: _status(head, address) == "available", 20, f"{address} not available")


def _node_start(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``macp node start ARGS`` to its end; the result, and how long it ran."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "macp", "node", "start", *args, "--log-json"],
        capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )  # fmt: skip
    return done, time.monotonic() - started


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _held(name: str, address: str | None) -> str:
    return (
        f"error: node name {name!r} is held by a live node at {address}; pick another --name "
        "or stop that node"
    )


def _incarnation(head: Node, node: str) -> str:
    info: dict[str, Any] = head.ask_node(node, "node.info").get()
    return str(info["incarnation"])


# -- a name held by a live node -------------------------------------------------------------


def test_a_node_whose_name_a_live_node_holds_is_refused_and_the_live_one_is_not_disturbed(
    probe: Probe, head: Node, procs: Callable[..., NodeProcess]
) -> None:
    w1 = procs("w1", *_worker(head))
    _wait_available(head, "echo@w1")
    incarnation = _incarnation(head, "w1")
    mark = len(probe.events)

    done, _ = _node_start("--name", "w1", "--listen", "tcp://127.0.0.1:0", *_worker(head))

    assert done.returncode == 2, done.stderr
    assert _errors(done.stderr) == [_held("w1", w1.address)]

    # The live w1 was never found down, nor its agent offline, while the duplicate tried nor
    # for three times the time it takes to find a node down after.
    def disturbed(events: list[Any]) -> bool:
        return any(e[1] in {"w1", "echo@w1"} for e in events[mark:])

    with pytest.raises(AskTimeout):
        probe.wait_for(disturbed, 3 * THRESHOLD_S)
    assert _status(head, "echo@w1") == "available"
    assert _incarnation(head, "w1") == incarnation
    assert head.ask("echo", "echo", 1).get()["me"] == "echo@w1"
    assert w1.logs("node.down") == []
    assert w1.running()


CLUSTER = """\
name: names
nodes:
  - {name: head, listen: "tcp://127.0.0.1:0", head: true}
  - {name: w1, listen: "tcp://127.0.0.1:0"}
  - {name: w2, listen: "tcp://127.0.0.1:0"}
agents:
  - {name: echo, class: "agents:Echo", node: w1}
  - {name: echo2, class: "agents:Echo", node: w2}
settings: {heartbeat_interval_s: 0.1, acceptable_pause_s: 0.2}
"""


def test_a_second_w1_of_a_topology_file_is_refused_and_no_node_of_the_file_sees_a_change(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "names.yaml"
    path.write_text(CLUSTER)
    nodes = TopologyNodes(str(path), ["head", "w1", "w2"], env)
    try:
        nodes.start({"echo@w1", "echo2@w2"})
        elsewhere = f"tcp://127.0.0.1:{free_ports(1)[0]}"  # the file's w1, at another address
        where = {**nodes.addresses, "w1": elsewhere}
        overrides = [arg for n, a in where.items() for arg in ("--address", f"{n}={a}")]
        with macp.connect(nodes.head) as cluster:
            done = macp_cli("node", "start", "--config", str(path), "--node", "w1", *overrides,
                            "--log-json", env=env, timeout_s=30)  # fmt: skip
            assert done.returncode == 2, done.stderr
            assert _errors(done.stderr) == [_held("w1", nodes.addresses["w1"])]

            def flapped() -> bool:  # any node of the file saw w1 go, or its agent offline
                downs = [line for lines in nodes.stderr.values() for line in lines
                         if '"node.down"' in line]  # fmt: skip
                return bool(downs) or any(r["status"] != "available" for r in cluster.agents()
                                          if r["address"] == "echo@w1")  # fmt: skip

            with pytest.raises(AskTimeout):
                wait_until(flapped, 3 * THRESHOLD_S, poll_s=0.05)
        assert nodes.terminate() == {"head": 0, "w1": 0, "w2": 0}
    finally:
        nodes.stop()


def test_a_node_named_like_a_peer_it_was_given_is_refused_naming_that_peer(
    head: Node, procs: Callable[..., NodeProcess]
) -> None:
    w1 = procs("w1", *_worker(head))
    done, _ = _node_start("--name", "w1", "--listen", "tcp://127.0.0.1:0",
                          "--join", str(w1.address), *QUICK_CLUSTER_FLAGS)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert _errors(done.stderr) == [_held("w1", w1.address)]
    assert w1.logs("node.down") == []


def test_node_start_raises_naming_the_holder_and_leaves_nothing_running(
    make_node: Callable[..., Node],
) -> None:
    head = make_node("head", listen="tcp://127.0.0.1:0", settings=QUICK_CLUSTER)
    w1 = make_node("w1", listen="tcp://127.0.0.1:0", peers={"head": head.address},
                   settings=QUICK_CLUSTER)  # fmt: skip
    wait_until(lambda: head.peers().get("w1", {}).get("state") == "up", 10, "w1 never up")
    again = Node("w1", listen="tcp://127.0.0.1:0", peers={"head": str(head.address)},
                 settings=QUICK_CLUSTER)  # fmt: skip
    held = _held("w1", w1.address).removeprefix("error: ")
    with pytest.raises(ConfigError, match=f"^{re.escape(held)}$"):
        again.start()
    peer = head.peers()["w1"]
    assert (peer["address"], peer["state"]) == (w1.address, "up")


def test_a_killed_node_restarted_at_once_on_its_address_takes_its_name_over(
    probe: Probe,
    make_node: Callable[..., Node],
    tmp_path: Path,
    procs: Callable[..., NodeProcess],
) -> None:
    # Slow liveness (1 s), so that the restart is quicker than finding the old one down.
    head = _head(probe, make_node, tmp_path, Settings(strict=True, ask_timeout_s=5.0))
    flags = ("--heartbeat-s", "1", "--acceptable-pause-s", "1")
    w1 = procs("w1", *_worker(head, *flags))
    _wait_available(head, "echo@w1")
    old = _incarnation(head, "w1")

    w1.kill()
    assert w1.address is not None
    again = procs("w1", *_worker(head, *flags), listen=w1.address)

    wait_until(lambda: _incarnation(head, "w1") != old, 20, "the restarted w1 is not w1")
    _wait_available(head, "echo@w1")
    assert head.ask("echo", "echo", 2).get()["me"] == "echo@w1"
    assert again.running()


def test_a_killed_node_restarted_at_once_elsewhere_takes_its_name_over(
    probe: Probe,
    make_node: Callable[..., Node],
    tmp_path: Path,
    procs: Callable[..., NodeProcess],
) -> None:
    head = _head(probe, make_node, tmp_path, Settings(strict=True, ask_timeout_s=5.0))
    flags = ("--heartbeat-s", "1", "--acceptable-pause-s", "1")
    w1 = procs("w1", *_worker(head, *flags))
    _wait_available(head, "echo@w1")
    old = _incarnation(head, "w1")

    w1.kill()
    again = procs("w1", *_worker(head, *flags))  # another port: nothing answers at the old one

    assert again.address != w1.address
    wait_until(lambda: _incarnation(head, "w1") != old, 20, "the restarted w1 is not w1")
    assert head.peers()["w1"]["address"] == again.address
    _wait_available(head, "echo@w1")
    assert head.ask("echo", "echo", 3).get()["me"] == "echo@w1"


# -- a listen address in use ----------------------------------------------------------------


@pytest.fixture
def port_in_use() -> Any:
    """A port this test listens on (plain TCP)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_node_start_on_an_address_in_use_exits_2_within_1_s_saying_so(port_in_use: int) -> None:
    address = f"tcp://127.0.0.1:{port_in_use}"
    done, elapsed_s = _node_start("--name", "n", "--listen", address)
    in_use = f"address already in use: {address}; choose another port or stop what listens there"
    assert (done.returncode, _errors(done.stderr)) == (2, [f"error: {in_use}"])
    assert elapsed_s < 1.0


def test_a_node_on_an_address_in_use_fails_to_start_at_once_and_leaves_nothing_running(
    port_in_use: int, tmp_path: Path
) -> None:
    generate_keys(tmp_path / "keys", "n")
    address = f"tcp://127.0.0.1:{port_in_use}"
    for keys in (None, tmp_path / "keys"):  # with keys, the authenticator is stopped too
        node = Node("n", listen=address, keys=keys)
        started = time.monotonic()
        with pytest.raises(ConfigError, match=f"^address already in use: {address}; choose"):
            node.start()
        assert time.monotonic() - started < 1.0


# -- --join without --head ------------------------------------------------------------------


def test_a_node_that_joins_without_head_learns_the_head_and_registers_there(
    head: Node, procs: Callable[..., NodeProcess]
) -> None:
    w2 = procs("w2", "--join", str(head.address), "--agent", "echo=agents:Echo",
               *QUICK_CLUSTER_FLAGS)  # fmt: skip
    assert w2.ready["registered"] is True
    assert _status(head, "echo@w2") == "available"  # no wait: registered means it is there

    w1 = procs("w1", *_worker(head))  # joined through a member that is not the head
    w3 = procs("w3", "--join", str(w1.address), "--agent", "echo=agents:Echo",
               *QUICK_CLUSTER_FLAGS)  # fmt: skip
    assert w3.ready["registered"] is True
    assert _status(head, "echo@w3") == "available"


def test_a_node_without_a_head_says_it_is_not_registered(
    procs: Callable[..., NodeProcess],
) -> None:
    solo = procs("solo", "--agent", "echo=agents:Echo", *QUICK_CLUSTER_FLAGS)
    assert solo.ready["registered"] is False
