"""Workflow operations: define a workflow (a graph of steps, each a coordinator task), run it
with a strategy and a concurrency bound, follow, pause, resume and cancel its runs.

A definition is checked by the coordinator's own model (:class:`~macp.actors.coordinator.dag.
Workflow`), whose JSON schema is the one clients are served; the run is journaled before its
id is answered, and each step is a task (retried, timed out, failed over) like any other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from pydantic import AliasChoices, Field, model_validator

from macp.actors.coordinator import (
    WORKFLOW_CANCEL,
    WORKFLOW_DEFINE,
    WORKFLOW_LIST,
    WORKFLOW_PAUSE,
    WORKFLOW_RESUME,
    WORKFLOW_RUN,
    WORKFLOW_STATUS,
)
from macp.actors.coordinator.dag import Strategy, Workflow
from macp.gateway.ops._table import OPERATIONS
from macp.gateway.table import Params, Scope

if TYPE_CHECKING:
    from macp.gateway.bridge import Runtime

__all__ = ["RunRef", "WorkflowDefine", "WorkflowExecute", "WorkflowList"]

_COORDINATOR = "coordinator"


class WorkflowDefine(Workflow, Params):
    """A workflow definition: its name, steps (each a task type, its dependencies and where it
    runs), strategy, concurrency bound and how the result is merged."""


class WorkflowExecute(Params):
    workflow: str | None = Field(None, min_length=1)
    """The name of a defined workflow (or give definition)."""
    definition: Workflow | None = None
    """A definition to run without defining it first."""
    input: Any = None
    """The run's input: each step sees it as ${input}."""
    strategy: Strategy | None = None
    """sequential, parallel, priority, resource-aware or adaptive (default: the definition's)."""
    max_concurrency: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("max_concurrency", "concurrency")
    )
    """The most steps running at once (also accepted as concurrency)."""

    @model_validator(mode="after")
    def _one_workflow(self) -> Self:
        if (self.workflow is None) == (self.definition is None):
            raise ValueError("give 'workflow' (a defined workflow's name) or 'definition', one")
        return self


class RunRef(Params):
    run_id: str = Field(min_length=1)
    """The id workflow_execute answered."""


class WorkflowList(Params):
    """No parameters."""


@OPERATIONS.operation(
    "workflow_define", WorkflowDefine, Scope.WORKFLOWS_DEFINE,
    "Define (or redefine) a workflow: steps with dependencies, checked for cycles and "
    "dangling dependencies; its step ids.",
)  # fmt: skip
async def workflow_define(runtime: Runtime, p: WorkflowDefine) -> dict[str, Any]:
    definition = p.model_dump(exclude_unset=True)
    return dict(await runtime.request(_COORDINATOR, WORKFLOW_DEFINE, definition))


@OPERATIONS.operation(
    "workflow_execute", WorkflowExecute, Scope.WORKFLOWS_WRITE,
    "Run a defined workflow (or a definition given) with a strategy and a concurrency bound; "
    "the run id, once the run is journaled.",
)  # fmt: skip
async def workflow_execute(runtime: Runtime, p: WorkflowExecute) -> dict[str, Any]:
    body: dict[str, Any] = {"input": p.input, "strategy": p.strategy,
                            "max_concurrency": p.max_concurrency}  # fmt: skip
    if p.definition is not None:
        body["definition"] = p.definition.model_dump(exclude_unset=True)
    else:
        body["workflow"] = p.workflow
    answer = await runtime.request(_COORDINATOR, WORKFLOW_RUN, body)
    return {"run_id": answer["run_id"]}


@OPERATIONS.operation(
    "workflow_status", RunRef, Scope.WORKFLOWS_READ,
    "A run's state, its strategy (and why), each step's state and output, and its result or "
    "error once it ended.",
)  # fmt: skip
async def workflow_status(runtime: Runtime, p: RunRef) -> dict[str, Any]:
    return dict(await runtime.read(_COORDINATOR, WORKFLOW_STATUS, {"run_id": p.run_id}))


@OPERATIONS.operation(
    "workflow_pause", RunRef, Scope.WORKFLOWS_WRITE,
    "Pause a run: no more steps start (those running finish); the run's state.",
)  # fmt: skip
async def workflow_pause(runtime: Runtime, p: RunRef) -> dict[str, Any]:
    answer = await runtime.request(_COORDINATOR, WORKFLOW_PAUSE, {"run_id": p.run_id})
    return {"run_id": p.run_id, "state": answer["state"]}


@OPERATIONS.operation(
    "workflow_resume", RunRef, Scope.WORKFLOWS_WRITE,
    "Resume a paused run: its ready steps start; the run's state.",
)  # fmt: skip
async def workflow_resume(runtime: Runtime, p: RunRef) -> dict[str, Any]:
    answer = await runtime.request(_COORDINATOR, WORKFLOW_RESUME, {"run_id": p.run_id})
    return {"run_id": p.run_id, "state": answer["state"]}


@OPERATIONS.operation(
    "workflow_cancel", RunRef, Scope.WORKFLOWS_WRITE,
    "Cancel a run: running steps are cancelled, the others never start.",
)  # fmt: skip
async def workflow_cancel(runtime: Runtime, p: RunRef) -> dict[str, Any]:
    answer = await runtime.request(_COORDINATOR, WORKFLOW_CANCEL, {"run_id": p.run_id})
    return {"run_id": p.run_id, **answer}


@OPERATIONS.operation(
    "workflow_list", WorkflowList, Scope.WORKFLOWS_READ,
    "The defined workflows, and every run the coordinator holds with its state.",
)  # fmt: skip
async def workflow_list(runtime: Runtime, _p: WorkflowList) -> dict[str, Any]:
    return dict(await runtime.read(_COORDINATOR, WORKFLOW_LIST))
