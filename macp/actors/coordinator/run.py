"""A workflow run: the record (a msgpack map, as the journal stores it: see :mod:`.engine`),
its states and its steps'."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from macp._storable import check as check_storable
from macp.actors.coordinator.dag import STRATEGIES, Workflow
from macp.envelope import Wire, new_id, now_ms
from macp.errors import ConfigError, InvalidParams, NotFound

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFINITION",
    "RESOLVED",
    "RUN_FINAL",
    "RunState",
    "StepState",
    "merged",
    "new_run",
    "parse",
    "requested",
]

DEFINITION: Final = "definition"
"""The state of a ``workflows`` row that holds a workflow definition, not a run."""


class RunState(StrEnum):
    """Where a run is (its record holds the value)."""

    RUNNING = "running"
    PAUSED = "paused"  # starts no more steps; those running finish
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepState(StrEnum):
    """Where one step of a run is (its record holds the value)."""

    STANDBY = "standby"  # a fallback, waiting to be needed
    WAITING = "waiting"  # for the steps it depends on
    READY = "ready"  # they are resolved: the strategy decides when it starts
    RUNNING = "running"  # its task is in the coordinator
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # the run succeeded without it
    REPLACED = "replaced"  # it failed and its fallback runs in its place
    CANCELLED = "cancelled"


RUN_FINAL: Final = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})
RESOLVED: Final = frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED})
"""Step states its dependents may go on from."""


def parse(definition: Wire) -> Workflow:
    """A workflow definition as it comes in (``workflow.define``, ``workflow.run``), checked.

    Raises:
        InvalidParams: it cannot be stored, or is not a valid workflow (named in the message).
    """
    check_storable(definition, "the workflow definition", "definition")  # first: any data
    try:
        return Workflow.parse(definition)
    except ConfigError as e:
        raise InvalidParams(e.message) from e


def requested(body: Wire, definitions: Mapping[str, Wire]) -> tuple[Workflow, Wire, str]:
    """The workflow a ``workflow.run`` body asks for (by name, or a definition given), its
    definition, and the strategy to run it with.

    Raises:
        InvalidParams: a field is malformed, or names no defined workflow (named).
    """
    if not isinstance(body, dict):
        raise InvalidParams("workflow.run needs a map with 'workflow' (a name) or 'definition'")
    definition = body.get("definition")
    if definition is None:
        name = body.get("workflow")
        if not isinstance(name, str) or name not in definitions:
            known = ", ".join(sorted(definitions)) or "none"
            raise NotFound(f"no workflow {name!r:.60} is defined (defined: {known})")
        definition = definitions[name]
    workflow = parse(definition)
    strategy = body.get("strategy") or workflow.strategy
    if strategy not in STRATEGIES:
        raise InvalidParams(f"'strategy' {strategy!r:.60} is not a pipeline strategy")
    limit = body.get("max_concurrency")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise InvalidParams(f"'max_concurrency' must be an integer >= 1, not {limit!r:.60}")
    check_storable(body.get("input"), "workflow.run field 'input'", "input")
    return workflow, definition, str(strategy)


def new_run(
    workflow: Workflow,
    *,
    definition: Any,
    run_input: Any,
    strategy: str,
    chosen: dict[str, str],
    limit: int | None,
) -> dict[str, Any]:
    """A new ``running`` run of ``workflow``: its steps waiting (fallbacks on standby)."""
    now = now_ms()
    return {
        "id": new_id(), "workflow": workflow.name, "definition": definition,
        "input": run_input, "strategy": strategy, "chosen": chosen, "max_concurrency": limit,
        "state": RunState.RUNNING.value, "result": None, "error": None, "created_ms": now,
        "finished_ms": None, "updated_ms": now,
        "steps": {s.id: {"state": (StepState.STANDBY if s.id in workflow.fallbacks
                                   else StepState.WAITING).value,
                         "task_id": None, "output": None, "error": None, "dispatched": None,
                         "finished": None, "lease": None, "instead_of": None}
                  for s in workflow.steps},
    }  # fmt: skip


def merged(workflow: Workflow, run: dict[str, Any]) -> Any:
    """A succeeded run's result from its sinks' outputs, as the workflow's ``merge`` says:
    ``{sink: output}``, the list of outputs, or their maps merged."""
    outputs = {s: run["steps"][s]["output"] for s in workflow.sinks()}
    if workflow.merge == "list":
        return list(outputs.values())
    if workflow.merge == "union":
        return {k: v for out in outputs.values() if isinstance(out, dict) for k, v in out.items()}
    return outputs
