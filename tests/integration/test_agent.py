"""The Agent base class with real actors and threads: dispatch, errors, deadlocks, priorities,
control commands."""

from __future__ import annotations

import re
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

import macp
from macp import Agent, Context, Priority, handler
from macp._inbox import PriorityInbox
from macp.testing import Probe, ProbedAgent, wait_until

if TYPE_CHECKING:
    from macp import Node

pytestmark = pytest.mark.integration


class Echo(Agent):
    capabilities = ("echo",)

    @handler("echo")
    def echo(self, body: macp.Wire, ctx: Context) -> macp.Wire:
        return {"echo": body, "sender": ctx.sender, "me": self.address}

    @handler("fail")
    def fail(self, body: macp.Wire) -> macp.Wire:
        raise ValueError(f"cannot handle {body!r}")

    @handler("refuse")
    def refuse(self, body: macp.Wire) -> macp.Wire:
        raise macp.InvalidParams("text is required")

    @handler("set")
    def set_value(self, body: macp.Wire) -> None:
        self.value = body

    @handler("get")
    def get_value(self, _body: macp.Wire) -> macp.Wire:
        return getattr(self, "value", None)

    @handler("ask")
    def ask_other(self, body: dict[str, str]) -> macp.Wire:
        reply: macp.Wire = self.ask(body["to"], body["type"], body.get("body")).get()
        return reply

    @handler("object")
    def object_reply(self, _body: macp.Wire) -> macp.Wire:
        return {1, 2}  # type: ignore[return-value]


class Crasher(ProbedAgent, Echo):
    crash_on_error = True

    def on_start(self) -> None:
        self.probe.record(("started", self.name))


class Gated(ProbedAgent):
    """Blocks in ``block`` until the test opens its probe's gate; records what it handles."""

    @handler("block")
    def block(self, _body: macp.Wire) -> None:
        self.probe.record("blocking")
        self.probe.wait_open(timeout_s=10)

    @handler("work")
    def work(self, body: macp.Wire) -> macp.Wire:
        self.probe.record(body)
        return body

    def on_configure(self, params: dict[str, macp.Wire]) -> None:
        if "bad" in params:
            raise macp.InvalidParams("bad is not a setting")
        self.probe.record(("configured", params))

    def on_reset(self) -> None:
        self.probe.record("reset")


def test_a_handler_gets_the_body_and_its_return_is_the_reply(node: Node) -> None:
    ref = node.spawn(Echo, "echo")
    assert ref.ask("echo", {"text": "hi"}).get() == {
        "echo": {"text": "hi"},
        "sender": "$client@test",
        "me": "echo@test",
    }


def test_tells_are_handled_in_order(node: Node) -> None:
    ref = node.spawn(Echo, "echo")
    for i in range(100):
        ref.tell("set", i)
    assert ref.ask("get").get() == 99


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"capabilities": "summarize"},
         "capabilities must be a list of strings, not 'summarize'; e.g. ['summarize']"),
        ({"capabilities": ["a", 1]},
         "capabilities must be a list of strings, not ['a', 1]; e.g. ['summarize']"),
        ({"role": 3}, "role must be a string, not 3"),
        ({"group": ["g"]}, "group must be a string, not ['g']"),
    ],
)  # fmt: skip
def test_spawn_refuses_a_bad_capability_role_or_group_and_the_node_lives_on(
    node: Node, given: dict[str, Any], message: str
) -> None:
    with pytest.raises(macp.ConfigError, match=f"^{re.escape(message)}$"):
        node.spawn(Echo, "echo", **given)
    assert node.children() == []
    assert node.spawn(Echo, "echo", capabilities=["summarize"]).ask("echo", 1).get() is not None


def test_an_unknown_type_is_answered_with_unknown_message_type(node: Node) -> None:
    ref = node.spawn(Echo, "echo")
    handles = "ask, echo, fail, get, object, refuse, set"  # its own, not the built-in task.run
    with pytest.raises(
        macp.UnknownMessageType,
        match=rf"^agent echo@test has no handler for 'nope' \(it handles: {handles}\)$",
    ):
        ref.ask("nope").get()


def test_a_raising_handler_answers_an_error_and_the_agent_lives_on(node: Node) -> None:
    ref = node.spawn(Echo, "echo")
    with pytest.raises(macp.AgentError, match="ValueError: cannot handle 3") as info:
        ref.ask("fail", 3).get()
    assert (info.value.remote_type, info.value.remote_message) == ("ValueError", "cannot handle 3")
    with pytest.raises(macp.InvalidParams, match="text is required"):
        ref.ask("refuse").get()
    assert ref.ask("echo", 1).get()["echo"] == 1
    assert node.children()[0]["restarts"] == 0


def test_a_crash_on_error_agent_dies_and_restarts_fresh_under_its_name(
    node: Node, probe: Probe
) -> None:
    ref = node.spawn(Crasher, "crasher", probe=probe)
    ref.tell("set", "state")
    assert ref.ask("get").get() == "state"
    with pytest.raises(macp.AgentError, match="ValueError"):
        ref.ask("fail", 1).get()
    probe.wait_count(2)
    assert probe.events == [("started", "crasher"), ("started", "crasher")]
    assert ref.ask("get").get() is None  # fresh state
    assert node.children()[0]["restarts"] == 1


def test_asking_oneself_fails_at_once_with_deadlock_error(node: Node) -> None:
    ref = node.spawn(Echo, "echo")
    started = time.monotonic()
    with pytest.raises(macp.DeadlockError, match="echo@test -> echo@test"):
        ref.ask("ask", {"to": "echo", "type": "echo"}, timeout_s=30).get()
    assert time.monotonic() - started < 1.0  # within a second, not at the ask's timeout


def test_a_two_actor_ask_cycle_fails_at_once_with_deadlock_error(node: Node) -> None:
    a = node.spawn(Echo, "a")
    node.spawn(Echo, "b")
    started = time.monotonic()
    with pytest.raises(macp.DeadlockError, match="a@test -> b@test -> a@test"):
        a.ask(
            "ask", {"to": "b", "type": "ask", "body": {"to": "a", "type": "echo"}}, timeout_s=30
        ).get()
    assert time.monotonic() - started < 1.0  # within a second, not at the ask's timeout


def test_a_chain_without_a_cycle_is_not_a_deadlock(node: Node) -> None:
    a = node.spawn(Echo, "a")
    node.spawn(Echo, "b")
    node.spawn(Echo, "c")
    reply = a.ask("ask", {"to": "b", "type": "ask", "body": {"to": "c", "type": "echo"}}).get()
    assert reply["sender"] == "b@test"


def test_an_ask_without_a_reply_times_out(node: Node, probe: Probe) -> None:
    ref = node.spawn(Gated, "gated", probe=probe)
    ref.tell("block")
    probe.wait_count(1)
    with pytest.raises(macp.AskTimeout, match=r"no reply from gated@test to 'work' within 0.2 s"):
        ref.ask("work", 1, timeout_s=0.2).get()
    probe.open()


def test_an_ask_to_an_unknown_actor_fails_with_actor_not_found(node: Node) -> None:
    with pytest.raises(macp.ActorNotFound, match="no actor named 'ghost' on node 'test'"):
        node.ask("ghost", "echo").get(timeout_s=10)


def test_strict_setting_refuses_a_body_that_could_not_cross_nodes(node: Node) -> None:
    ref = node.spawn(Echo, "echo")
    with pytest.raises(macp.InvalidParams, match="not msgpack-native"):
        ref.ask("echo", {"s": {1, 2}})  # type: ignore[dict-item]
    with pytest.raises(macp.InvalidParams, match="not msgpack-native"):
        ref.ask("object").get()


def test_a_critical_message_overtakes_queued_lower_priorities(node: Node, probe: Probe) -> None:
    ref = node.spawn(Gated, "gated", probe=probe)
    ref.tell("block")
    probe.wait_count(1)
    for i, prio in enumerate(
        [
            Priority.LOW,
            Priority.MEDIUM,
            Priority.LOW,
            Priority.HIGH,
            Priority.MEDIUM,
            Priority.CRITICAL,
            Priority.HIGH,
        ]
    ):
        ref.tell("work", f"{prio.name}-{i}", prio=prio)
    probe.open()
    events = probe.wait_count(8)
    assert events[1:] == [
        "CRITICAL-5", "HIGH-3", "HIGH-6", "MEDIUM-1", "MEDIUM-4", "LOW-0", "LOW-2",
    ]  # fmt: skip


def test_pause_holds_work_and_resume_delivers_all_of_it_in_order(node: Node, probe: Probe) -> None:
    ref = node.spawn(Gated, "gated", probe=probe)
    assert ref.control("pause").get() == {"state": "paused"}
    futures = [ref.ask("work", i) for i in range(50)]
    # STATUS overtakes queued work, so the count moves from the queue to the held list.
    wait_until(lambda: ref.control("status").get()["held"] == 50)
    assert probe.events == []
    assert ref.control("resume").get() == {"state": "running"}
    assert [f.get() for f in futures] == list(range(50))
    assert probe.events == list(range(50))


def test_stop_refuses_work_until_start(node: Node, probe: Probe) -> None:
    ref = node.spawn(Gated, "gated", probe=probe)
    ref.control("pause").get()
    held = ref.ask("work", "held")
    assert ref.control("stop").get() == {"state": "stopped"}
    with pytest.raises(macp.ResourceUnavailable, match="gated@test is stopped; START it"):
        held.get()
    with pytest.raises(macp.ResourceUnavailable):
        ref.ask("work", "new").get()
    assert ref.control("start").get() == {"state": "running"}
    assert ref.ask("work", "after").get() == "after"


def test_configure_calls_on_configure_and_merges_the_params(node: Node, probe: Probe) -> None:
    ref = node.spawn(Gated, "gated", config={"model": "small"}, probe=probe)
    assert ref.control("configure", {"temperature": 0.5}).get() == {
        "config": {"model": "small", "temperature": 0.5}
    }
    assert probe.events == [("configured", {"temperature": 0.5})]
    with pytest.raises(macp.InvalidParams, match="bad is not a setting"):
        ref.control("configure", {"bad": 1}).get()
    with pytest.raises(macp.InvalidParams, match="takes a map of params"):
        ref.control("configure", [1]).get()


def test_status_reports_state_counters_and_the_last_commands(node: Node) -> None:
    ref = node.spawn(Echo, "echo")
    ref.ask("echo", 1).get()
    with pytest.raises(macp.AgentError):
        ref.ask("fail", 2).get()
    ref.control("pause").get()
    ref.control("resume").get()
    status = ref.control("status").get()
    assert status["state"] == "running"
    assert status["capabilities"] == ["echo"]
    assert status["counters"] == {"received": 2, "handled": 1, "failed": 1}
    assert status["last_error"] == "ValueError: cannot handle 2"
    assert [c["command"] for c in status["last_commands"]] == ["pause", "resume"]
    assert all(c["ok"] for c in status["last_commands"])


def test_reset_calls_on_reset_and_zeroes_the_counters(node: Node, probe: Probe) -> None:
    ref = node.spawn(Gated, "gated", probe=probe)
    ref.ask("work", 1).get()
    status = ref.control("reset").get()
    assert probe.events == [1, "reset"]
    assert (status["counters"], status["last_error"]) == ({}, None)


def test_the_command_history_is_bounded(node: Node) -> None:
    ref = node.spawn(Echo, "echo")
    for _ in range(40):
        ref.control("status").get()
    assert len(ref.control("status").get()["last_commands"]) == 32


def test_an_unknown_control_command_is_a_config_error(node: Node) -> None:
    ref = node.spawn(Echo, "echo")
    with pytest.raises(macp.ConfigError, match="unknown control command 'explode'"):
        ref.control("explode")


def test_stopping_an_agent_answers_the_asks_still_queued(node: Node, probe: Probe) -> None:
    ref = node.spawn(Gated, "gated", probe=probe)
    ref.tell("block")
    probe.wait_count(1)
    queued = [ref.ask("work", i, timeout_s=10) for i in range(3)]
    stopper = threading.Thread(target=node.terminate, args=("gated",))
    stopper.start()
    inbox = node._directory["gated"]
    assert isinstance(inbox, PriorityInbox)
    # The stop request goes before queued work (it is for this incarnation, not the mailbox).
    wait_until(lambda: inbox.tokens.qsize() == 4, message="the stop request was not queued")
    probe.open()
    stopper.join(5)
    for future in queued:
        with pytest.raises(macp.ActorNotFound, match="stopped before handling the message"):
            future.get(timeout_s=10)
    assert probe.events == ["blocking"]


def test_two_handlers_for_one_type_are_refused_at_class_definition() -> None:
    with pytest.raises(macp.ConfigError, match="two handlers for 'x'"):

        class Twice(Agent):
            @handler("x")
            def one(self, body: macp.Wire) -> None: ...

            @handler("x")
            def two(self, body: macp.Wire) -> None: ...


def test_handler_refuses_the_reserved_control_space() -> None:
    with pytest.raises(macp.ConfigError, match="outside 'control"):
        handler("control.pause")


def test_a_subclass_override_replaces_the_handler(node: Node) -> None:
    class Loud(Echo):
        def echo(self, body: macp.Wire, ctx: Context) -> macp.Wire:
            return "LOUD"

    ref = node.spawn(Loud, "loud")
    assert ref.ask("echo", 1).get() == "LOUD"
