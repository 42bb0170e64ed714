"""The public test helpers (macp.testing) on real nodes: probes handed to agents, a local
cluster in this process and as node processes, log capture."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from agents import Squarer

import macp
from macp import Agent, Node, handler
from macp.testing import (
    LocalCluster,
    LogEvents,
    NodeProcess,
    Probe,
    ProbedAgent,
    capture_logs,
    cluster_fixture,
)

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]


class Watched(ProbedAgent):
    """Records each start; ``hold`` waits at the probe's gate; ``crash`` kills it."""

    crash_on_error = True

    def on_start(self) -> None:
        self.probe.record(("started", self.name))

    @handler("hold")
    def hold(self, body: macp.Wire) -> macp.Wire:
        self.probe.record(("holding", body))
        self.probe.wait_open("hold")
        return body

    @handler("crash")
    def crash(self, _body: macp.Wire) -> None:
        raise RuntimeError("crashed on purpose")


class Chatty(Agent):
    @handler("say")
    def say(self, body: macp.Wire) -> None:
        self.log.info("chatty.said", what=body)


# -- probes ---------------------------------------------------------------------------------------


def test_a_restarted_agent_gets_the_same_probe_so_a_test_counts_its_restarts(
    node: Node, probe: Probe
) -> None:
    ref = node.spawn(Watched, "w", probe=probe)
    for restarts in (1, 2):
        ref.tell("crash")
        probe.wait_count(restarts + 1)
    assert probe.events == [("started", "w")] * 3
    assert [c["restarts"] for c in node.children() if c["name"] == "w"] == [2]


def test_an_agent_waits_at_a_gate_until_the_test_opens_it(node: Node, probe: Probe) -> None:
    ref = node.spawn(Watched, "w", probe=probe)
    reply = ref.ask("hold", "first")
    probe.wait_for(lambda events: ("holding", "first") in events)
    assert not reply.done()
    probe.open("hold")
    assert reply.get() == "first"
    assert ref.ask("hold", "second").get() == "second"  # an open gate stays open


def test_a_gate_not_opened_in_time_raises_ask_timeout_naming_it() -> None:
    with pytest.raises(
        macp.AskTimeout, match=r"^gate 'late' of the probe was not opened within 0.05 s$"
    ):
        Probe().wait_open("late", timeout_s=0.05)


def test_leaving_a_probe_opens_every_gate() -> None:
    with Probe() as probe:
        gates = [probe.gate("one"), probe.gate("two")]
        assert not any(gate.is_set() for gate in gates)
    assert all(gate.is_set() for gate in gates)


@pytest.mark.parametrize(
    ("given", "named"), [({}, "none"), ({"probe": threading.Event()}, "Event")]
)
def test_an_agent_spawned_without_a_probe_is_refused_naming_what_to_pass(
    node: Node, given: dict[str, Any], named: str
) -> None:
    with pytest.raises(
        macp.ConfigError,
        match=rf"^Watched takes a macp.testing.Probe as probe=, not {named}; "
        r"spawn it with node.spawn\(Watched, name, probe=Probe\(\)\)$",
    ):
        node.spawn(Watched, "w", **given)


# -- log capture ----------------------------------------------------------------------------------


def test_capture_logs_sees_a_real_node_logging_its_events() -> None:
    with capture_logs() as logs:
        node = Node("captured").start()
        node.stop()
    started = logs.one("node.started", node="captured")
    assert started["log_level"] == "info"
    assert logs.names()[-1] == "node.stopped"


def test_captured_events_are_found_by_name_and_fields_as_agents_log_them(node: Node) -> None:
    ref = node.spawn(Chatty, "chatty")
    with capture_logs() as logs:
        ref.tell("say", "hello")
        said = logs.wait_for("chatty.said", actor="chatty")
    assert (said["what"], said["node"], said["log_level"]) == ("hello", "test", "info")
    with pytest.raises(AssertionError, match=r"^0 log events 'chatty.said' with \{'what': 'bye'\}"):
        logs.one("chatty.said", what="bye")
    with pytest.raises(macp.AskTimeout, match=r"^no log event 'never' with \{\} within 0.05 s"):
        logs.wait_for("never", timeout_s=0.05)


def test_json_log_lines_are_read_as_events_and_other_lines_left_out() -> None:
    lines = ['{"event": "a.b", "n": 1}\n', "Traceback (most recent call last):\n", "[1]\n"]
    logs = LogEvents.from_json_lines(lines)
    assert list(logs) == [{"event": "a.b", "n": 1}]
    assert logs.find("a.b", n=2) == []


# -- the local cluster ----------------------------------------------------------------------------


def test_a_local_cluster_in_this_process_routes_tasks_to_every_node() -> None:
    with LocalCluster({"w1": {"sq": Squarer}}, head={"sq": Squarer}) as local:
        assert local.agents() == ["sq@head", "sq@w1"]
        assert local.node("head").peers()["w1"]["state"] == "up"
        done = local.cluster.submit("square", {"x": 3}, agent="sq@w1").result(timeout_s=10)
        assert done == {"square": 9, "by": "sq@w1"}
        journal = local.journal
        assert journal is not None
        assert journal.exists()
    assert not journal.parent.exists()  # its temporary directory is gone


def test_a_local_cluster_spawns_an_agent_with_a_probe_and_waits_until_it_is_routable(
    probe: Probe,
) -> None:
    with LocalCluster({"w1": {}}) as local:
        local.spawn("w1", Watched, "watched", probe=probe)
        assert probe.events == [("started", "watched")]
        assert local.cluster.submit("hold", "x", agent="watched@w1") is not None
        probe.wait_for(lambda events: ("holding", "x") in events)
        probe.open("hold")


def test_a_local_cluster_of_processes_survives_a_killed_node_and_restarts_it() -> None:
    nodes: dict[str, dict[str, type[Agent] | str]] = {
        "w1": {"sq": Squarer},  # a class: its import path is passed to the process
        "w2": {"sq": "agents:Squarer"},
    }
    with LocalCluster(nodes, processes=True, pythonpath=[TESTS]) as local:
        procs = [local.process(name) for name in local.names]
        cluster = local.cluster
        assert (
            cluster.submit("square", {"x": 4}, agent="sq@w2").result(timeout_s=10)["square"] == 16
        )
        address = local.address("w1")
        local.kill("w1")
        assert not local.process("w1").running()
        local.restart("w1")
        assert local.address("w1") == address
        assert (
            cluster.submit("square", {"x": 5}, agent="sq@w1").result(timeout_s=10)["square"] == 25
        )
    assert [proc.running() for proc in procs] == [False, False, False]


def test_a_local_cluster_names_what_it_does_not_have() -> None:
    local = LocalCluster({"w1": {}})
    with pytest.raises(
        macp.ConfigError, match=r"^no node 'w9' in the local cluster; it has \['head', 'w1'\]$"
    ):
        local.address("w9")
    with pytest.raises(
        macp.ConfigError, match=r"^node 'w1' runs in this process: use node\('w1'\)$"
    ):
        local.process("w1")
    with pytest.raises(
        macp.ConfigError, match=r"^the local cluster is not started: call start\(\) or use `with`$"
    ):
        _ = local.cluster
    with pytest.raises(
        macp.ConfigError, match=r"^node 'head' is the head: give its agents as head=$"
    ):
        LocalCluster({"head": {}})


two_nodes = cluster_fixture({"w1": {"sq": Squarer}})


def test_a_cluster_fixture_hands_a_started_cluster_to_the_test(two_nodes: LocalCluster) -> None:
    assert two_nodes.names == ["head", "w1"]
    assert two_nodes.cluster.find(capabilities=["square"])[0]["address"] == "sq@w1"


def test_the_probe_fixture_is_opened_before_the_nodes_stop(
    make_node: Callable[..., Node], probe: Probe
) -> None:
    node = make_node("held")
    ref = node.spawn(Watched, "w", probe=probe)
    ref.tell("hold", "never opened by the test")
    probe.wait_count(2)  # started, holding: the fixture opens the gate, then the node stops


# -- the docs ---------------------------------------------------------------------------------


def test_the_example_of_docs_testing_runs_under_pytest(tmp_path: Path) -> None:
    text = (TESTS.parent / "docs" / "testing.md").read_text(encoding="utf-8")
    example = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert example is not None, "docs/testing.md has no python example"
    (tmp_path / "test_summarizer.py").write_text(example.group(1), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_summarizer.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^3 passed in ", done.stdout, re.MULTILINE), done.stdout


def test_macp_testing_imports_without_pytest_and_exports_what_it_says() -> None:
    script = (
        "import sys, macp.testing as t\n"
        "assert 'pytest' not in sys.modules, 'macp.testing imported pytest'\n"
        "public = {n for n in vars(t) if not n.startswith('_') and n != 'annotations'}\n"
        "print(sorted(public - set(t.__all__)), sorted(set(t.__all__) - public))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (0, "[] []\n"), done.stderr


def test_a_local_cluster_in_this_process_restarts_a_node_and_the_head_with_their_agents(
    probe: Probe,
) -> None:
    with LocalCluster({"w1": {"sq": Squarer}}) as local:
        local.spawn("w1", Watched, "watched", probe=probe)
        address = local.address("w1")
        local.restart("w1")
        assert local.address("w1") == address
        assert probe.events == [("started", "watched")] * 2  # the same probe, spawned again
        first = local.cluster.submit("square", {"x": 2}, agent="sq@w1").result(timeout_s=10)
        local.restart("head")  # on its journal: the task it ran is still known
        assert local.cluster.result(local.cluster.tasks()[0]["id"], timeout_s=10) == first
        assert local.cluster.submit("square", {"x": 3}).result(timeout_s=10)["square"] == 9


def test_a_node_process_started_then_entered_is_one_process() -> None:
    started = NodeProcess("solo").start()
    first = started.proc
    assert first is not None
    with started as node:
        assert node.proc is first  # entering a started process starts no second one
        mine = [p for p in psutil.Process().children() if "solo" in " ".join(p.cmdline())]
        assert [p.pid for p in mine] == [first.pid]
    assert first.poll() is not None
