"""Every operation of the gateway's table, called over MCP against a real cluster: its arguments
and what its answer must show (:data:`CALLS`), and a synchronous MCP session to call them with
(:class:`McpSession`), so that a call whose effect comes later (a monitor's sample, a workflow's
step) is waited for with :func:`macp.testing.wait_until`.

The cluster these calls expect (tests/integration/test_gateway_mcp.py's fixture): a head, and
a worker ``w1`` running ``sq`` (a Squarer), ``echo`` and ``hanger`` (Echoes), ``llm`` (a
model_agents.Llm) and ``hub`` (a :class:`macp.Hub`, whose hooks answer the delegation calls)
that allows spawning :data:`SPAWNABLE`, and a resource pool ``gpu`` of capacity 2
(:data:`POOL`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from anyio.from_thread import start_blocking_portal
from mcp import Client

from macp.errors import AskTimeout
from macp.gateway import OPERATIONS
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

    from anyio.from_thread import BlockingPortal
    from mcp.server import Server
    from mcp_types import CallToolResult

__all__ = ["CALLS", "POOL", "SPAWNABLE", "SQUARE", "Call", "Known", "McpSession", "structured"]

SQUARE = {"type": "square", "body": {"x": 7}, "capabilities": ["square"]}
SPAWNABLE = ("agents:Voter", "agents:Echo")  # no Squarer: later square tasks stay on sq@w1
POOL = {"pool": "gpu", "capacity": 2}
WAIT_S = 20.0
"""How long a read whose effect comes later (a monitor's sample, a step) is asked again."""


def structured(result: CallToolResult) -> dict[str, Any]:
    """A successful tool result's structured content, checked against its text."""
    assert not result.is_error, result.content
    assert result.structured_content is not None
    text = result.content[0]
    assert text.type == "text"
    assert json.loads(text.text) == result.structured_content
    return dict(result.structured_content)


class McpSession:
    """An in-memory MCP client session run on an event loop of its own (a portal thread), its
    tools called synchronously: a test can wait on them with ``wait_until``."""

    def __init__(self, portal: BlockingPortal, client: Client) -> None:
        self._portal = portal
        self._client = client

    @classmethod
    @contextmanager
    def of(cls, server: Server[Any]) -> Iterator[McpSession]:
        """A session with ``server``, closed (and its loop ended) on leaving: a failure in the
        ``with`` body is raised as it is, not inside the client's task group."""
        with start_blocking_portal() as portal:
            session = portal.wrap_async_context_manager(Client(server))
            client = session.__enter__()
            try:
                yield cls(portal, client)
            finally:
                session.__exit__(None, None, None)

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Tool ``name`` called with ``arguments``: its structured answer (it must succeed)."""
        result: CallToolResult = self._portal.call(self._client.call_tool, name, arguments)
        return structured(result)


@dataclass
class Known:
    """What the calls of one run share: names of their own, a task run to its end by a real
    agent, a task that waits for an agent nobody runs, and each call's answer by name."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    done_task: str = ""
    waiting_task: str = ""
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def swarm(self) -> str:
        return f"mcp-{self.tag}"

    @property
    def spawned(self) -> str:
        """The address agent_spawn answered (an Echo of the swarm, paused by agent_control)."""
        return str(self.seen["agent_spawn"]["address"])

    @property
    def run_id(self) -> str:
        return str(self.seen["workflow_execute"]["run_id"])

    @property
    def session_id(self) -> str:
        return str(self.seen["create_collaboration_session"]["session_id"])

    @property
    def project_id(self) -> str:
        return str(self.seen["create_project"]["project_id"])

    @property
    def goal_id(self) -> str:
        return str(self.seen["create_goal"]["goal_id"])

    def prepare(self, session: McpSession) -> None:
        """A task run to its end by a real agent, one that waits for an agent nobody runs, and
        a model report from llm@w1 (figures of llm@2)."""
        self.done_task = session.call("task_orchestrate", SQUARE)["task_id"]
        finished = session.call("task_result", {"task_id": self.done_task, "wait_s": 10})
        assert finished["done"] is True, finished
        waiting = session.call("task_orchestrate", {"type": "nobody", "timeout_s": 60})
        self.waiting_task = waiting["task_id"]
        report = {"inference_ms": 12, "tokens_in": 5, "tokens_out": 2}
        session.call("agent_message", {"agent": "llm@w1", "type": "infer", "body": report})


Arguments = Callable[[Known], dict[str, Any]]
Shows = Callable[[dict[str, Any], Known], bool]


@dataclass(frozen=True)
class Call:
    """An operation's arguments and what its answer must show; with ``wait``, a read whose
    effect comes later, asked again until its answer shows it (at most :data:`WAIT_S`)."""

    arguments: Arguments
    shows: Shows
    wait: bool = False

    def check(self, session: McpSession, name: str, known: Known) -> dict[str, Any]:
        """Call ``name`` over ``session``: its answer, once it shows what it must."""
        arguments = self.arguments(known)
        answers = [session.call(name, arguments)]
        if not self.wait:
            assert self.shows(answers[-1], known), (name, answers[-1])
            return answers[-1]
        assert OPERATIONS[name].scope.endswith(":read"), f"{name} changes things: it is called once"

        def shown() -> bool:
            if self.shows(answers[-1], known):
                return True
            answers.append(session.call(name, arguments))
            return False

        try:
            wait_until(shown, WAIT_S, poll_s=0.05)
        except AskTimeout:
            raise AssertionError((name, f"not shown within {WAIT_S:g} s", answers[-1])) from None
        return answers[-1]


def _addresses(answer: dict[str, Any]) -> list[str]:
    return sorted(a["address"] for a in answer["agents"])


# A workflow whose first step squares its input on a real agent, and whose second hangs on
# hanger@w1: a run that stays running, to be paused, resumed and cancelled.
HOLD = {"name": "hold", "steps": [
    {"id": "a", "type": "square", "body": {"x": "${input}"}, "capabilities": ["square"]},
    {"id": "b", "type": "hang", "agent": "hanger@w1", "depends_on": ["a"], "retries": 0},
]}  # fmt: skip


def _held(r: dict[str, Any]) -> bool:
    steps = r["steps"]
    return (r["state"], steps["a"]["state"], steps["b"]["state"]) == (
        "running", "succeeded", "running",
    ) and steps["a"]["output"] == {"square": 9, "by": "sq@w1"}  # fmt: skip


# Every operation of the table: its arguments, and what its answer must show. A new operation
# without an entry here fails test_every_tool_of_the_table_is_called_and_answers. They are
# called in this order, so an entry may use what an earlier call answered (Known.seen).
CALLS: dict[str, Call] = {
    "ping": Call(lambda _k: {}, lambda r, _k: r["status"] == "ok" and r["timestamp"] > 0),
    # -- tasks
    "task_orchestrate": Call(lambda _k: SQUARE, lambda r, _k: set(r) == {"task_id", "state"}),
    "task_status": Call(
        lambda k: {"task_id": k.done_task},
        lambda r, _k: (r["state"], r["agent"]) == ("succeeded", "sq@w1"),
    ),
    "task_result": Call(
        lambda k: {"task_id": k.done_task, "wait_s": 10},
        lambda r, k: (
            r
            == {
                "task_id": k.done_task,
                "done": True,
                "state": "succeeded",
                "result": {"square": 49, "by": "sq@w1"},
            }
        ),
    ),
    "task_list": Call(
        lambda _k: {"type": "nobody", "states": ["pending"]},
        lambda r, k: (
            {(t["type"], t["state"]) for t in r["tasks"]} == {("nobody", "pending")}
            and r["count"] == len(r["tasks"]) <= r["total"] == r["counts"]["pending"]
            and next(t for t in r["tasks"] if t["id"] == k.waiting_task)["wait"]["code"]
            == "none_registered"
        ),
    ),
    # -- delegation: subtasks of the waiting task (unfinished until task_cancel), on sq@w1
    "decompose_task": Call(
        lambda _k: {"type": "topology.submit", "body": {"x": 3}},
        lambda r, _k: r == {"hub": "hub@w1", "parts": [{"x": 3}], "count": 1},
    ),
    "assign_subtasks": Call(
        lambda k: {
            "parent": k.waiting_task,
            "type": "square",
            "parts": [{"x": 2}, {"x": 3}],
            "capabilities": ["square"],
        },
        lambda r, k: (
            (r["parent"], r["count"], [s["body"] for s in r["subtasks"]])
            == (k.waiting_task, 2, [{"x": 2}, {"x": 3}])
        ),
    ),
    "delegate_subtask": Call(
        lambda k: {
            "parent": k.waiting_task,
            "agent": "sq",
            "type": "square",
            "body": {"x": 4},
            "context": {"why": "mcp"},
        },
        lambda r, k: (r["parent"], r["agent"]) == (k.waiting_task, "sq@w1") and bool(r["task_id"]),
    ),
    "task_tree": Call(
        lambda k: {"task_id": k.waiting_task},
        lambda r, k: (
            (r["tree"]["id"], r["count"], r["truncated"]) == (k.waiting_task, 3, False)
            and [(c["state"], c["agent"], c["parent"]) for c in r["tree"]["children"]]
            == [("succeeded", "sq@w1", k.waiting_task)] * 3
        ),
        wait=True,  # until the three subtasks are done
    ),
    "task_lineage": Call(
        lambda k: {"task_id": k.waiting_task},
        lambda r, k: (
            (r["root"], r["ancestors"], r["contributors"]["agents"])
            == (k.waiting_task, [], ["sq@w1"])
            and [i["body"] for i in r["contributors"]["inputs"]][1:]
            == [{"x": 2}, {"x": 3}, {"x": 4}]
        ),
    ),
    "merge_results": Call(
        lambda k: {"hub": "hub", "parent": k.waiting_task},
        lambda r, _k: (
            (r["hub"], r["merged"])
            == ("hub@w1", [{"square": x * x, "by": "sq@w1"} for x in (2, 3, 4)])
        ),
    ),
    "task_cancel": Call(
        lambda k: {"task_id": k.waiting_task},
        lambda r, _k: r == {"cancelled": True, "state": "cancelled"},
    ),
    # -- agents: the worker's, then a swarm and an agent spawned for real
    "agent_list": Call(
        lambda _k: {},
        lambda r, _k: (
            {"sq@w1", "echo@w1", "hanger@w1"} <= set(_addresses(r))
            and "coordinator@head" not in _addresses(r)
            and r["count"] == len(r["agents"])
            and next(a for a in r["agents"] if a["address"] == "sq@w1")["succeeded"] >= 1
            and all(type(a["failed"]) is int for a in r["agents"])
        ),
    ),
    "agent_message": Call(
        lambda _k: {"agent": "echo", "type": "echo", "body": [1, 2]},
        lambda r, _k: (
            (r["agent"], r["reply"]["echo"], r["reply"]["me"]) == ("echo@w1", [1, 2], "echo@w1")
        ),
    ),
    "check_agent_responsiveness": Call(
        lambda _k: {"agent": "sq"},
        lambda r, _k: (
            (r["agent"], r["responsive"], r["state"], r["heartbeat_stale"])
            == ("sq@w1", True, "running", False)
            and r["round_trip_ms"] > 0
        ),
    ),
    "swarm_init": Call(
        lambda k: {
            "name": k.swarm,
            "topology": "star",
            "agents": [{"class": "agents:Voter", "count": 2, "role": "council"}],
        },
        lambda r, k: (
            r
            == {
                "name": k.swarm,
                "topology": "star",
                "count": 2,
                "agents": [f"{k.swarm}-voter-1@w1", f"{k.swarm}-voter-2@w1"],
            }
        ),
    ),
    "agent_spawn": Call(
        lambda k: {"class": "agents:Echo", "name": f"{k.swarm}-scribe", "group": k.swarm},
        lambda r, k: r == {"address": f"{k.swarm}-scribe@w1", "node": "w1", "class": "agents:Echo"},
    ),
    "find_agents": Call(
        lambda k: {"group": k.swarm, "role": "council", "capabilities": ["vote"]},
        lambda r, k: _addresses(r) == k.seen["swarm_init"]["agents"] and r["count"] == 2,
    ),
    "agent_control": Call(
        lambda k: {"command": "pause", "target": k.spawned},
        lambda r, k: (
            r["ok"] is True
            and list(r["answers"]) == [k.spawned]
            and r["answers"][k.spawned]["result"] == {"state": "paused"}
        ),
    ),
    "agent_status": Call(
        lambda k: {"agent": k.spawned},
        lambda r, k: (
            (r["address"], r["live"]["state"], r["live_error"]) == (k.spawned, "paused", None)
        ),
    ),
    "check_message_recipient_status": Call(
        lambda k: {"agent": k.spawned},
        lambda r, k: (
            (r["agent"], r["status"], r["deliverable"], r["node_up"])
            == (k.spawned, "paused", True, True)
            and r["why"].startswith("it is paused")
        ),
        wait=True,  # the registry hears of the pause with the node's next heartbeat
    ),
    "swarm_status": Call(
        lambda k: {"name": k.swarm},
        lambda r, k: (
            (r["topology"], r["count"], r["missing"]) == ("star", 3, [])
            and r["by_status"] == {"available": 2, "paused": 1}
            and _addresses(r) == sorted([*k.seen["swarm_init"]["agents"], k.spawned])
        ),
        wait=True,
    ),
    # -- the monitor's figures: the task prepare ran, once a sample has counted it
    "metrics": Call(
        lambda _k: {"prefix": "tasks."},
        lambda r, _k: (
            r["metrics"].get("tasks.succeeded{type=square}", 0) >= 1
            and all(name.startswith("tasks.") for name in r["metrics"])
            and r["firing"] == len(r["alerts"])
        ),
        wait=True,
    ),
    "metrics_history": Call(
        lambda _k: {"names": ["tasks.succeeded{type=square}"], "since_s": 600},
        lambda r, _k: (
            list(r["series"]) == ["tasks.succeeded{type=square}"]
            and r["series"]["tasks.succeeded{type=square}"][-1][1] >= 1
            and r["since_s"] == 600
        ),
        wait=True,
    ),
    # -- the topology's shape (this cluster was started by no topology file: by group or role)
    "topology_shape": Call(
        lambda _k: {},
        lambda r, _k: (
            (r["recorded"], r["kind"], r["edges"]) == (False, None, [])
            and "w1" in r["nodes"]
            and any("sq@w1" in g["instances"] for g in r["agents"].values())
        ),
    ),
    "alert_list": Call(
        lambda _k: {},
        lambda r, _k: set(r) == {"active", "recent"} and isinstance(r["recent"], list),
        wait=False,
    ),
    # -- evaluations of the task prepare ran, and the model figures of its report
    "evaluate_contribution": Call(
        lambda k: {"evaluator": "mcp", "task_id": k.done_task, "scores": {"accuracy": 0.9}},
        lambda r, k: (
            (r["contributor"], r["task_id"], r["score"], r["scores"])
            == ("sq@w1", k.done_task, 0.9, {"accuracy": 0.9})
            and r["evaluations"] >= 1
        ),
    ),
    "agent_evaluations": Call(
        lambda k: {"task_id": k.done_task},
        lambda r, k: [e["id"] for e in r["evaluations"]] == [k.seen["evaluate_contribution"]["id"]],
    ),
    "performance_scores": Call(
        lambda _k: {},
        lambda r, _k: r["agents"]["sq@w1"]["evaluations"] >= 1 and r["count"] == len(r["agents"]),
    ),
    "model_metrics": Call(
        lambda _k: {"model": "llm@2"},
        lambda r, _k: (
            list(r["models"]) == ["llm@2"]
            and r["models"]["llm@2"]["agents"] == ["llm@w1"]
            and r["agents"]["llm@w1"]["models"] == ["llm@2"]
            and r["models"]["llm@2"]["tokens_in"] >= 5
        ),
        wait=True,  # the report reaches the monitor after the agent's answer
    ),
    "model_health": Call(
        lambda _k: {"model": "llm@2"},
        lambda r, _k: r["models"]["llm@2"]["status"] == "healthy",
        wait=True,
    ),
    "check_message_frequency": Call(
        lambda _k: {"agent": "sq", "window_s": 60, "flood_per_s": 1000},
        lambda r, _k: (
            list(r["agents"]) == ["sq@w1"]
            and r["agents"]["sq@w1"]["total"] >= 1
            and (r["flooded"], r["flooding"], r["agents"]["sq@w1"]["flood"]) == ([], False, False)
        ),
        wait=True,
    ),
    # -- shared state
    "memory_store": Call(
        lambda k: {"namespace": k.swarm, "key": "k1", "value": {"a": [1]}},
        lambda r, k: (
            r == {"namespace": k.swarm, "key": "k1", "stored": True, "expires_at_ms": None}
        ),
    ),
    "memory_retrieve": Call(
        lambda k: {"namespace": k.swarm, "key": "k1"},
        lambda r, _k: (r["found"], r["value"]) == (True, {"a": [1]}),
    ),
    "memory_list": Call(
        lambda k: {"namespace": k.swarm, "prefix": "k"},
        lambda r, _k: (r["keys"], r["count"]) == (["k1"], 1),
    ),
    "memory_delete": Call(
        lambda k: {"namespace": k.swarm, "key": "k1"},
        lambda r, _k: r["deleted"] is True,
    ),
    "lock_acquire": Call(
        lambda k: {"path": f"/data/{k.tag}", "owner": "alice", "ttl_s": 30},
        lambda r, _k: r["acquired"] is True,
    ),
    "lock_check": Call(
        lambda k: {"path": f"/data/{k.tag}"},
        lambda r, _k: (r["locked"], r["owner"]) == (True, "alice"),
    ),
    "lock_release": Call(
        lambda k: {"path": f"/data/{k.tag}", "owner": "alice"},
        lambda r, k: r == {"path": f"/data/{k.tag}", "owner": "alice", "released": True},
    ),
    "resource_allocate": Call(
        lambda _k: {"owner": "trainer", "amounts": {"gpu": 2}},
        lambda r, _k: r["owner"] == "trainer" and bool(r["lease_id"]),
    ),
    "resource_usage": Call(
        lambda _k: {},
        lambda r, _k: r["pools"]["gpu"] == {"capacity": 2, "allocated": 2, "free": 0},
    ),
    "resource_release": Call(
        lambda k: {"lease_id": k.seen["resource_allocate"]["lease_id"]},
        lambda r, k: r == {"lease_id": k.seen["resource_allocate"]["lease_id"], "released": True},
    ),
    # -- workflows: a run whose first step is done and whose second holds it running
    "workflow_define": Call(
        lambda _k: HOLD, lambda r, _k: r == {"name": "hold", "steps": ["a", "b"]}
    ),
    "workflow_execute": Call(
        lambda _k: {"workflow": "hold", "input": 3, "strategy": "sequential"},
        lambda r, _k: set(r) == {"run_id"} and bool(r["run_id"]),
    ),
    "workflow_status": Call(lambda k: {"run_id": k.run_id}, lambda r, _k: _held(r), wait=True),
    "workflow_pause": Call(
        lambda k: {"run_id": k.run_id},
        lambda r, k: r == {"run_id": k.run_id, "state": "paused"},
    ),
    "workflow_resume": Call(
        lambda k: {"run_id": k.run_id},
        lambda r, k: r == {"run_id": k.run_id, "state": "running"},
    ),
    "workflow_list": Call(
        lambda _k: {},
        lambda r, k: (
            "hold" in r["definitions"]
            and {"id": k.run_id, "state": "running"}.items()
            <= next(run for run in r["runs"] if run["id"] == k.run_id).items()
        ),
    ),
    "workflow_cancel": Call(
        lambda k: {"run_id": k.run_id},
        lambda r, k: r == {"run_id": k.run_id, "cancelled": True, "state": "cancelled"},
    ),
    # -- a collaboration session of the worker's agents (Echoes and a Squarer: none of them
    # handles session.message, so a message is logged and none is told it)
    "create_collaboration_session": Call(
        lambda k: {"title": k.tag, "participants": ["sq"], "coordinator": "echo"},
        lambda r, k: (
            (r["title"], r["coordinator"], r["state"], r["offline"])
            == (k.tag, "echo@w1", "open", [])
            and sorted(r["participants"]) == ["echo@w1", "sq@w1"]
        ),
    ),
    "join_session": Call(
        lambda k: {"session_id": k.session_id, "agent": "hanger@w1"},
        lambda r, _k: r["participants"]["hanger@w1"]["status"] == "active",
    ),
    "send_session_message": Call(
        lambda k: {"session_id": k.session_id, "sender": "echo", "body": {"hello": k.tag}},
        lambda r, k: (
            r
            == {
                "session_id": k.session_id,
                "seq": 1,
                "delivered": [],
                "unhandled": ["hanger@w1", "sq@w1"],
                "offline": [],
            }
        ),
    ),
    "session_messages": Call(
        lambda k: {"session_id": k.session_id},
        lambda r, k: (
            (r["count"], r["last_seq"]) == (1, 1)
            and (r["messages"][0]["sender"], r["messages"][0]["body"])
            == ("echo@w1", {"hello": k.tag})
        ),
    ),
    "request_assistance": Call(
        lambda k: {
            "capabilities": ["square"],
            "body": {"x": 5},
            "session_id": k.session_id,
            "urgency": "high",
            "timeout_s": 20,
        },
        lambda r, k: (
            (r["helper"], r["answer"], r["priority"], r["from_session"])
            == ("sq@w1", {"square": 25, "by": "sq@w1"}, 2, True)
            and bool(r["task_id"])
        ),
    ),
    "leave_session": Call(
        lambda k: {"session_id": k.session_id, "agent": "hanger"},
        lambda r, _k: r["participants"]["hanger@w1"]["status"] == "left",
    ),
    "session_status": Call(
        lambda k: {"session_id": k.session_id},
        lambda r, k: (r["session_id"], r["state"], r["last_seq"]) == (k.session_id, "open", 1),
    ),
    "list_sessions": Call(
        lambda _k: {"state": "open"},
        lambda r, k: k.session_id in [s["session_id"] for s in r["sessions"]],
    ),
    "close_session": Call(
        lambda k: {"session_id": k.session_id},
        lambda r, k: (r["session_id"], r["state"]) == (k.session_id, "closed"),
    ),
    # -- a project whose goal links the task prepare ran to its end
    "create_project": Call(
        lambda k: {"name": k.tag, "lead": "echo", "status": "active"},
        lambda r, k: (r["name"], r["lead"], r["status"]) == (k.tag, "echo@w1", "active"),
    ),
    "update_project": Call(
        lambda k: {"project_id": k.project_id, "status": "on_hold"},
        lambda r, k: (r["project_id"], r["status"]) == (k.project_id, "on_hold"),
    ),
    "list_projects": Call(
        lambda _k: {"status": "on_hold"},
        lambda r, k: k.project_id in [p["project_id"] for p in r["projects"]],
    ),
    "create_goal": Call(
        lambda k: {"project_id": k.project_id, "title": "squares"},
        lambda r, k: (r["project_id"], r["status"]) == (k.project_id, "planned"),
    ),
    "link_to_goal": Call(
        lambda k: {"goal_id": k.goal_id, "task_id": k.done_task},
        lambda r, k: [(x["kind"], x["id"]) for x in r["links"]] == [("task", k.done_task)],
    ),
    "update_goal": Call(
        lambda k: {"goal_id": k.goal_id, "status": "active"},
        lambda r, k: (r["goal_id"], r["status"]) == (k.goal_id, "active"),
    ),
    "goal_status": Call(
        lambda k: {"goal_id": k.goal_id},
        lambda r, k: (
            (r["progress"], r["derived"]) == (1.0, "done")
            and r["items"]
            == [
                {
                    "kind": "task",
                    "id": k.done_task,
                    "state": "succeeded",
                    "outcome": "done",
                    "progress": 1.0,
                }
            ]
        ),
    ),
    "list_goals": Call(
        lambda k: {"project_id": k.project_id},
        lambda r, k: (
            [(g["goal_id"], g["progress"], g["derived"]) for g in r["goals"]]
            == [(k.goal_id, 1.0, "done")]
        ),
    ),
    "project_status": Call(
        lambda k: {"project_id": k.project_id},
        lambda r, k: (
            (r["progress"], r["derived"], [g["goal_id"] for g in r["goals"]])
            == (1.0, "done", [k.goal_id])
        ),
    ),
}
