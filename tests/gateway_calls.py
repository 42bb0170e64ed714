"""Every operation of the gateway's table, called over MCP against a real cluster: its arguments
and what its answer must show (:data:`CALLS`), and a synchronous MCP session to call them with
(:class:`McpSession`), so that a call whose effect comes later (a monitor's sample, a workflow's
step) is waited for with :func:`macp.testing.wait_until`.

The cluster these calls expect (tests/integration/test_gateway_mcp.py's fixture): a head, and
a worker ``w1`` running ``sq`` (a Squarer), ``echo`` and ``hanger`` (Echoes) that allows
spawning :data:`SPAWNABLE`, and a resource pool ``gpu`` of capacity 2 (:data:`POOL`).
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

    def prepare(self, session: McpSession) -> None:
        """A task run to its end by a real agent, and one that waits for an agent nobody runs."""
        self.done_task = session.call("task_orchestrate", SQUARE)["task_id"]
        finished = session.call("task_result", {"task_id": self.done_task, "wait_s": 10})
        assert finished["done"] is True, finished
        waiting = session.call("task_orchestrate", {"type": "nobody", "timeout_s": 60})
        self.waiting_task = waiting["task_id"]


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
}
