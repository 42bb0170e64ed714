"""Stuck agents are recovered: a handler that outlives its deadline plus a grace is abandoned
and a fresh incarnation takes the name and the mailbox; ``restart`` is handled by the agent's
supervisor, so it works on an agent stuck in a handler. Real nodes, real threads, and two node
processes driven by the ``macp`` command."""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from procs import QUICK_CLUSTER
from topology_procs import macp_cli

import macp
from macp import ChildSpec, Cluster, Settings, SupervisorSpec, handler, start_control_plane
from macp.testing import Probe, ProbedAgent, capture_logs, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp import Node
    from macp.testing import LocalCluster

pytestmark = pytest.mark.integration

GRACE_S = 0.2
TICK_S = 0.05
STUCK = Settings(
    strict=True,
    ask_timeout_s=5.0,
    supervisor_check_interval_s=TICK_S,
    abandon_grace_s=GRACE_S,
    heartbeat_interval_s=0.1,
    acceptable_pause_s=0.2,
)


class Blocker(ProbedAgent):
    """``block`` waits at the probe's gate; ``echo`` answers at once. Records its life in the
    probe, each event with the incarnation it happened in."""

    @property
    def incarnation(self) -> macp.Wire:
        return self.record()["incarnation"]

    def on_start(self) -> None:
        self.probe.record(("start", self.incarnation))

    def on_stop(self) -> None:
        self.probe.record(("stop", self.incarnation))

    @handler("block")
    def block(self, body: macp.Wire) -> macp.Wire:
        self.probe.record(("blocking", body, self.incarnation))
        self.probe.wait_open(timeout_s=60)
        self.probe.record(("released", body, self.incarnation))
        return body

    @handler("echo")
    def echo(self, body: macp.Wire) -> macp.Wire:
        self.probe.record(("echo", body, self.incarnation))
        return body


@pytest.fixture
def stuck_node(make_node: Callable[..., Node], probe: Probe) -> Node:
    """Node "head"; the probe's gates open before it stops (an abandoned thread ends once its
    handler returns)."""
    return make_node("head", settings=STUCK)


def spawn(node: Node, name: str, probe: Probe, **kw: Any) -> str:
    """Spawn a Blocker; its incarnation (its ``on_start`` has run when ``spawn`` returns)."""
    node.spawn(Blocker, name, probe=probe, **kw)
    return starts(probe)[-1]


def starts(probe: Probe) -> list[str]:
    """The incarnations started so far, in order."""
    return [e[1] for e in probe.events if e[0] == "start"]


def threads_of(node: str, name: str) -> list[threading.Thread]:
    """The threads of agent ``name`` on ``node``: its incarnation's, and any abandoned one's."""
    return [t for t in threading.enumerate() if t.name == f"macp-{node}-{name}"]


def restarts(node: Node, name: str, supervisor: str | None = None) -> int:
    (count,) = [c["restarts"] for c in node.children(supervisor) if c["name"] == name]
    assert isinstance(count, int)
    return count


# -- abandonment ----------------------------------------------------------------------------------


def test_a_handler_that_outlives_its_task_timeout_is_abandoned_and_the_agent_recovers(
    stuck_node: Node, probe: Probe, tmp_path: Path
) -> None:
    node = stuck_node
    start_control_plane(node, journal=tmp_path / "journal.sqlite3")
    first = spawn(node, "b", probe)
    cluster = Cluster(node)
    cluster.wait_for_agents(["b@head"])

    with capture_logs() as logs:
        submitted = time.monotonic()
        task = cluster.submit("block", "first", agent="b@head", timeout_s=1.0, max_retries=0)
        with pytest.raises(
            macp.PoisonMessage,
            match=r"failed 1 times; last: AskTimeout: no result from b@head for 'block' "
            r"within 1 s$",
        ):
            task.result(timeout_s=10)

        def fresh() -> bool:
            (record,) = [r for r in cluster.agents() if r["address"] == "b@head"]
            return bool(record["incarnation"] != first and record["status"] == "available")

        # Within the task's timeout, the grace and a tick, plus 1 s for the registry's round
        # trip: well before the task.run ask's own deadline (2 * timeout + 1 s), 3 s.
        left_s = 1.0 + GRACE_S + TICK_S + 1.0 - (time.monotonic() - submitted)
        wait_until(fresh, left_s, "b is not available again as a new incarnation", poll_s=0.02)

    status = node.control("b", "status").get(timeout_s=2)
    assert (status["state"], status["queue_depth"]) == ("running", 0)
    second = cluster.submit("echo", "second", agent="b@head", timeout_s=5)
    assert second.result(timeout_s=10) == "second"

    assert node.counters["abandoned"] == 1
    assert restarts(node, "b") == 1
    abandoned = logs.one("agent.abandoned")
    assert abandoned["log_level"] == "warning"
    assert (abandoned["actor"], abandoned["type"], abandoned["task_id"]) == ("b", "block", task.id)
    assert abandoned["cause"] == "overdue"
    assert GRACE_S < abandoned["over_s"] < GRACE_S + 1.0

    # Released, the abandoned handler ends quietly: its late reply changes nothing, it takes no
    # message, it runs no on_stop, and its end is no exit for the supervisor to restart.
    (new,) = starts(probe)[1:]
    with capture_logs() as logs:
        probe.open()
        wait_until(lambda: len(threads_of("head", "b")) == 1, 10, "the abandoned thread runs on")
    assert [e["event"] for e in logs.find(actor="b")] == ["agent.abandoned_ended"]
    assert cluster.submit("echo", "third", agent="b@head", timeout_s=5).result(timeout_s=10) == (
        "third"
    )
    assert task.status()["state"] == "failed"
    assert probe.events == [
        ("start", first), ("blocking", "first", first), ("start", new), ("echo", "second", new),
        ("released", "first", first), ("echo", "third", new),
    ]  # fmt: skip
    assert (node.counters["abandoned"], restarts(node, "b")) == (1, 1)


def test_an_ask_past_its_deadline_and_the_grace_is_abandoned_and_queued_work_moves_on(
    stuck_node: Node, probe: Probe
) -> None:
    node = stuck_node
    first = spawn(node, "b", probe)
    stuck = node.ask("b", "block", "stuck", timeout_s=0.3)
    probe.wait_for(lambda ev: ("blocking", "stuck", first) in ev)
    queued = [node.ask("b", "echo", i, timeout_s=10) for i in range(5)]
    with pytest.raises(macp.AskTimeout):
        stuck.get()
    assert [f.get() for f in queued] == list(range(5))  # by the next incarnation, in order
    (new,) = starts(probe)[1:]
    assert [e[2] for e in probe.events if e[0] == "echo"] == [new] * 5
    assert node.control("b", "status").get(timeout_s=2)["state"] == "running"

    probe.open()
    wait_until(lambda: len(threads_of("head", "b")) == 1, 10, "the abandoned thread runs on")
    assert node.ask("b", "echo", "after", timeout_s=5).get() == "after"
    assert probe.events[-2:] == [("released", "stuck", first), ("echo", "after", new)]
    assert (node.counters["abandoned"], restarts(node, "b")) == (1, 1)


def test_work_held_behind_an_abandoned_handler_goes_to_the_next_incarnation_first(
    stuck_node: Node, probe: Probe
) -> None:
    node = stuck_node
    first = spawn(node, "b", probe)
    node.control("b", "pause").get(timeout_s=5)
    stuck = node.ask("b", "block", "stuck", timeout_s=0.5)
    held = [node.ask("b", "echo", f"held-{i}", timeout_s=10) for i in range(3)]
    wait_until(lambda: node.control("b", "status").get(timeout_s=5)["held"] == 4, 10,
               "the paused agent does not hold the four asks")  # fmt: skip
    node.control("b", "resume").get(timeout_s=5)  # handles held work: "block" first
    probe.wait_for(lambda ev: ("blocking", "stuck", first) in ev)
    later = [node.ask("b", "echo", f"later-{i}", timeout_s=10) for i in range(2)]
    with pytest.raises(macp.AskTimeout):
        stuck.get()
    assert [f.get() for f in held + later] == ["held-0", "held-1", "held-2", "later-0", "later-1"]
    (new,) = starts(probe)[1:]
    assert [e[1:] for e in probe.events if e[0] == "echo"] == [
        ("held-0", new), ("held-1", new), ("held-2", new), ("later-0", new), ("later-1", new)
    ]  # fmt: skip
    probe.open()
    wait_until(lambda: len(threads_of("head", "b")) == 1, 10, "the abandoned thread runs on")
    assert node.control("b", "status").get(timeout_s=5)["queue_depth"] == 0


def test_a_tell_has_no_deadline_so_it_is_never_abandoned_by_itself(
    stuck_node: Node, probe: Probe
) -> None:
    node = stuck_node
    told = spawn(node, "told", probe)
    node.tell("told", "block", "forever")
    probe.wait_for(lambda ev: ("blocking", "forever", told) in ev)
    asked = spawn(node, "asked", probe)
    node.ask("asked", "block", "briefly", timeout_s=0.1)
    probe.wait_for(lambda ev: ("blocking", "briefly", asked) in ev)
    # "asked" blocked later than "told", under the same supervisor's watch: once it is
    # abandoned, "told" has been blocked longer, and is still left alone.
    wait_until(lambda: node.counters["abandoned"] == 1, 10, "the ask was not abandoned")
    assert (restarts(node, "told"), restarts(node, "asked")) == (0, 1)
    with pytest.raises(macp.AskTimeout):
        node.control("told", "status", timeout_s=0.3).get()
    assert node.control("told", "restart", timeout_s=1.0).get()["abandoned"] is True


def test_an_abandonment_counts_toward_the_restart_intensity(stuck_node: Node, probe: Probe) -> None:
    node = stuck_node
    node.start_child(SupervisorSpec("team", [
        ChildSpec(Blocker, "b", kwargs={"probe": probe}),
    ], max_restarts=1, within_s=30))  # fmt: skip
    first = starts(probe)[-1]
    node.ask("b", "block", 1, timeout_s=0.1)
    wait_until(lambda: node.counters["abandoned"] == 1, 10, "the first ask was not abandoned")
    assert restarts(node, "b", "team") == 1
    second = starts(probe)[-1]
    node.ask("b", "block", 2, timeout_s=0.1)
    probe.wait_for(lambda ev: ("blocking", 2, second) in ev)
    # The second abandonment within 30 s is one too many: "team" gives up and is restarted.
    wait_until(lambda: restarts(node, "team") == 1, 10, "team did not give up")
    assert node.counters["abandoned"] == 2
    assert restarts(node, "b", "team") == 0
    assert node.ask("b", "echo", "fresh", timeout_s=5).get() == "fresh"
    assert [e[0] for e in probe.events] == [
        "start", "blocking", "start", "blocking", "start", "echo"
    ]  # fmt: skip
    assert first != second


# -- the restart command --------------------------------------------------------------------------


def test_restart_recovers_an_agent_stuck_in_a_handler(stuck_node: Node, probe: Probe) -> None:
    node = stuck_node
    first = spawn(node, "b", probe)
    node.tell("b", "block", "forever")
    probe.wait_for(lambda ev: ("blocking", "forever", first) in ev)
    with pytest.raises(macp.AskTimeout):
        node.control("b", "status", timeout_s=0.3).get()  # the agent's own mailbox is stuck

    with capture_logs() as logs:
        answer = node.control("b", "restart", timeout_s=1.0).get()
    (new,) = starts(probe)[1:]
    assert answer == {"incarnation": new, "previous": first, "abandoned": True}
    assert node.control("b", "status").get(timeout_s=2)["state"] == "running"
    assert node.ask("b", "echo", "fresh", timeout_s=5).get() == "fresh"
    assert (node.counters["abandoned"], restarts(node, "b")) == (1, 1)
    abandoned = logs.one("agent.abandoned")
    assert (abandoned["cause"], abandoned["type"], abandoned["over_s"]) == (
        "restart", "block", None
    )  # fmt: skip


def test_restart_of_a_healthy_agent_stops_it_cleanly_and_keeps_its_queued_messages(
    stuck_node: Node, probe: Probe
) -> None:
    node = stuck_node
    first = spawn(node, "b", probe)
    node.control("b", "pause").get(timeout_s=5)
    queued = [node.ask("b", "echo", i, timeout_s=10) for i in range(5)]
    wait_until(lambda: node.control("b", "status").get(timeout_s=5)["held"] == 5, 10,
               "the paused agent does not hold the five asks")  # fmt: skip

    answer = node.control("b", "restart").get(timeout_s=10)

    (new,) = starts(probe)[1:]
    assert answer == {"incarnation": new, "previous": first, "abandoned": False}
    assert [f.get() for f in queued] == list(range(5))
    assert [e for e in probe.events if e[0] in {"stop", "echo"}] == [
        ("stop", first), *[("echo", i, new) for i in range(5)]
    ]  # fmt: skip
    assert (node.counters["abandoned"], restarts(node, "b")) == (0, 1)


def test_restart_commands_do_not_count_toward_the_restart_intensity(
    stuck_node: Node, probe: Probe
) -> None:
    node = stuck_node
    node.start_child(SupervisorSpec("team", max_restarts=1, within_s=30))
    spawn(node, "b", probe, supervisor="team")
    for _ in range(3):
        assert node.control("b", "restart").get(timeout_s=10)["abandoned"] is False
    assert (restarts(node, "team"), restarts(node, "b", "team")) == (0, 3)


def test_restart_of_an_unknown_agent_fails_with_actor_not_found(stuck_node: Node) -> None:
    with pytest.raises(macp.ActorNotFound, match=r"^no actor named 'nobody' on node 'head'$"):
        stuck_node.control("nobody", "restart").get(timeout_s=5)


def test_restart_of_a_supervisor_is_refused_naming_it(stuck_node: Node) -> None:
    stuck_node.start_child(SupervisorSpec("team"))
    with pytest.raises(macp.ActorNotFound, match=r"^no actor named 'team' on node 'head'$"):
        stuck_node.control("team", "restart").get(timeout_s=5)


def test_a_static_child_is_restarted_as_well(make_node: Callable[..., Node], probe: Probe) -> None:
    spec = SupervisorSpec("root", [
        ChildSpec(Blocker, "b", kwargs={"probe": probe}),
    ])  # fmt: skip
    node = make_node("static", settings=STUCK, supervision=spec)
    first = probe.wait_count(1)[0][1]
    answer = node.control("b", "restart").get(timeout_s=10)
    assert (answer["previous"], answer["abandoned"]) == (first, False)
    assert node.ask("b", "echo", 1, timeout_s=5).get() == 1


# -- across node processes, with the macp command -------------------------------------------------


def test_macp_control_restart_recovers_a_stuck_agent_on_another_node(
    local_cluster: Callable[..., LocalCluster], env: dict[str, str]
) -> None:
    agents = {"echo": "agents:Echo", "sq": "agents:Squarer"}
    local = local_cluster({"w1": agents}, processes=True, settings=QUICK_CLUSTER)
    address, worker = local.address("head"), local.process("w1")
    cluster = local.cluster
    (before,) = [r["incarnation"] for r in cluster.agents() if r["address"] == "echo@w1"]
    cluster.node.tell("echo@w1", "hang")  # a tell: no deadline, never abandoned by itself
    with pytest.raises(macp.AskTimeout):  # queued behind "hang", in order
        cluster.node.ask("echo@w1", "echo", "queued", timeout_s=1.0).get()
    with pytest.raises(macp.AskTimeout):  # "hang" is in hand: not even status gets in
        cluster.node.control("echo@w1", "status", timeout_s=0.5).get()

    done = macp_cli("control", "restart", "echo@w1", "--connect", address, env=env)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    answer = json.loads(done.stdout)
    assert list(answer) == ["echo@w1"]
    assert answer["echo@w1"]["ok"] is True
    result = answer["echo@w1"]["result"]
    assert (result["previous"], result["abandoned"]) == (before, True)
    assert result["incarnation"] != before

    logged = worker.wait_for_log("agent.abandoned", actor="echo")
    assert (logged["cause"], logged["type"], logged["node"]) == ("restart", "hang", "w1")
    status = macp_cli("control", "status", "echo@w1", "--connect", address, env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["echo@w1"]["result"]["state"] == "running"
    echoed = cluster.node.ask("echo@w1", "echo", "hi", timeout_s=5).get()
    assert echoed["me"] == "echo@w1"
    wait_until(
        lambda: (
            {r["address"]: (r["status"], r["incarnation"]) for r in cluster.agents()}["echo@w1"]
            == ("available", result["incarnation"])
        ),
        10,
        "the registry does not show the new incarnation available",
    )

    # A group (here: every user agent) restarts each of its agents, each by its supervisor.
    every = cluster.control("restart", "all")
    assert set(every) == {"echo@w1", "sq@w1"}
    assert all(a["ok"] and a["result"]["abandoned"] is False for a in every.values())
    with pytest.raises(
        macp.InvalidParams,
        match=r"^the coordinator cannot restart itself \(coordinator@head is in "
        r"'group:control-plane'\): the answer would be lost with it; send restart to it "
        r"with Node.control instead$",
    ):
        cluster.control("restart", "group:control-plane")
