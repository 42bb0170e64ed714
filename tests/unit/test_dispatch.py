"""The coordinator's dispatcher on its own: which agent a task goes to, why a task waits (a code,
and the sentence built from it), and what a failed attempt costs."""

from __future__ import annotations

from typing import Any

import pytest

from macp.actors.coordinator.dispatch import CoordinatorOptions, Dispatcher
from macp.actors.coordinator.reasons import GiveUp, WaitCode
from macp.actors.coordinator.table import TaskTable
from macp.actors.coordinator.task import Task, TaskState
from macp.errors import (
    AgentError,
    AgentLost,
    AskTimeout,
    InvalidParams,
    NodeDown,
    PoisonMessage,
    ResourceUnavailable,
)

NOW = 100.0  # seconds, on the dispatcher's clock


@pytest.fixture
def table() -> TaskTable:
    return TaskTable(clock=lambda: 1_000)


def _dispatcher(table: TaskTable, **options: Any) -> Dispatcher:
    return Dispatcher(
        CoordinatorOptions(**{"max_in_flight": 1, **options}), table, clock=lambda: NOW
    )


def _agent(address: str, *, status: str = "available", handles: tuple[str, ...] = ("work",),
           capabilities: tuple[str, ...] = (), role: str | None = None,
           group: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {"address": address, "node": address.partition("@")[2], "status": status,
            "capabilities": list(capabilities), "handles": list(handles), "role": role,
            "group": group}  # fmt: skip


def _queued(table: TaskTable, dispatcher: Dispatcher, task_id: str, **spec: Any) -> Task:
    task = Task.submitted(task_id, {"type": "work", **spec}, 1_000)
    table.submit(task)
    dispatcher.enqueue(task)
    return task


def _taken(dispatcher: Dispatcher, table: TaskTable) -> list[tuple[str, str]]:
    taken = dispatcher.pump()
    for task, view in taken:
        table.assign(task, view.address)
    return [(task.id, view.address) for task, view in taken]


def test_tasks_go_to_the_least_loaded_agent_higher_priorities_first(table: TaskTable) -> None:
    dispatcher = _dispatcher(table)
    for address in ("a@n", "b@n"):
        dispatcher.agent_changed(_agent(address))
    _queued(table, dispatcher, "low", priority=0)
    _queued(table, dispatcher, "first", priority=2)
    _queued(table, dispatcher, "second", priority=2)
    assert _taken(dispatcher, table) == [("first", "a@n"), ("second", "b@n")]
    assert _taken(dispatcher, table) == []  # each has max_in_flight already
    dispatcher.release("a@n", "first")
    assert _taken(dispatcher, table) == [("low", "a@n")]
    assert (dispatcher.in_flight(), dispatcher.queued()) == (2, 0)


def test_no_task_goes_to_an_agent_of_a_down_node(table: TaskTable) -> None:
    dispatcher = _dispatcher(table)
    dispatcher.agent_changed(_agent("a@n1"))
    assert dispatcher.node_down("n1")
    assert not dispatcher.node_down("n1")  # not news
    _queued(table, dispatcher, "t1")
    assert _taken(dispatcher, table) == []
    assert dispatcher.node_up("n1")
    assert _taken(dispatcher, table) == [("t1", "a@n1")]


def test_a_gone_agent_gets_no_work(table: TaskTable) -> None:
    dispatcher = _dispatcher(table)
    dispatcher.agent_changed(_agent("a@n"))
    assert not dispatcher.agent_changed({"address": "a@n", "status": "gone"})
    _queued(table, dispatcher, "t1")
    assert _taken(dispatcher, table) == []


def test_an_open_breaker_keeps_work_from_its_agent_until_a_trial(table: TaskTable) -> None:
    dispatcher = _dispatcher(table, breaker_failures=2, breaker_cooldown_s=0.0)
    dispatcher.agent_changed(_agent("a@n"))
    assert not dispatcher.failed("a@n")
    assert not dispatcher.failed("a@n")
    task = _queued(table, dispatcher, "t1")
    assert dispatcher.wait(task).code is WaitCode.BREAKERS_OPEN
    assert dispatcher.wait(task).sentence() == (
        "the circuit breaker is open for every capable agent: a@n"
    )
    assert _taken(dispatcher, table) == [("t1", "a@n")]  # cooldown over: one trial task


def test_a_failure_from_a_down_nodes_agent_is_lost_with_the_node(table: TaskTable) -> None:
    dispatcher = _dispatcher(table, breaker_failures=1)
    dispatcher.agent_changed(_agent("a@n1"))
    dispatcher.agent_changed(_agent("b@n2"))
    dispatcher.node_down("n1")
    assert dispatcher.failed("a@n1", NodeDown("node n1 is down"))
    assert not dispatcher.failed("b@n2", NodeDown("b raised it, about another node"))
    assert dispatcher.agents["a@n1"].breaker.state == "closed"
    assert dispatcher.agents["b@n2"].breaker.state == "open"


def test_an_external_agent_lost_with_its_program_is_lost_not_failed(table: TaskTable) -> None:
    dispatcher = _dispatcher(table, breaker_failures=1)
    dispatcher.agent_changed(_agent("ext@gw"))
    dispatcher.agent_changed(_agent("relay@n2"))
    lost = AgentLost("external agent ext@gw went away", data={"agent": "ext@gw"})
    assert dispatcher.failed("ext@gw", lost)
    assert not dispatcher.failed("relay@n2", lost)  # it relayed another agent's loss
    assert dispatcher.agents["ext@gw"].breaker.state == "closed"
    assert dispatcher.agents["relay@n2"].breaker.state == "open"


@pytest.mark.parametrize(
    ("agents", "down", "code", "sentence"),
    [
        ([], [], WaitCode.NONE_REGISTERED, "no agent that handles 'work' is registered"),
        ([_agent("a@n", status="paused"), _agent("b@n", status="paused")], [],
         WaitCode.ALL_PAUSED, "no agent that handles 'work' is available (2 are paused)"),
        ([_agent("a@n", status="paused"), _agent("b@n", status="error")], [],
         WaitCode.NONE_AVAILABLE,
         "no agent that handles 'work' is available (2 are error, paused)"),
        ([_agent("a@n1", status="paused"), _agent("b@n2")], ["n2"], WaitCode.ALL_PAUSED,
         "no agent that handles 'work' is available (1 is paused, 1 on a down node)"),
        ([_agent("b@n2"), _agent("a@n1")], ["n1", "n2"], WaitCode.NODE_DOWN,
         ("waiting: node down: the agents that can run it (a@n1, b@n2) are on nodes that are "
          "down ('n1', 'n2'); it runs once one is back")),
        ([_agent("a@n")], [], WaitCode.ALL_BUSY,
         "the pool of capable agents is exhausted: all 1 are busy (at most 1 tasks each)"),
    ],
)  # fmt: skip
def test_why_a_task_waits(
    table: TaskTable, agents: list[dict[str, Any]], down: list[str], code: WaitCode,
    sentence: str,
) -> None:  # fmt: skip
    dispatcher = _dispatcher(table)
    for record in agents:
        dispatcher.agent_changed(record)
    for node in down:
        dispatcher.node_down(node)
    if code is WaitCode.ALL_BUSY:
        _queued(table, dispatcher, "busy")
        _taken(dispatcher, table)
    task = _queued(table, dispatcher, "t1")
    wait = dispatcher.wait(task)
    assert (wait.code, wait.sentence()) == (code, sentence)
    wire = wait.to_wire()
    assert (wire["code"], wire["reason"], wire["need"]) == (code.value, sentence, ["type", "work"])


def test_a_wait_as_the_wire_shows_it_names_only_what_its_code_names(table: TaskTable) -> None:
    dispatcher = _dispatcher(table)
    for record in (_agent("a@n1", status="paused"), _agent("b@n2")):
        dispatcher.agent_changed(record)
    dispatcher.node_down("n2")
    paused = dispatcher.wait(_queued(table, dispatcher, "t1")).to_wire()
    assert {k: v for k, v in paused.items() if k != "reason"} == {
        "code": "all_paused", "need": ["type", "work"], "states": ["paused"], "count": 1,
        "down": 1,
    }  # fmt: skip
    dispatcher.node_down("n1")
    down = dispatcher.wait(_queued(table, dispatcher, "t2", agent="a@n1")).to_wire()
    assert {k: v for k, v in down.items() if k != "reason"} == {
        "code": "node_down", "need": ["agent", "a@n1"], "agents": ["a@n1"], "nodes": ["n1"],
    }  # fmt: skip


def test_a_pinned_task_waits_for_its_agents_node(table: TaskTable) -> None:
    dispatcher = _dispatcher(table)
    dispatcher.agent_changed(_agent("s1@w1"))
    dispatcher.node_down("w1")
    task = _queued(table, dispatcher, "t1", agent="s1@w1", timeout_s=0.3)
    wait = dispatcher.wait(task)
    assert wait.sentence() == (
        "waiting: node down: its agent s1@w1 is on node 'w1', which is down; it runs once the "
        "node is back"
    )
    error = wait.expiry(task)
    assert isinstance(error, NodeDown)
    assert error.message == "task t1 waited 0.3 s: its agent s1@w1 is on node 'w1', which is down"


def test_only_a_task_no_agent_can_take_expires(table: TaskTable) -> None:
    dispatcher = _dispatcher(table)
    task = _queued(table, dispatcher, "t1", timeout_s=0.3)
    error = dispatcher.wait(task).expiry(task)
    assert isinstance(error, ResourceUnavailable)
    assert error.message == "task t1 waited 0.3 s: no agent that handles 'work' is registered"
    dispatcher.agent_changed(_agent("a@n"))
    _queued(table, dispatcher, "busy")
    _taken(dispatcher, table)
    assert dispatcher.wait(task).expiry(task) is None  # busy agents free up: it waits on
    assert {c.value for c in WaitCode if c.expires} == {
        "node_down",
        "none_registered",
        "none_available",
        "all_paused",
    }


def _failed_attempt(table: TaskTable, task: Task, *, node_failure: bool) -> None:
    if task.state is not TaskState.PENDING:
        table.requeue(task)
    table.assign(task, "a@n")
    table.attempt_failed(task, "a@n", AskTimeout("slow"), node_failure=node_failure)
    table.retry(task, AskTimeout("slow"))


def test_retries_back_off_exponentially_then_the_task_is_a_poison_message(
    table: TaskTable,
) -> None:
    dispatcher = _dispatcher(table)
    task = _queued(table, dispatcher, "t1", max_retries=2, backoff_s=0.1, backoff_max_s=0.3)
    delays = []
    for _ in range(3):
        _failed_attempt(table, task, node_failure=False)
        delays.append(dispatcher.verdict(task, AskTimeout("slow"), node_failure=False))
    assert delays[:2] == [0.1, 0.2]
    poison = delays[2]
    assert isinstance(poison, PoisonMessage)
    assert poison.message == "task t1 (work) failed 3 times; last: AskTimeout: slow"
    assert (poison.data["attempts"], poison.data["node_failures"]) == (3, 0)


def test_node_failures_have_their_own_backoff_and_bound(table: TaskTable) -> None:
    dispatcher = _dispatcher(table)
    task = _queued(table, dispatcher, "t1", max_retries=0, max_node_failures=1, backoff_s=0.1)
    _failed_attempt(table, task, node_failure=True)
    assert dispatcher.verdict(task, NodeDown("gone"), node_failure=True) == 0.1
    _failed_attempt(table, task, node_failure=True)
    poison = dispatcher.verdict(task, NodeDown("gone"), node_failure=True)
    assert isinstance(poison, PoisonMessage)
    assert poison.message == (
        "task t1 (work) lost its node 2 times (max_node_failures 1); last: NodeDown: gone"
    )
    assert GiveUp.NODE_FAILURES.value == "node_failures"


def test_invalid_params_is_not_retried(table: TaskTable) -> None:
    dispatcher = _dispatcher(table)
    task = _queued(table, dispatcher, "t1")
    refusal = InvalidParams("the body is missing 'text'")
    assert dispatcher.verdict(task, refusal, node_failure=False) is refusal
    assert isinstance(dispatcher.verdict(task, AgentError("boom"), node_failure=False), float)


def test_voters_are_the_least_loaded_routable_agents_and_targets_name_agents(
    table: TaskTable,
) -> None:
    dispatcher = _dispatcher(table, max_in_flight=4)
    dispatcher.agent_changed(_agent("a@n", group="g", role="r"))
    dispatcher.agent_changed(_agent("b@n", group="control-plane"))
    dispatcher.agent_changed(_agent("c@n", status="paused"))
    _queued(table, dispatcher, "busy")
    _taken(dispatcher, table)  # a@n has one in flight
    task = Task.submitted("s1", {"type": "work"}, 1_000)
    assert dispatcher.voters(task, None) == ["b@n", "a@n"]
    assert dispatcher.voters(task, 1) == ["b@n"]
    assert dispatcher.targets("all") == ["a@n", "c@n"]  # not the control plane
    assert (dispatcher.targets("group:g"), dispatcher.targets("role:r")) == (["a@n"], ["a@n"])
    assert (dispatcher.targets("c"), dispatcher.targets("c@n"), dispatcher.targets("x@n")) == (
        ["c@n"], ["c@n"], []
    )  # fmt: skip
