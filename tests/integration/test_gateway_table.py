"""The operations table over a real control plane: operations validate their parameters into
one sentence naming the field, act on the runtime (a task journaled, run by a real agent, its
result fetched), and wait on the runtime's futures without a thread each."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

import pytest

from macp import (
    Agent,
    Cluster,
    Context,
    InvalidParams,
    NotFound,
    UnknownMessageType,
    handler,
    start_control_plane,
)
from macp.gateway import OPERATIONS, Runtime, Scope, error_of

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp import Node

pytestmark = pytest.mark.integration


class Doubler(Agent):
    capabilities = ("double",)

    @handler("double")
    def double(self, body: int) -> int:
        return body * 2

    @handler("hold")
    def hold(self, body: float, ctx: Context) -> str:
        threading.Event().wait(body)  # a handler that takes its time
        return "held"


@pytest.fixture
def runtime(make_node: Callable[..., Node], tmp_path: Path) -> Runtime:
    head = make_node("head")
    start_control_plane(head, journal=tmp_path / "journal.db")
    head.spawn(Doubler, "d1")
    cluster = Cluster(head)
    cluster.wait_for_agents(["d1@head"], timeout_s=10)
    return Runtime(cluster)


def call(runtime: Runtime, name: str, arguments: dict[str, Any] | None = None) -> Any:
    return asyncio.run(OPERATIONS[name].call(runtime, arguments))


def test_a_task_submitted_through_the_table_runs_on_a_real_agent(runtime: Runtime) -> None:
    submitted = call(runtime, "task_orchestrate", {"type": "double", "body": 21})
    answer = call(runtime, "task_result", {"task_id": submitted["task_id"], "wait_s": 10})
    assert answer == {"task_id": submitted["task_id"], "done": True, "state": "succeeded",
                      "result": 42}  # fmt: skip
    status = call(runtime, "task_status", {"task_id": submitted["task_id"]})
    assert status["state"] == "succeeded"
    assert status["agent"] == "d1@head"


def test_a_result_not_ready_within_wait_s_answers_the_state(runtime: Runtime) -> None:
    submitted = call(runtime, "task_orchestrate", {"type": "hold", "body": 2.0})
    answer = call(runtime, "task_result", {"task_id": submitted["task_id"], "wait_s": 0.2})
    assert answer["done"] is False
    assert answer["state"] in {"pending", "assigned", "running"}


def test_parameters_are_checked_into_one_sentence_naming_the_field(runtime: Runtime) -> None:
    with pytest.raises(InvalidParams, match=r"^task_orchestrate: 'priority' must be less than"):
        call(runtime, "task_orchestrate", {"type": "double", "priority": 9})
    with pytest.raises(InvalidParams, match=r"^task_orchestrate: 'type' is required"):
        call(runtime, "task_orchestrate", {})
    with pytest.raises(InvalidParams, match=r"unknown key 'prioritee'"):
        call(runtime, "task_orchestrate", {"type": "double", "prioritee": 1})
    with pytest.raises(InvalidParams, match=r"must be a JSON object, not list"):
        call(runtime, "task_status", [1])  # type: ignore[arg-type]


def test_an_unknown_operation_is_method_not_found() -> None:
    with pytest.raises(UnknownMessageType, match=r"no operation named 'task_orchestrat'") as e:
        OPERATIONS["task_orchestrat"]
    assert error_of(e.value)["code"] == -32601


def test_a_runtime_error_keeps_its_code(runtime: Runtime) -> None:
    with pytest.raises(NotFound, match="no task 'nope'") as e:  # an InvalidParams
        call(runtime, "task_status", {"task_id": "nope"})
    assert error_of(e.value) == {"code": -32602, "message": e.value.message,
                                 "data": {"error": "NotFound"}}  # fmt: skip


def test_a_bug_in_a_handler_is_an_internal_error() -> None:
    assert error_of(ZeroDivisionError("x"))["code"] == -32603


def test_many_waiting_calls_cost_no_thread_each(runtime: Runtime) -> None:
    async def many() -> list[Any]:
        ids = [
            (await OPERATIONS["task_orchestrate"].call(runtime, {"type": "double", "body": i}))[
                "task_id"
            ]
            for i in range(50)
        ]
        before = threading.active_count()
        waits = [OPERATIONS["task_result"].call(runtime, {"task_id": t, "wait_s": 10}) for t in ids]
        gathered = asyncio.gather(*waits)
        await asyncio.sleep(0)  # every wait is registered before the count
        assert threading.active_count() == before
        return list(await gathered)

    answers = asyncio.run(many())
    assert [a["result"] for a in answers] == [i * 2 for i in range(50)]


def test_every_operation_has_a_schema_a_scope_and_a_summary() -> None:
    for op in OPERATIONS:
        assert op.input_schema()["type"] == "object", op.name
        assert isinstance(op.scope, Scope)
        assert op.summary.endswith("."), op.name
    scopes = {op.name: op.scope for op in OPERATIONS}
    assert scopes["ping"] is Scope.SYSTEM_READ
    assert scopes["task_orchestrate"] is scopes["task_cancel"] is Scope.TASKS_WRITE
    assert scopes["task_status"] is scopes["task_list"] is Scope.TASKS_READ
    assert scopes["agent_control"] is Scope.CONTROL
    assert scopes["agent_spawn"] is scopes["swarm_init"] is Scope.AGENTS_ADMIN
    assert scopes["workflow_define"] is Scope.WORKFLOWS_DEFINE
    assert scopes["memory_store"] is scopes["memory_delete"] is Scope.MEMORY_WRITE
    assert scopes["memory_retrieve"] is scopes["memory_list"] is Scope.MEMORY_READ
    assert call_ping()["status"] == "ok"


def call_ping() -> Any:
    return asyncio.run(OPERATIONS["ping"].call(None, {}))  # type: ignore[arg-type]
