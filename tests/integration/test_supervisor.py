"""Supervision with real actors that really crash: strategies, restart policies, intensity."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

import macp
from macp import ChildSpec, Restart, Strategy, SupervisorSpec, handler
from macp.testing import Probe, ProbedAgent, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp import Node

pytestmark = pytest.mark.integration


class Worker(ProbedAgent):
    crash_on_error = True

    def on_start(self) -> None:
        self.probe.record(("start", self.name))

    def on_stop(self) -> None:
        self.probe.record(("stop", self.name))

    @handler("crash")
    def crash(self, _body: macp.Wire) -> None:
        raise RuntimeError(f"{self.name} crashed on purpose")

    @handler("quit")
    def quit(self, _body: macp.Wire) -> None:
        self.stop()  # a normal exit

    @handler("ping")
    def ping(self, _body: macp.Wire) -> macp.Wire:
        return self.name


class SilentWorker(Worker):
    """Dies without reporting its exit, so only the supervisor's watchdog can notice."""

    def _report_exit(self) -> None:
        self._exit_reported = False


def _starts(name: str) -> Callable[[list[object]], bool]:
    return lambda events: events.count(("start", name)) >= 2


def _children(probe: Probe, *names: str, restart: Restart = Restart.PERMANENT) -> list[ChildSpec]:
    return [ChildSpec(Worker, n, restart=restart, kwargs={"probe": probe}) for n in names]


def _tree(probe: Probe, node: Node, strategy: Strategy, **kw: object) -> None:
    children = _children(probe, "a", "b", "c")
    node.start_child(SupervisorSpec("workers", children, strategy=strategy, **kw))  # type: ignore[arg-type]
    probe.wait_count(3)
    probe.clear()


def test_one_for_one_restarts_only_the_crashed_child(probe: Probe, node: Node) -> None:
    _tree(probe, node, Strategy.ONE_FOR_ONE)
    node.tell("b", "crash")
    probe.wait_for(lambda events: ("start", "b") in events)
    assert node.ref("b").ask("ping").get() == "b"
    assert probe.events == [("start", "b")]
    assert [c["restarts"] for c in node.children("workers")] == [0, 1, 0]


def test_one_for_all_stops_the_others_in_reverse_order_then_restarts_all_in_order(
    probe: Probe,
    node: Node,
) -> None:
    _tree(probe, node, Strategy.ONE_FOR_ALL)
    node.tell("b", "crash")
    events = probe.wait_for(lambda ev: ev[-1:] == [("start", "c")])
    assert events == [("stop", "c"), ("stop", "a"), ("start", "a"), ("start", "b"), ("start", "c")]
    assert [node.ref(n).ask("ping").get() for n in "abc"] == ["a", "b", "c"]


def test_rest_for_one_restarts_the_crashed_child_and_those_started_after_it(
    probe: Probe, node: Node
) -> None:
    _tree(probe, node, Strategy.REST_FOR_ONE)
    node.tell("b", "crash")
    events = probe.wait_for(lambda ev: ev[-1:] == [("start", "c")])
    assert events == [("stop", "c"), ("start", "b"), ("start", "c")]
    assert [c["restarts"] for c in node.children("workers")] == [0, 1, 1]


def test_a_permanent_child_is_restarted_even_after_a_normal_exit(probe: Probe, node: Node) -> None:
    node.start_child(ChildSpec(Worker, "w", restart=Restart.PERMANENT, kwargs={"probe": probe}))
    node.tell("w", "quit")
    probe.wait_for(_starts("w"))
    assert node.ref("w").ask("ping").get() == "w"


def test_a_transient_child_is_restarted_after_a_crash_but_not_after_a_normal_exit(
    probe: Probe,
    node: Node,
) -> None:
    node.start_child(ChildSpec(Worker, "w", restart=Restart.TRANSIENT, kwargs={"probe": probe}))
    node.tell("w", "crash")
    probe.wait_for(_starts("w"))
    node.tell("w", "quit")
    probe.wait_for(lambda ev: ev.count(("stop", "w")) == 1)
    with pytest.raises(macp.ActorNotFound):
        node.ask("w", "ping").get(timeout_s=10)
    assert node.children() == []


def test_a_temporary_child_is_never_restarted(probe: Probe, node: Node) -> None:
    node.start_child(ChildSpec(Worker, "w", restart=Restart.TEMPORARY, kwargs={"probe": probe}))
    node.tell("w", "crash")
    wait_until(lambda: node.children() == [], message="the temporary child was not removed")
    with pytest.raises(macp.ActorNotFound):
        node.ask("w", "ping").get(timeout_s=10)
    assert probe.events == [("start", "w")]


def test_exceeding_the_restart_intensity_escalates_to_the_parent(probe: Probe, node: Node) -> None:
    spec = SupervisorSpec("workers", _children(probe, "a", "b"), max_restarts=2, within_s=30)
    node.start_child(spec)
    probe.wait_count(2)
    for expected_starts in (2, 3):
        node.tell("b", "crash")
        probe.wait_for(lambda ev: ev.count(("start", "b")) == expected_starts)  # noqa: B023
    node.tell("b", "crash")  # the third restart within 30 s: "workers" gives up
    # The root restarts "workers", which starts both children afresh.
    events = probe.wait_for(
        lambda ev: ev.count(("start", "a")) == 2 and ev.count(("start", "b")) == 4
    )
    assert events[-2:] == [("start", "a"), ("start", "b")]
    assert node.children()[0]["restarts"] == 1
    assert [c["restarts"] for c in node.children("workers")] == [0, 0]


def test_a_root_supervisor_that_gives_up_ends_the_node_with_exit_code_1(
    probe: Probe,
    make_node: Callable[..., Node],
) -> None:
    node = make_node("fragile", supervision=SupervisorSpec("root", max_restarts=0))
    node.start_child(ChildSpec(Worker, "w", kwargs={"probe": probe}))
    node.tell("w", "crash")
    assert node.wait(5) == 1
    assert probe.events[-1] == ("start", "w")


def test_a_restarted_child_keeps_its_name_and_address(probe: Probe, node: Node) -> None:
    ref = node.spawn(Worker, "w", probe=probe)
    ref.tell("crash")
    probe.wait_for(_starts("w"))
    assert ref.address == "w@test"
    assert ref.ask("ping").get() == "w"


def test_the_watchdog_restarts_a_child_whose_thread_died_without_a_report(
    probe: Probe, node: Node
) -> None:
    node.start_child(ChildSpec(SilentWorker, "silent", kwargs={"probe": probe}))
    node.tell("silent", "crash")
    probe.wait_for(_starts("silent"))
    assert node.ref("silent").ask("ping").get() == "silent"


def test_nested_supervisors_stop_their_children_in_reverse_order(
    probe: Probe,
    make_node: Callable[..., Node],
) -> None:
    node = make_node("nested")
    node.start_child(SupervisorSpec("outer", [
        ChildSpec(Worker, "a", kwargs={"probe": probe}),
        SupervisorSpec("inner", _children(probe, "b", "c")),
        ChildSpec(Worker, "d", kwargs={"probe": probe}),
    ]))  # fmt: skip
    probe.wait_count(4)
    probe.clear()
    node.stop()
    assert probe.events == [("stop", "d"), ("stop", "c"), ("stop", "b"), ("stop", "a")]
    assert node.wait(1) == 0


def test_a_duplicate_name_on_a_node_is_refused(probe: Probe, node: Node) -> None:
    node.spawn(Worker, "w", probe=probe)
    with pytest.raises(macp.ConfigError, match="already has a child named 'w'"):
        node.spawn(Worker, "w", probe=probe)
    node.start_child(SupervisorSpec("other"))
    with pytest.raises(macp.ConfigError, match="already has an actor named 'w'"):
        node.spawn(Worker, "w", supervisor="other", probe=probe)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "one_for_some"}, "strategy is one of one_for_one"),
        ({"max_restarts": -1}, "max_restarts must be an integer >= 0"),
        ({"within_s": 0}, "within_s must be a positive number"),
        ({"name": "a b"}, "supervisor name 'a b' is invalid"),
    ],
)
def test_a_bad_supervisor_spec_names_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(macp.ConfigError, match=message):
        SupervisorSpec(**{"name": "s", **kwargs})  # type: ignore[arg-type]


def test_messages_queued_behind_a_crash_are_handled_by_the_next_incarnation(
    probe: Probe, node: Node
) -> None:
    ref = node.spawn(Worker, "w", probe=probe)
    ref.control("pause").get()  # queue everything first, then let it all run
    ref.tell("crash")
    pings = [ref.ask("ping", timeout_s=10) for _ in range(20)]
    ref.control("resume").get()
    assert [p.get() for p in pings] == ["w"] * 20
    assert probe.events.count(("start", "w")) == 2


# -- a child that cannot start ------------------------------------------------------------------


class Unready(Worker):
    """Its ``on_start`` fails (config ``{"fail": True}``) or waits at its probe's gate "hold"."""

    def on_start(self) -> None:
        super().on_start()
        if self.config.get("fail"):
            raise RuntimeError("cannot load its model")
        self.probe.wait_open("hold", timeout_s=10)


def test_a_spawn_whose_on_start_raises_fails_and_the_node_lives_on(
    probe: Probe, node: Node
) -> None:
    with pytest.raises(
        macp.StartFailed, match=r"^child 'u' failed to start: RuntimeError: cannot load its model$"
    ):
        node.spawn(Unready, "u", config={"fail": True}, probe=probe)
    assert node.children() == []  # not added, so never restarted
    assert node.spawn(Worker, "u", probe=probe).ask("ping").get() == "u"  # and its name is free
    assert node.children() == [{"name": "u", "alive": True, "restarts": 0, "supervisor": False}]
    assert probe.events == [("start", "u"), ("start", "u")]  # the failed one, then Worker


def test_a_spawn_whose_on_start_hangs_fails_after_its_shutdown_time(
    probe: Probe, node: Node
) -> None:
    try:
        with pytest.raises(
            macp.StartFailed, match=r"^child 'u' did not finish starting within 0.2 s$"
        ):
            node.start_child(ChildSpec(Unready, "u", shutdown_s=0.2, kwargs={"probe": probe}))
        assert node.children() == []
    finally:
        probe.open("hold")
    assert node.spawn(Worker, "u", probe=probe).ask("ping").get() == "u"


def test_a_subtree_with_a_child_that_cannot_start_is_not_added_at_all(
    probe: Probe, node: Node
) -> None:
    spec = SupervisorSpec("team", [
        ChildSpec(Worker, "a", kwargs={"probe": probe}),
        ChildSpec(Unready, "b", kwargs={"probe": probe, "config": {"fail": True}}),
        ChildSpec(Worker, "c", kwargs={"probe": probe}),
    ])  # fmt: skip
    with pytest.raises(macp.StartFailed, match=r"^child 'b' failed to start: RuntimeError"):
        node.start_child(spec)
    assert node.children() == []
    assert probe.events == [("start", "a"), ("start", "b"), ("stop", "a")]  # c never began
    with pytest.raises(macp.ActorNotFound):
        node.ask("a", "ping").get(timeout_s=10)


def test_a_node_whose_static_child_cannot_start_fails_to_start_and_leaves_no_thread(
    probe: Probe,
) -> None:
    spec = SupervisorSpec(
        "root", [ChildSpec(Unready, "b", kwargs={"probe": probe, "config": {"fail": True}})]
    )
    with pytest.raises(macp.StartFailed, match=r"^child 'b' failed to start: RuntimeError"):
        macp.Node("broken", supervision=spec).start()
    wait_until(
        lambda: not [t for t in threading.enumerate() if "broken" in t.name],
        10,
        "a thread of node 'broken' is still running",
    )
