"""Pipelines over REST: a pipeline is a workflow (its id is the workflow's name), its stages
the workflow's steps, each a coordinator task.

Stages are given in order; ``depends_on`` on a stage, or a ``dependencies`` map
(``{stage: [stages it waits for]}``), says what waits for what. With neither given anywhere,
the stages run in a line in the order given (each waits for the one before). A run's input is
``{"data": input, "parameters": parameters}`` (a stage with no body gets ``{"input": that,
"deps": {stage: output}}``; a body's ``${input.data}`` and ``${deps.STAGE}`` are filled in).

Where a pipeline's id is asked for (``GET /pipelines/{id}``, pause, resume, cancel), a run's
id is taken too; a pipeline's id means its latest run.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Final

from pydantic import AliasChoices, Field

from macp.actors.coordinator.dag import Strategy  # noqa: TC001 - pydantic reads it
from macp.errors import InvalidParams, MacpError, NotFound
from macp.gateway.http.rest_ops import REST_OPERATIONS
from macp.gateway.ops import OPERATIONS
from macp.gateway.table import Params, Scope
from macp.schema import Schema

if TYPE_CHECKING:
    from macp.gateway.bridge import Runtime

__all__ = ["PipelineCreate", "PipelineExecute", "PipelineRef", "Stage", "run_progress"]

_NAME = r"^[A-Za-z0-9_.\-]+$"
_DONE: Final = frozenset({"succeeded", "failed", "skipped", "replaced"})
"""A stage's states once it will not run again."""


class Stage(Schema):
    """One stage: a task type, run once the stages it depends on have ended."""

    name: str = Field(pattern=_NAME, validation_alias=AliasChoices("name", "id"))
    """The stage's name, unique in its pipeline (also accepted as id)."""
    type: str = Field(min_length=1)
    """The task type an agent runs for it."""
    body: Any = None
    """Its task's body, with ${input...} and ${deps.STAGE...} filled in (default: the run's
    input and the outputs of the stages it depends on)."""
    depends_on: list[str] | None = None
    """The stages it waits for."""
    capabilities: list[str] = Field(default_factory=list)
    """Run it on an agent with these capabilities."""
    role: str | None = None
    """Run it on an agent with this role."""
    agent: str | None = None
    """Run it on this agent (its address)."""
    timeout: float | None = Field(None, gt=0)
    """Seconds one attempt may take."""
    retry_count: int | None = Field(None, ge=0)
    """Attempts after the first one fails."""
    priority: int | None = Field(None, ge=0, le=3)
    """0 (low) to 3 (critical)."""


class PipelineCreate(Params):
    id: str | None = Field(
        None, pattern=_NAME, validation_alias=AliasChoices("id", "name", "pipeline_id")
    )
    """The pipeline's id (default: made up); creating it again replaces its definition."""
    description: str = ""
    """What it does."""
    stages: list[Stage] = Field(min_length=1)
    """Its stages, in order: name, type, and optionally depends_on, body, capabilities,
    role, agent, timeout, retry_count, priority."""
    dependencies: dict[str, list[str]] | None = None
    """What each stage waits for ({stage: [stages]}), instead of each stage's depends_on."""
    strategy: Strategy = "parallel"
    """How ready stages are dispatched: sequential, parallel, priority, resource-aware,
    adaptive."""
    max_concurrency: int | None = Field(None, ge=1)
    """The most stages running at once."""


class PipelineExecute(Params):
    id: str = Field(min_length=1)
    """The pipeline's id."""
    input: Any = Field(None, validation_alias=AliasChoices("input", "input_data", "data"))
    """The run's input data (also accepted as input_data or data)."""
    parameters: dict[str, Any] = Field(default_factory=dict)
    """The run's parameters, next to its data in the run's input."""
    strategy: Strategy | None = None
    """Dispatch this run so (default: the pipeline's)."""
    max_concurrency: int | None = Field(None, ge=1)
    """The most stages running at once in this run."""


class PipelineRef(Params):
    id: str = Field(min_length=1)
    """A pipeline's id (meaning its latest run) or a run's id."""


def _steps(p: PipelineCreate) -> list[dict[str, Any]]:
    names = [s.name for s in p.stages]
    if p.dependencies is not None:
        unknown = sorted(set(p.dependencies) - set(names))
        if unknown:
            raise InvalidParams(
                f"rest_pipeline_create: 'dependencies' names stage {unknown[0]!r}, which is not "
                f"among the stages "
                f"({', '.join(names)})"
            )
    given = p.dependencies is not None or any(s.depends_on is not None for s in p.stages)
    steps = []
    for i, stage in enumerate(p.stages):
        if given:
            depends = (p.dependencies or {}).get(stage.name, stage.depends_on or [])
        else:
            depends = names[i - 1 : i]  # a line: the stage before
        step: dict[str, Any] = {"id": stage.name, "type": stage.type, "depends_on": depends}
        given_fields = (("body", stage.body), ("role", stage.role), ("agent", stage.agent),
                        ("timeout_s", stage.timeout), ("retries", stage.retry_count),
                        ("priority", stage.priority))  # fmt: skip
        step.update({key: value for key, value in given_fields if value is not None})
        if stage.capabilities:
            step["capabilities"] = stage.capabilities
        steps.append(step)
    return steps


@REST_OPERATIONS.operation(
    "rest_pipeline_create", PipelineCreate, Scope.WORKFLOWS_DEFINE,
    "Create (or replace) a pipeline: stages and their dependencies, checked for cycles and "
    "unknown stages; its id and stages.",
)  # fmt: skip
async def pipeline_create(runtime: Runtime, p: PipelineCreate) -> dict[str, Any]:
    pipeline_id = p.id or f"pipeline-{uuid.uuid4().hex[:12]}"
    definition: dict[str, Any] = {"name": pipeline_id, "description": p.description,
                                  "strategy": p.strategy, "steps": _steps(p)}  # fmt: skip
    if p.max_concurrency is not None:
        definition["max_concurrency"] = p.max_concurrency
    answer = await OPERATIONS["workflow_define"].call(runtime, definition)
    steps = {s["id"]: s["depends_on"] for s in definition["steps"]}
    return {"id": pipeline_id, "stages": answer["steps"],
            "dependencies": {s: steps[s] for s in answer["steps"]}}  # fmt: skip


@REST_OPERATIONS.operation(
    "rest_pipeline_execute", PipelineExecute, Scope.WORKFLOWS_WRITE,
    "Run a pipeline on input data and parameters; the run's id once it is journaled.",
)  # fmt: skip
async def pipeline_execute(runtime: Runtime, p: PipelineExecute) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "workflow": p.id, "input": {"data": p.input, "parameters": p.parameters},
        "strategy": p.strategy, "max_concurrency": p.max_concurrency,
    }  # fmt: skip
    try:
        answer = await OPERATIONS["workflow_execute"].call(runtime, arguments)
    except NotFound:
        raise _unknown_pipeline(p.id) from None
    return {"id": p.id, "run_id": answer["run_id"], "status": "running"}


@REST_OPERATIONS.operation(
    "rest_pipeline_get", PipelineRef, Scope.WORKFLOWS_READ,
    "A pipeline's latest run (or the run named): its status, progress, each stage's state "
    "and output, its result or error; and the pipeline's runs.",
)  # fmt: skip
async def pipeline_get(runtime: Runtime, p: PipelineRef) -> dict[str, Any]:
    run_id, runs = await _run_of(runtime, p.id)
    run = await OPERATIONS["workflow_status"].call(runtime, {"run_id": run_id})
    return {"id": run["workflow"], "run_id": run_id, **run_progress(run), "runs": runs}


def run_progress(run: dict[str, Any]) -> dict[str, Any]:
    """A run's status, progress (stages ended / stages) and stages."""
    steps = {k: v for k, v in run["steps"].items() if v["state"] != "standby"}
    ended = sum(1 for s in steps.values() if s["state"] in _DONE)
    return {
        "status": run["state"], "progress": ended / len(steps) if steps else 1.0,
        "stages": {name: {"state": s["state"], "task_id": s["task_id"], "output": s["output"],
                          "error": s["error"], "depends_on": s.get("depends_on", []),
                          **({"wait": s["wait"]} if "wait" in s else {})}
                   for name, s in steps.items()},
        "result": run.get("result"), "error": run.get("error"),
        "created_ms": run.get("created_ms"), "finished_ms": run.get("finished_ms"),
    }  # fmt: skip


async def _control(runtime: Runtime, p: PipelineRef, name: str) -> dict[str, Any]:
    run_id, _ = await _run_of(runtime, p.id)
    answer = await OPERATIONS[name].call(runtime, {"run_id": run_id})
    return {"id": p.id, **answer, "run_id": run_id}


@REST_OPERATIONS.operation(
    "rest_pipeline_pause", PipelineRef, Scope.WORKFLOWS_WRITE,
    "Pause a pipeline's latest run (or the run named): no more stages start.",
)  # fmt: skip
async def pipeline_pause(runtime: Runtime, p: PipelineRef) -> dict[str, Any]:
    return await _control(runtime, p, "workflow_pause")


@REST_OPERATIONS.operation(
    "rest_pipeline_resume", PipelineRef, Scope.WORKFLOWS_WRITE,
    "Resume a pipeline's paused run: its ready stages start.",
)  # fmt: skip
async def pipeline_resume(runtime: Runtime, p: PipelineRef) -> dict[str, Any]:
    return await _control(runtime, p, "workflow_resume")


@REST_OPERATIONS.operation(
    "rest_pipeline_cancel", PipelineRef, Scope.WORKFLOWS_WRITE,
    "Cancel a pipeline's latest run (or the run named): running stages are cancelled.",
)  # fmt: skip
async def pipeline_cancel(runtime: Runtime, p: PipelineRef) -> dict[str, Any]:
    return await _control(runtime, p, "workflow_cancel")


async def _run_of(runtime: Runtime, pipeline_or_run: str) -> tuple[str, list[dict[str, Any]]]:
    """The run a pipeline id (its latest run) or a run id names, and the pipeline's runs.

    Raises:
        NotFound: no such pipeline, or a pipeline never run.
    """
    listing = await OPERATIONS["workflow_list"].call(runtime, {})
    by_id = {r["id"]: r for r in listing["runs"]}
    workflow = by_id[pipeline_or_run]["workflow"] if pipeline_or_run in by_id else pipeline_or_run
    runs = sorted((r for r in listing["runs"] if r["workflow"] == workflow),
                  key=lambda r: r["created_ms"])  # fmt: skip
    if pipeline_or_run in by_id:
        return pipeline_or_run, runs
    if workflow not in listing["definitions"]:
        raise _unknown_pipeline(workflow)
    if not runs:
        raise NotFound(
            f"pipeline {workflow!r} has not been run; POST /api/v1/pipelines/{workflow}/execute "
            "runs it", data={"field": "id"},
        )  # fmt: skip
    return runs[-1]["id"], runs


def _unknown_pipeline(pipeline_id: str) -> MacpError:
    return NotFound(f"no pipeline {pipeline_id!r}; POST /api/v1/pipelines creates one",
                    data={"field": "id"})  # fmt: skip
