"""The registry on a head node: registration by heartbeat, find, lookup, restarts, node down."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from agents import CrashesOnRequest
from procs import QUICK_CLUSTER, QUICK_CLUSTER_FLAGS
from topology_procs import free_ports

import macp
from macp import Context, Settings, handler, start_control_plane
from macp.actors.registry import CHANGED, FIND, LIST, LOOKUP, REGISTER, SUBSCRIBE
from macp.envelope import Wire, now_ms
from macp.node._registrar import HEARTBEAT
from macp.testing import Probe, ProbedAgent, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp import Node
    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration

CONTROL_PLANE = [
    "coordinator@head",
    "evaluations@head",
    "memory@head",
    "monitor@head",
    "projects@head",
    "registry@head",
    "resources@head",
    "sessions@head",
]
CREW = ["alpha@head", "beta@head", "gamma@head"]


class Worker(ProbedAgent):
    @handler("whoami")
    def whoami(self, _body: macp.Wire, ctx: Context) -> macp.Wire:
        return {"me": self.address, "sender": ctx.sender}

    @handler("block")
    def block(self, _body: macp.Wire) -> None:
        self.probe.wait_open(timeout_s=10)  # holds the agent busy until the test opens the gate


class Fragile(CrashesOnRequest, Worker):
    """Dies on ``crash``."""


class Watcher(ProbedAgent):
    """Records every ``registry.changed`` event as ``(address, status)``."""

    @handler(CHANGED)
    def changed(self, body: dict[str, Any]) -> None:
        self.probe.record((body["address"], body["status"]))


@pytest.fixture
def head(make_node: Callable[..., Node], tmp_path: Path) -> Node:
    """Node "head" listening on tcp, with the control plane."""
    node = make_node("head", listen="tcp://127.0.0.1:0", settings=QUICK_CLUSTER)
    start_control_plane(node, journal=tmp_path / "j.sqlite3")
    return node


@pytest.fixture
def crew(probe: Probe, head: Node) -> Node:
    """The head with alpha (summarize+translate, worker, blue), beta (summarize, worker, red)
    and gamma (translate, lead, blue), all registered."""
    head.spawn(Worker, "alpha", capabilities=("summarize", "translate"), role="worker",
               group="blue", probe=probe)  # fmt: skip
    head.spawn(Worker, "beta", capabilities=("summarize",), role="worker", group="red", probe=probe)
    head.spawn(Worker, "gamma", capabilities=("translate",), role="lead", group="blue", probe=probe)
    _wait_registered(head, *CREW)
    return head


def _records(node: Node) -> dict[str, dict[str, Any]]:
    return {r["address"]: r for r in node.ask("registry", LIST).get()}


def _wait_registered(node: Node, *addresses: str, status: str = "available") -> None:
    def registered() -> bool:
        records = _records(node)
        return all(a in records and records[a]["status"] == status for a in addresses)

    wait_until(registered, 10, f"{addresses} not {status} in the registry")


def _find(node: Node, /, **filters: Any) -> list[str]:
    return [r["address"] for r in node.ask("registry", FIND, filters).get()]


# -- find -------------------------------------------------------------------------------------


def test_find_without_filters_returns_every_registered_agent(crew: Node) -> None:
    # The control plane's own agents are registered too; their load (hence their place in
    # the answer) moves with the traffic they handle, so only the set is compared.
    assert sorted(_find(crew)) == sorted(CREW + CONTROL_PLANE)


def test_find_requires_every_capability_asked_for(crew: Node) -> None:
    assert _find(crew, capabilities=["summarize"]) == ["alpha@head", "beta@head"]
    assert _find(crew, capabilities=["translate"]) == ["alpha@head", "gamma@head"]
    assert _find(crew, capabilities=["summarize", "translate"]) == ["alpha@head"]
    assert _find(crew, capabilities=["summarize", "paint"]) == []


def test_find_filters_by_role_group_and_node(crew: Node) -> None:
    assert _find(crew, role="worker") == ["alpha@head", "beta@head"]
    assert _find(crew, role="lead") == ["gamma@head"]
    assert _find(crew, role="resources") == ["resources@head"]
    assert _find(crew, group="blue") == ["alpha@head", "gamma@head"]
    assert sorted(_find(crew, group="control-plane")) == CONTROL_PLANE
    assert sorted(_find(crew, node="head")) == sorted(CREW + CONTROL_PLANE)
    assert _find(crew, node="elsewhere") == []


def test_find_filters_by_one_status_or_a_list_of_statuses(crew: Node) -> None:
    assert crew.control("gamma", "pause").get() == {"state": "paused"}
    wait_until(lambda: _find(crew, status="paused") == ["gamma@head"], 10, "gamma not paused")
    assert _find(crew, status="available", role="worker") == ["alpha@head", "beta@head"]
    assert _find(crew, status="available", group="blue") == ["alpha@head"]
    assert _find(crew, status=["available", "paused"], group="blue") == ["alpha@head", "gamma@head"]
    assert _find(crew, status=["paused", "offline"]) == ["gamma@head"]
    assert _find(crew, status=["offline", "error"]) == []
    assert crew.control("gamma", "resume").get() == {"state": "running"}
    wait_until(lambda: _find(crew, status="paused") == [], 10, "gamma still paused")


def test_find_puts_the_least_loaded_agent_first(crew: Node) -> None:
    for _ in range(3):
        crew.tell("alpha", "block")  # one in hand, two queued

    def alpha_load() -> Any:
        return _records(crew)["alpha@head"]["load"]

    wait_until(lambda: alpha_load() == 3, 10, "alpha's load never reached 3")
    assert _records(crew)["alpha@head"]["status"] == "busy"
    found = crew.ask("registry", FIND, {"capabilities": ["summarize"]}).get()
    assert [(r["address"], r["load"]) for r in found] == [("beta@head", 0), ("alpha@head", 3)]
    assert _find(crew, capabilities=["translate"]) == ["gamma@head", "alpha@head"]
    # The control plane's agents are busy too whenever a heartbeat samples them mid-message,
    # so the crew alone is compared.
    assert _find(crew, status="busy", role="worker") == ["alpha@head"]


def test_find_with_active_within_leaves_out_agents_not_heard_from_lately(crew: Node) -> None:
    # Registered by hand for a node that never heartbeats: its last heartbeat only ages.
    ghost = {"address": "ghost@elsewhere", "capabilities": ["summarize"], "role": "worker"}
    assert crew.ask("registry", REGISTER, ghost).get()["ok"] is True
    summarizers = ["alpha@head", "beta@head", "ghost@elsewhere"]
    assert _find(crew, capabilities=["summarize"], active_within_s=60) == summarizers
    assert _find(crew, node="elsewhere") == ["ghost@elsewhere"]
    wait_until(
        lambda: (
            _find(crew, capabilities=["summarize"], active_within_s=0.5)
            == ["alpha@head", "beta@head"]
        ),
        5,
        "ghost@elsewhere still counted as active",
    )
    assert _find(crew, capabilities=["summarize"]) == summarizers


def test_find_combines_every_filter(crew: Node) -> None:
    every = {"capabilities": ["translate"], "role": "worker", "group": "blue", "node": "head",
             "status": ["available", "busy"], "active_within_s": 5}  # fmt: skip
    assert _find(crew, **every) == ["alpha@head"]
    assert _find(crew, **{**every, "role": "lead", "capabilities": ["summarize"]}) == []
    assert _find(crew, **{**every, "role": "lead", "capabilities": []}) == ["gamma@head"]
    assert _find(crew, **{**every, "group": "red"}) == []
    assert _find(crew, **{**every, "status": "paused"}) == []


def test_find_refuses_a_filter_of_the_wrong_type(crew: Node) -> None:
    with pytest.raises(macp.InvalidParams, match=r"^'role' must be a str, not 3$"):
        crew.ask("registry", FIND, {"role": 3}).get()
    with pytest.raises(macp.InvalidParams, match=r"^'status' must be a str or list, not 3$"):
        crew.ask("registry", FIND, {"status": 3}).get()
    with pytest.raises(
        macp.InvalidParams, match=r"^'capabilities' must be a list, not 'summarize'$"
    ):
        crew.ask("registry", FIND, {"capabilities": "summarize"}).get()


# -- lookup and bare names --------------------------------------------------------------------


def test_lookup_gives_the_address_of_a_bare_name_or_none(crew: Node) -> None:
    assert crew.ask("registry", LOOKUP, {"name": "beta"}).get() == "beta@head"
    assert crew.ask("registry", LOOKUP, {"name": "nobody"}).get() is None


def test_a_bare_name_asked_from_another_node_reaches_the_agent_the_registry_knows(
    probe: Probe, crew: Node, make_node: Callable[..., Node]
) -> None:
    assert crew.address is not None
    other = make_node("n2", listen="tcp://127.0.0.1:0", peers={"head": crew.address},
                      head="head", settings=QUICK_CLUSTER)  # fmt: skip
    other.spawn(Worker, "delta", capabilities=("paint",), role="painter", probe=probe)
    _wait_registered(crew, "delta@n2")
    delta = _records(crew)["delta@n2"]
    assert (delta["node"], delta["capabilities"], delta["role"]) == ("n2", ["paint"], "painter")
    assert _find(crew, node="n2") == ["delta@n2"]

    assert other.ask("alpha", "whoami").get() == {"me": "alpha@head", "sender": "$client@n2"}
    assert crew.ask("delta", "whoami").get() == {"me": "delta@n2", "sender": "$client@head"}


# -- restarts and terminations ----------------------------------------------------------------


def test_a_crashed_agent_is_restarted_and_registered_again(probe: Probe, head: Node) -> None:
    head.spawn(Watcher, "watcher", probe=probe)
    head.ask("registry", SUBSCRIBE, {"address": "watcher@head"}).get()
    head.spawn(Fragile, "fragile", capabilities=("fragile",), probe=probe)
    _wait_registered(head, "fragile@head")
    probe.wait_for(lambda ev: ("fragile@head", "available") in ev)
    before = _records(head)["fragile@head"]
    probe.clear()

    with pytest.raises(macp.AgentError, match=r"^RuntimeError: crashed on purpose$"):
        head.ask("fragile", "crash").get()

    def restarts() -> object:
        return next(c["restarts"] for c in head.children() if c["name"] == "fragile")

    wait_until(lambda: restarts() == 1, 10, "fragile was not restarted")
    # A heartbeat computed after the restart shows the new incarnation; the dead one would
    # be reported as "error" for as long as the node held on to it.
    restarted_ms = now_ms() + 250

    def available_again() -> bool:
        record = _records(head)["fragile@head"]
        return bool(record["status"] == "available" and record["last_heartbeat_ms"] > restarted_ms)

    wait_until(available_again, 10, "fragile@head is not available again")
    after = _records(head)["fragile@head"]
    assert after["registered_ms"] == before["registered_ms"]
    assert after["capabilities"] == ["fragile"]
    events = [e for e in probe.events if isinstance(e, tuple) and e[0] == "fragile@head"]
    assert events
    assert events[-1] == ("fragile@head", "available")
    assert ("fragile@head", "gone") not in events
    assert head.ask("fragile", "whoami").get()["me"] == "fragile@head"


def test_a_terminated_agent_leaves_the_registry(probe: Probe, crew: Node) -> None:
    crew.spawn(Watcher, "watcher", probe=probe)
    crew.ask("registry", SUBSCRIBE, {"address": "watcher@head"}).get()
    assert crew.terminate("beta") is True
    wait_until(lambda: "beta@head" not in _records(crew), 10, "beta@head still registered")
    probe.wait_for(lambda ev: ("beta@head", "gone") in ev)
    assert crew.ask("registry", LOOKUP, {"name": "beta"}).get() is None
    assert _find(crew, capabilities=["summarize"]) == ["alpha@head"]


def test_a_pause_answers_once_the_registry_shows_it(probe: Probe, head: Node) -> None:
    names = [f"w{i}" for i in range(40)]
    for name in names:
        head.spawn(Worker, name, probe=probe)
    _wait_registered(head, *(f"{n}@head" for n in names))
    answers = [head.control(name, "pause") for name in names]  # all at once, as `pause all`
    assert {a.get()["state"] for a in answers} == {"paused"}
    records = _records(head)  # read right after the last answer: no waiting for a heartbeat
    assert {records[f"{n}@head"]["status"] for n in names} == {"paused"}


class HeldRegistry(ProbedAgent):
    """Stands in for the registry: answers each heartbeat, recording the agents it shows
    paused, and holds the answer while its probe's gate "hold_heartbeats" is open (until the
    gate "release" opens)."""

    @handler(HEARTBEAT)
    def heartbeat(self, body: dict[str, Any]) -> Wire:
        paused = sorted(name for name, (status, _load) in body["agents"].items()
                        if status == "paused")  # fmt: skip
        self.probe.record(paused)
        while self.probe.is_open("hold_heartbeats"):
            self.probe.wait_open("release", timeout_s=10)
            self.probe.close("hold_heartbeats")
        return {"generation": 1}


def test_state_changes_made_while_one_is_on_its_way_share_the_next_heartbeat(
    probe: Probe,
    make_node: Callable[..., Node],
) -> None:
    node = make_node("solo", settings=Settings(heartbeat_interval_s=60))  # no regular beats
    node.spawn(HeldRegistry, "registry", probe=probe)
    node.set_head("solo")
    names = [f"w{i}" for i in range(40)]
    for name in names:
        node.spawn(Worker, name, probe=probe)
    assert node.registrar is not None
    assert node.registrar.wait_registered(10)
    before = len(probe.events)

    probe.open("hold_heartbeats")
    first = node.control("w0", "pause")
    probe.wait_for(lambda seen: len(seen) > before, 10)  # its heartbeat is held
    rest = [node.control(name, "pause") for name in names[1:]]
    wait_until(
        lambda: all(node.control(n, "status").get()["state"] == "paused" for n in names),
        10,
        "not every agent took its pause",
    )
    assert [a.done() for a in [first, *rest]] == [False] * len(names)  # all wait for it
    probe.open("release")
    assert {a.get()["state"] for a in [first, *rest]} == {"paused"}
    assert probe.events[before:] == [["w0"], sorted(names)]  # two heartbeats, not forty


# -- a node process's readiness -----------------------------------------------------------


def test_a_node_process_is_ready_once_the_registry_holds_its_agents(
    head: Node, procs: Callable[..., NodeProcess]
) -> None:
    worker = procs("w1", "--head", "head", "--peer", f"head={head.address}",
                   "--agent", "echo=agents:Echo", *QUICK_CLUSTER_FLAGS)  # fmt: skip
    assert worker.ready["registered"] is True
    assert _records(head)["echo@w1"]["status"] == "available"  # no wait: it is there already
    assert head.ask("echo", "echo", 1).get()["me"] == "echo@w1"


def test_a_node_whose_head_is_not_up_is_ready_anyway_and_registers_once_it_is(
    make_node: Callable[..., Node], procs: Callable[..., NodeProcess], tmp_path: Path
) -> None:
    address = f"tcp://127.0.0.1:{free_ports(1)[0]}"  # nobody listens there yet
    worker = procs("w1", "--head", "head", "--peer", f"head={address}",
                   "--agent", "echo=agents:Echo", *QUICK_CLUSTER_FLAGS)  # fmt: skip
    assert worker.ready["registered"] is False
    wait_until(lambda: worker.logs("node.unregistered"), 10, "no node.unregistered warning")
    assert [r["head"] for r in worker.logs("node.unregistered")] == ["head"]

    head = make_node("head", listen=address, settings=QUICK_CLUSTER)
    start_control_plane(head, journal=tmp_path / "j.sqlite3")
    _wait_registered(head, "echo@w1")
    assert head.ask("echo", "echo", 2).get()["me"] == "echo@w1"


# -- node down --------------------------------------------------------------------------------


def test_the_agents_of_a_killed_node_are_offline_until_it_comes_back(
    head: Node, procs: Callable[..., NodeProcess]
) -> None:
    args = ("--head", "head", "--peer", f"head={head.address}", "--agent", "echo=agents:Echo",
            *QUICK_CLUSTER_FLAGS)  # fmt: skip
    worker = procs("w1", *args)
    _wait_registered(head, "echo@w1")
    assert head.ask("echo", "echo", 1).get()["me"] == "echo@w1"

    worker.kill()
    _wait_registered(head, "echo@w1", status="offline")
    assert _find(head, node="w1", status="offline") == ["echo@w1"]
    assert "echo@w1" not in _find(head, status=["available", "busy"])

    assert worker.address is not None
    procs("w1", *args, listen=worker.address)
    _wait_registered(head, "echo@w1")
    assert head.ask("echo", "echo", 2).get()["me"] == "echo@w1"
