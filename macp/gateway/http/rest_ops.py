"""The operations only REST has: the management panel's shapes of tasks and pipelines, each
made of the table's own operations (so the coordinator does the work, as for every transport).

* Tasks: ``priority`` is ``low``, ``medium``, ``high`` (or ``critical``): :data:`PRIORITIES`;
  ``timeout`` is ``timeout_s``, ``retry_count`` is ``max_retries``; a task's status is one of
  ``pending``, ``running``, ``completed``, ``failed``, ``retrying``: :data:`STATUS_OF` maps the
  coordinator's states onto them (its own state is answered too, as ``state``). A task's
  ``pipeline_id`` and ``stage`` are kept in the memory store (namespace :data:`TASK_TAGS`).
* Pipelines: a pipeline is a workflow (its id is the workflow's name), its stages the
  workflow's steps. Stages with no dependencies given anywhere run in a line, in the order
  given. A run's input is ``{"data": input, "parameters": parameters}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import AliasChoices, Field

from macp.errors import ActorNotFound, NotFound
from macp.gateway.ops import OPERATIONS
from macp.gateway.ops._spawn import terminate
from macp.gateway.table import Params, Scope, Table

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp.gateway.bridge import Runtime

__all__ = ["PRIORITIES", "REST_OPERATIONS", "STATUS_OF", "TASK_TAGS", "task_status"]

REST_OPERATIONS: Final = Table()
"""The operations REST adds to :data:`~macp.gateway.ops.OPERATIONS` (not served elsewhere)."""

PRIORITIES: Final[Mapping[str, int]] = {"low": 0, "medium": 1, "high": 2, "critical": 3}
"""A task's priority by name: the runtime's 0 to 3."""

STATUS_OF: Final[Mapping[str, str]] = {
    "pending": "pending",  # waiting for a capable agent
    "assigned": "running",  # sent to its agent
    "running": "running",  # its agent acknowledged it
    "retrying": "retrying",  # an attempt failed; waiting out the backoff
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "failed",  # its error is Cancelled (-32007)
}
"""A task's status as REST answers it, by the coordinator's state."""

TASK_TAGS: Final = "macp.rest.tasks"
"""The memory store's namespace of the pipeline id and stage a task was submitted with."""
_TAG_TTL_S: Final = 7 * 24 * 3600.0


class TaskCreate(Params):
    type: str = Field(min_length=1)
    """The handler type an agent runs."""
    body: Any = Field(None, validation_alias=AliasChoices("body", "input", "data"))
    """The task's input, any JSON value (also accepted as input or data)."""
    capabilities: list[str] = Field(default_factory=list)
    """What the agent must have."""
    role: str | None = None
    """Run it on an agent with this role."""
    agent: str | None = None
    """Run it on this agent (its address) only."""
    priority: Literal["low", "medium", "high", "critical"] = "medium"
    """low, medium, high or critical (the runtime's 0, 1, 2, 3)."""
    timeout: float | None = Field(None, gt=0)
    """Seconds one attempt may take (and how long to wait for a capable agent)."""
    retry_count: int | None = Field(None, ge=0)
    """Retries after the first attempt."""
    idempotency_key: str | None = None
    """Submitting the same key again answers the first task."""
    pipeline_id: str | None = Field(None, min_length=1)
    """The pipeline the task belongs to (recorded with it)."""
    stage: str | None = Field(None, min_length=1)
    """Its stage in that pipeline (recorded with it)."""


class TaskId(Params):
    id: str = Field(min_length=1)
    """The task's id, as POST /tasks answered it."""


@REST_OPERATIONS.operation(
    "rest_task_create", TaskCreate, Scope.TASKS_WRITE,
    "Submit a task (priority low|medium|high, timeout, retry_count; pipeline_id and stage "
    "recorded with it); its id and status.",
)  # fmt: skip
async def task_create(runtime: Runtime, p: TaskCreate) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "type": p.type, "body": p.body, "capabilities": p.capabilities, "role": p.role,
        "agent": p.agent, "priority": PRIORITIES[p.priority],
        "idempotency_key": p.idempotency_key,
    }  # fmt: skip
    if p.timeout is not None:
        arguments["timeout_s"] = p.timeout
    if p.retry_count is not None:
        arguments["max_retries"] = p.retry_count
    answer = await OPERATIONS["task_orchestrate"].call(runtime, arguments)
    tags = {"pipeline_id": p.pipeline_id, "stage": p.stage}
    if p.pipeline_id is not None or p.stage is not None:
        await OPERATIONS["memory_store"].call(runtime, {
            "namespace": TASK_TAGS, "key": answer["task_id"], "value": tags,
            "ttl_s": _TAG_TTL_S,
        })  # fmt: skip
    return {"id": answer["task_id"], "status": STATUS_OF[answer["state"]], **tags}


@REST_OPERATIONS.operation(
    "rest_task_get", TaskId, Scope.TASKS_READ,
    "A task: status (pending|running|completed|failed|retrying), progress, assigned agent, "
    "attempts, timestamps, log, result and error.",
)  # fmt: skip
async def task_get(runtime: Runtime, p: TaskId) -> dict[str, Any]:
    record = await _of_task(runtime, "task_status", p.id)
    tags = {"pipeline_id": record.get("workflow"), "stage": record.get("step")}
    if tags["pipeline_id"] is None:
        kept = await OPERATIONS["memory_retrieve"].call(
            runtime, {"namespace": TASK_TAGS, "key": p.id}
        )
        if kept.get("found"):
            tags = dict(kept["value"])
    return task_status(record, tags)


async def _of_task(runtime: Runtime, operation: str, task_id: str) -> dict[str, Any]:
    """Operation ``operation`` on task ``task_id``.

    Raises:
        NotFound: the coordinator holds no such task (it answers invalid params).
    """
    try:
        return dict(await OPERATIONS[operation].call(runtime, {"task_id": task_id}))
    except NotFound as e:
        raise NotFound(e.message, data={"field": "id"}) from None


def task_status(record: Mapping[str, Any], tags: Mapping[str, Any]) -> dict[str, Any]:
    """A coordinator task record in REST's shape."""
    return {
        "id": record["id"], "type": record["type"], "status": STATUS_OF[record["state"]],
        "state": record["state"], "progress": record.get("progress", 0.0),
        "progress_message": record.get("progress_message", ""),
        "agent": record.get("agent"), "attempts": record.get("attempts", 0),
        "priority": record.get("priority"), "pipeline_id": tags.get("pipeline_id"),
        "stage": tags.get("stage"), "created_ms": record.get("created_ms"),
        "assigned_ms": record.get("assigned_ms"), "started_ms": record.get("started_ms"),
        "finished_ms": record.get("finished_ms"), "updated_ms": record.get("updated_ms"),
        "logs": record.get("log", []), "result": record.get("result"),
        "error": record.get("error"), "node_failures": record.get("node_failures", 0),
        "attempt_history": record.get("attempt_history", []),
        "wait_ms": record.get("wait_ms"), "run_ms": record.get("run_ms"),
        **{k: record[k] for k in ("wait", "wait_reason") if k in record},
    }  # fmt: skip


@REST_OPERATIONS.operation(
    "rest_task_cancel", TaskId, Scope.TASKS_WRITE, "Cancel a task not yet finished."
)
async def task_cancel(runtime: Runtime, p: TaskId) -> dict[str, Any]:
    answer = await _of_task(runtime, "task_cancel", p.id)
    return {"id": p.id, "cancelled": answer["cancelled"], "status": STATUS_OF[answer["state"]],
            "state": answer["state"]}  # fmt: skip


class AgentId(Params):
    id: str = Field(min_length=1)
    """The agent's address (name@node), or its name."""


@REST_OPERATIONS.operation(
    "rest_agent_terminate", AgentId, Scope.AGENTS_ADMIN,
    "Stop, for good, an agent started by spawning (agent_spawn, swarm_init, registration).",
)  # fmt: skip
async def agent_terminate(runtime: Runtime, p: AgentId) -> dict[str, Any]:
    record = await OPERATIONS["agent_status"].call(runtime, {"agent": p.id, "timeout_s": 1.0})
    address = record["address"]
    if not await terminate(runtime, address):
        raise ActorNotFound(
            f"agent {address!r} is not running on its node; GET /agents lists those that are",
            data={"agent": address},
        )
    return {"id": address, "terminated": True}
