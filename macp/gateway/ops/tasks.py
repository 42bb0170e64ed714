"""Task operations: submit (alone, or to several agents at once with a consensus), follow,
fetch the result of, cancel and list tasks. Each is the coordinator's own request: the task
is journaled, routed, retried and supervised as any other.

With ``parallelism`` > 1, ``agents`` or a ``consensus``, the task is a scatter
(:mod:`macp.actors.coordinator.scatter`): sent at once to the ``agents`` named, else to the
``parallelism`` least loaded agents that can run it (by ``role``, ``capabilities`` or its
type), else to all of them; their replies make one result as ``consensus`` says (``all`` by
default). A scatter is not retried (each agent answers once) and keeps no idempotency key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Self, get_args

from pydantic import Field, model_validator

from macp.actors.coordinator import CANCEL, DEFAULTS, RESULT, SCATTER, STATUS, SUBMIT, TASKS
from macp.actors.coordinator.task import ChildPolicy, TaskState
from macp.errors import AskTimeout
from macp.gateway.ops._table import OPERATIONS
from macp.gateway.table import Params, Scope

if TYPE_CHECKING:
    from macp.gateway.bridge import Runtime

__all__ = ["TaskList", "TaskOrchestrate", "TaskRef", "TaskResult"]

_COORDINATOR = "coordinator"

Consensus = Literal["all", "first", "majority", "quorum"]
_MOST_LISTED = 10_000
_LISTED = 1000  # by default: every task of a busy minute, a few hundred KiB of JSON


class TaskOrchestrate(Params):
    type: str = Field(min_length=1)
    """The handler type an agent runs (the agent declares it with @handler)."""
    body: Any = None
    """The task's input, any JSON value."""
    capabilities: list[str] = Field(default_factory=list)
    """What the agent must have (default: any agent that handles the type)."""
    role: str | None = None
    """Run it on an agent with this role."""
    agent: str | None = None
    """Run it on this agent (an address) only."""
    priority: int = Field(DEFAULTS.priority, ge=0, le=3)
    """0 (low) to 3 (critical); higher goes first."""
    timeout_s: float = Field(DEFAULTS.timeout_s, gt=0)
    """Per attempt, and how long to wait for a capable agent."""
    max_retries: int = Field(DEFAULTS.max_retries, ge=0)
    """Retries after the first attempt before the task is a poison message."""
    idempotency_key: str | None = None
    """Submitting the same key again answers the first task."""
    parent: str | None = None
    """A task not yet finished that this one is a subtask of (see task_lineage)."""
    delegated_by: str | None = None
    """The agent that delegates it (an address); with a parent, default: the parent's agent."""
    run: str | None = None
    """The workflow run it belongs to (with a parent, default: the parent's)."""
    deadline: float | None = Field(None, gt=0)
    """A time in epoch seconds: past it the task fails, and is not retried."""
    context: Any = None
    """Contextual data its handler gets (ctx.context)."""
    on_child_failure: ChildPolicy = DEFAULTS.on_child_failure
    """What a failure of one of its subtasks does to it: fail it, ignore it, or retry the
    subtask (up to child_retries times)."""
    child_retries: int = Field(DEFAULTS.child_retries, ge=0)
    """With on_child_failure retry: how many times a subtask is resubmitted."""
    parallelism: int | None = Field(None, ge=1)
    """Run it on this many agents at once, the least loaded that can (with a consensus alone:
    every agent that can)."""
    agents: list[str] | None = Field(None, min_length=1)
    """Run it on each of these agents (addresses) at once."""
    consensus: Consensus | None = None
    """How the replies of several agents make one result: all (every reply), first, majority,
    quorum (the value enough of them agree on)."""
    quorum: int | None = Field(None, ge=1)
    """With consensus quorum: how many equal replies decide."""

    @property
    def scatter(self) -> bool:
        """Whether it runs on several agents at once."""
        return (self.parallelism or 1) > 1 or self.consensus is not None or bool(self.agents)

    @model_validator(mode="after")
    def _scatter_fits(self) -> Self:
        if self.consensus == "quorum" and self.quorum is None:
            raise ValueError("consensus 'quorum' needs 'quorum': how many equal replies decide")
        if not self.scatter:
            return self
        if self.agent is not None:
            raise ValueError(
                "'agent' runs it on one agent; to run it on several at once give 'agents'"
            )
        if self.idempotency_key is not None:
            raise ValueError(
                "'idempotency_key' is not kept for a task run on several agents at once; "
                "leave it out, or run it on one agent"
            )
        lineage = (self.parent, self.delegated_by, self.run, self.deadline, self.context)
        if any(field is not None for field in lineage):
            raise ValueError(
                "'parent', 'delegated_by', 'run', 'deadline' and 'context' are for a task run "
                "on one agent; leave them out, or run it on one agent"
            )
        return self


class TaskRef(Params):
    task_id: str = Field(min_length=1)
    """The id task_orchestrate answered."""


class TaskResult(TaskRef):
    wait_s: float = Field(30.0, ge=0)
    """Wait this long for the task to finish; then its state is answered instead."""


TaskStateName = Literal[
    "pending", "assigned", "running", "retrying", "succeeded", "failed", "cancelled"
]
assert list(get_args(TaskStateName)) == [s.value for s in TaskState]  # the runtime's, in order


class TaskList(Params):
    states: list[TaskStateName] | None = None
    """Only tasks in these states (REST: repeat ?state=, or ?states=a,b)."""
    type: str | None = Field(None, min_length=1)
    """Only tasks of this type."""
    agent: str | None = Field(None, min_length=1)
    """Only tasks run (last) by this agent: an address NAME@NODE, or a name (any node)."""
    since: float | None = Field(None, ge=0)
    """Only tasks created or updated at or after this time (unix seconds)."""
    limit: int = Field(_LISTED, ge=1, le=_MOST_LISTED)
    """At most this many tasks, newest first (total and counts are of all that match)."""

    @model_validator(mode="before")
    @classmethod
    def _states_as_given(cls, data: Any) -> Any:
        """``state`` (REST's repeatable name) is ``states``; ``"a,b"`` is two states."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "state" in data:
            given = data.pop("state")
            data["states"] = [*_as_list(data.get("states")), *_as_list(given)]
        if "states" in data and data["states"] is not None:
            data["states"] = [s.strip() for v in _as_list(data["states"])
                              for s in (v.split(",") if isinstance(v, str) else [v])
                              if not isinstance(s, str) or s.strip()]  # fmt: skip
        return data


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


@OPERATIONS.operation(
    "task_orchestrate", TaskOrchestrate, Scope.TASKS_WRITE,
    "Submit a task: journaled, routed to a capable agent, retried; with parallelism > 1 or a "
    "consensus, run on several agents and aggregate their replies.",
)  # fmt: skip
async def task_orchestrate(runtime: Runtime, p: TaskOrchestrate) -> dict[str, Any]:
    if p.scatter:
        spec: dict[str, Any] = {
            "type": p.type, "body": p.body, "capabilities": p.capabilities, "role": p.role,
            "agents": p.agents, "count": p.parallelism, "priority": p.priority,
            "aggregation": p.consensus or "all", "quorum": p.quorum, "timeout_s": p.timeout_s,
        }  # fmt: skip
        answer = await runtime.request(_COORDINATOR, SCATTER, spec)
    else:
        spec = p.model_dump(exclude={"parallelism", "agents", "consensus", "quorum"})
        send = runtime.request if p.idempotency_key is None else runtime.read
        answer = await send(_COORDINATOR, SUBMIT, spec)
    return {"task_id": answer["task_id"], "state": answer.get("state", "pending")}


@OPERATIONS.operation(
    "task_status", TaskRef, Scope.TASKS_READ,
    "A task's state, attempts (attempt_history), agent, timings (wait_ms, run_ms), result or "
    "error, and why it waits if it does (wait: code and reason).",
)  # fmt: skip
async def task_status(runtime: Runtime, p: TaskRef) -> dict[str, Any]:
    return dict(await runtime.read(_COORDINATOR, STATUS, {"task_id": p.task_id}))


@OPERATIONS.operation(
    "task_result", TaskResult, Scope.TASKS_READ,
    "A task's result, waiting up to wait_s; still running then, its state is answered.",
)  # fmt: skip
async def task_result(runtime: Runtime, p: TaskResult) -> dict[str, Any]:
    try:
        result = await runtime.read(
            _COORDINATOR, RESULT, {"task_id": p.task_id}, timeout_s=max(p.wait_s, 0.001)
        )
    except AskTimeout:
        status = await runtime.read(_COORDINATOR, STATUS, {"task_id": p.task_id})
        return {"task_id": p.task_id, "done": False, "state": status["state"]}
    return {"task_id": p.task_id, "done": True, "state": "succeeded", "result": result}


@OPERATIONS.operation("task_cancel", TaskRef, Scope.TASKS_WRITE, "Cancel a task not yet finished.")
async def task_cancel(runtime: Runtime, p: TaskRef) -> dict[str, Any]:
    return dict(await runtime.request(_COORDINATOR, CANCEL, {"task_id": p.task_id}))


@OPERATIONS.operation(
    "task_list", TaskList, Scope.TASKS_READ,
    "Tasks, newest first, held or finished (the journal's): filter by states, type, agent, "
    "since; each with why it waits or why it failed; total and counts by state.",
)  # fmt: skip
async def task_list(runtime: Runtime, p: TaskList) -> dict[str, Any]:
    since_ms = None if p.since is None else int(p.since * 1000)
    query = {"states": p.states, "type": p.type, "agent": p.agent, "since_ms": since_ms,
             "limit": p.limit}  # fmt: skip
    answer = await runtime.read(_COORDINATOR, TASKS, query)
    tasks = answer["tasks"]
    return {"tasks": tasks, "count": len(tasks), "total": answer["total"],
            "counts": answer["counts"]}  # fmt: skip
