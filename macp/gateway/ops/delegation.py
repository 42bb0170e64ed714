"""Delegation operations: decompose a task with a hub's hook, assign or delegate subtasks of a
parent task, merge results, and read a task's tree and lineage. Each acts on the coordinator's
tasks (journaled, routed, retried as any other) or asks a hub agent's own hooks
(``hub.decompose``, ``hub.merge``: :class:`~macp.Hub`); see
:mod:`macp.actors.coordinator.lineage` for what a tree of tasks does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from pydantic import Field, model_validator

from macp.actors.coordinator import CHILDREN, DEFAULTS, LINEAGE, RESULT, STATUS, SUBMIT
from macp.actors.registry import FIND
from macp.errors import ActorNotFound, NotFound
from macp.gateway.ops._registry import address_of
from macp.gateway.ops._table import OPERATIONS
from macp.gateway.table import Params, Scope
from macp.topologies.roles import DECOMPOSE, MERGE

if TYPE_CHECKING:
    from macp.envelope import Wire
    from macp.gateway.bridge import Runtime

__all__ = [
    "AssignSubtasks", "DecomposeTask", "DelegateSubtask", "MergeResults", "TaskTree",
]  # fmt: skip

_COORDINATOR = "coordinator"
_MOST_DESCENDANTS = 10_000


class DecomposeTask(Params):
    hub: str | None = None
    """The hub agent whose decompose hook runs (an address, or a name the registry knows)."""
    type: str | None = None
    """Or a task type: the hook of the first agent that handles it and is a hub."""
    body: Any = None
    """The task's body, to decompose."""

    @model_validator(mode="after")
    def _one_hub(self) -> Self:
        if (self.hub is None) == (self.type is None):
            raise ValueError("give 'hub' (an agent) or 'type' (a task type a hub handles)")
        return self


class _Subtasks(Params):
    parent: str = Field(min_length=1)
    """The parent task (unfinished): each subtask is its child."""
    type: str = Field(min_length=1)
    """The handler type the subtasks run."""
    context: Any = None
    """Contextual data each subtask's handler gets (ctx.context)."""
    deadline: float | None = Field(None, gt=0)
    """A deadline, in epoch seconds: past it a subtask fails and is not retried."""
    priority: int = Field(DEFAULTS.priority, ge=0, le=3)
    """0 (low) to 3 (critical)."""
    timeout_s: float = Field(DEFAULTS.timeout_s, gt=0)
    """Per attempt, and how long to wait for a capable agent."""
    max_retries: int = Field(DEFAULTS.max_retries, ge=0)
    """Retries after the first attempt."""
    delegated_by: str | None = None
    """The delegating agent (default: the agent running the parent)."""


class AssignSubtasks(_Subtasks):
    parts: list[Any] = Field(min_length=1)
    """The parts' bodies (decompose_task's parts): one subtask each."""
    capabilities: list[str] = Field(default_factory=list)
    """What an agent must have (default: any agent that handles the type); each part goes to
    the least loaded capable agent."""
    role: str | None = None
    """Run them on agents with this role."""


class DelegateSubtask(_Subtasks):
    agent: str = Field(min_length=1)
    """The agent chosen to run it (an address, or a name the registry knows)."""
    body: Any = None
    """The subtask's input."""


class MergeResults(Params):
    hub: str | None = None
    """The hub agent whose merge hook merges (without one: the results as a list)."""
    results: list[Any] | None = None
    """The results to merge, in the order of the parts."""
    parent: str | None = None
    """Or a parent task: its children's results, oldest child first (a child that did not
    succeed is {"error", "state"})."""
    body: Any = None
    """The original task's body, for the merge hook (default: the parent's)."""

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.results is None) == (self.parent is None):
            raise ValueError("give 'results' (a list) or 'parent' (a task whose children to merge)")
        return self


class TaskTree(Params):
    task_id: str = Field(min_length=1)
    """The task whose tree to read."""
    limit: int = Field(1000, ge=1, le=_MOST_DESCENDANTS)
    """The most descendants listed."""


async def _hub_for(runtime: Runtime, p: DecomposeTask) -> str:
    if p.hub is not None:
        return await address_of(runtime, p.hub)
    for record in await runtime.read("registry", FIND, {"status": ["available", "busy"]}):
        if {p.type, DECOMPOSE} <= set(record.get("handles") or ()):
            return str(record["address"])
    raise ActorNotFound(
        f"no available hub handles task type {p.type!r}; give 'hub', or start a Hub that does",
        data={"type": p.type},
    )


@OPERATIONS.operation(
    "decompose_task", DecomposeTask, Scope.TASKS_WRITE,
    "A hub's decompose hook run on a body: the parts, nothing submitted.",
)  # fmt: skip
async def decompose_task(runtime: Runtime, p: DecomposeTask) -> dict[str, Any]:
    hub = await _hub_for(runtime, p)
    parts = await runtime.ask(hub, DECOMPOSE, p.body)
    return {"hub": hub, "parts": parts, "count": len(parts)}


async def _spec(runtime: Runtime, p: _Subtasks) -> dict[str, Any]:
    """The fields every subtask of ``p`` shares, its delegating agent found if not given."""
    delegated_by = p.delegated_by
    if delegated_by is None:
        try:
            parent = await runtime.read(_COORDINATOR, STATUS, {"task_id": p.parent})
        except NotFound:
            raise NotFound(
                f"'parent' names no task {p.parent!r}; give the id of a task that has not "
                "finished (task_orchestrate answered it)",
                data={"field": "parent"},
            ) from None
        delegated_by = parent["agent"]
    return {
        "type": p.type, "parent": p.parent, "delegated_by": delegated_by, "context": p.context,
        "deadline": p.deadline, "priority": p.priority, "timeout_s": p.timeout_s,
        "max_retries": p.max_retries,
    }  # fmt: skip


@OPERATIONS.operation(
    "assign_subtasks", AssignSubtasks, Scope.TASKS_WRITE,
    "Submit parts as subtasks of a parent task, each to the least loaded capable agent.",
)  # fmt: skip
async def assign_subtasks(runtime: Runtime, p: AssignSubtasks) -> dict[str, Any]:
    spec = {**await _spec(runtime, p), "capabilities": p.capabilities, "role": p.role}
    subtasks = []
    for part in p.parts:
        answer = await runtime.request(_COORDINATOR, SUBMIT, {**spec, "body": part})
        subtasks.append({"task_id": answer["task_id"], "body": part})
    return {"parent": p.parent, "subtasks": subtasks, "count": len(subtasks)}


@OPERATIONS.operation(
    "delegate_subtask", DelegateSubtask, Scope.TASKS_WRITE,
    "Submit a subtask of a parent task to a chosen agent, with contextual data.",
)  # fmt: skip
async def delegate_subtask(runtime: Runtime, p: DelegateSubtask) -> dict[str, Any]:
    agent = await address_of(runtime, p.agent)
    spec = {**await _spec(runtime, p), "agent": agent, "body": p.body}
    answer = await runtime.request(_COORDINATOR, SUBMIT, spec)
    return {"task_id": answer["task_id"], "parent": p.parent, "agent": agent}


async def _children_results(runtime: Runtime, parent: str) -> list[Any]:
    children = (await runtime.read(_COORDINATOR, CHILDREN, {"task_id": parent}))["children"]
    results = []
    for child in children:
        if child["state"] == "succeeded":
            results.append(await runtime.read(_COORDINATOR, RESULT, {"task_id": child["id"]}))
        else:
            status = await runtime.read(_COORDINATOR, STATUS, {"task_id": child["id"]})
            results.append({"error": status["error"], "state": status["state"]})
    return results


@OPERATIONS.operation(
    "merge_results", MergeResults, Scope.TASKS_WRITE,
    "Merge results (given, or a parent task's children's) with a hub's merge hook.",
)  # fmt: skip
async def merge_results(runtime: Runtime, p: MergeResults) -> dict[str, Any]:
    if p.parent is not None:
        results = await _children_results(runtime, p.parent)
    else:
        results = list(p.results or [])
    if p.hub is None:
        return {"hub": None, "results": results, "merged": results}
    body = p.body
    if body is None and p.parent is not None:
        parent = await runtime.read(_COORDINATOR, LINEAGE, {"task_id": p.parent, "limit": 1})
        body = parent["contributors"]["inputs"][0]["body"]
    hub = await address_of(runtime, p.hub)
    merged = await runtime.ask(hub, MERGE, {"results": results, "body": body})
    return {"hub": hub, "results": results, "merged": merged}


@OPERATIONS.operation(
    "task_tree", TaskTree, Scope.TASKS_READ,
    "A task and the tree of subtasks below it, each with its children.",
)  # fmt: skip
async def task_tree(runtime: Runtime, p: TaskTree) -> dict[str, Any]:
    lineage = await runtime.read(_COORDINATOR, LINEAGE, {"task_id": p.task_id, "limit": p.limit})
    nodes = {p.task_id: {**lineage["task"], "children": []}}
    for task in lineage["descendants"]:
        nodes[task["id"]] = {**task, "children": []}
        nodes[task["parent"]]["children"].append(nodes[task["id"]])
    count = len(lineage["descendants"])
    return {"tree": nodes[p.task_id], "count": count, "truncated": lineage["truncated"]}


@OPERATIONS.operation(
    "task_lineage", TaskTree, Scope.TASKS_READ,
    "A task's ancestors, descendants, and every agent and input that produced its result.",
)  # fmt: skip
async def task_lineage(runtime: Runtime, p: TaskTree) -> dict[str, Any]:
    body: dict[str, Wire] = {"task_id": p.task_id, "limit": p.limit}
    return dict(await runtime.read(_COORDINATOR, LINEAGE, body))
