"""What a journaled record must hold to be replayed: the coordinator's checks on restart.

The journal hands back the rows it could read (msgpack maps with a ``state`` and an
``updated_ms``); these checks say whether one also has the shape the coordinator's code needs
(every field it reads, of the type it reads it as, in a state it knows). The coordinator sets
a record that fails aside as a dead letter, with the reason these functions return, instead
of replaying it into a crash, a restart, the same replay, and so on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from macp._storable import is_number
from macp.actors.coordinator.dag import STRATEGIES, Workflow
from macp.actors.coordinator.gather import Gather
from macp.actors.coordinator.run import DEFINITION, RunState, StepState
from macp.actors.coordinator.task import DEFAULTS, TaskKind, TaskState
from macp.envelope import Priority
from macp.errors import MacpError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["definition_fault", "run_fault", "task_fault", "with_new_fields"]

_TASK_STATES: Final = tuple(s.value for s in TaskState)
_KINDS: Final = tuple(k.value for k in TaskKind)
_RUN_STATES: Final = tuple(s.value for s in RunState)
_STEP_STATES: Final = tuple(s.value for s in StepState)

_Check = tuple["Callable[[Any], bool]", str]
_NEW_TASK_FIELDS: Final[dict[str, Any]] = {
    "node_failures": 0,
    "max_node_failures": DEFAULTS.max_node_failures,
}
"""Fields a task record has had since it was first journaled, with the value an older record
stands for (it counted no node failures apart)."""


def _text(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def _opt_text(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _count(v: Any) -> bool:
    return type(v) is int and v >= 0


def _ms(v: Any) -> bool:
    return type(v) is int


def _opt_ms(v: Any) -> bool:
    return v is None or type(v) is int


def _seconds(v: Any) -> bool:
    return is_number(v) and v >= 0


def _chosen(v: Any) -> bool:
    # adaptive is not a choice: it is what chooses one of the others
    return isinstance(v, dict) and v.get("strategy") in STRATEGIES and v["strategy"] != "adaptive"


def _error(v: Any) -> bool:
    return v is None or isinstance(v, dict)


_TASK: Final[dict[str, _Check]] = {
    "kind": (lambda v: v in _KINDS, "'task' or 'scatter'"),
    "type": (_text, "a non-empty string"),
    "state": (lambda v: v in _TASK_STATES, f"one of {', '.join(sorted(_TASK_STATES))}"),
    "capabilities": (
        lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
        "a list of strings",
    ),
    "role": (_opt_text, "a string or null"),
    "pinned": (_opt_text, "a string or null"),
    "agent": (_opt_text, "a string or null"),
    "idempotency_key": (_opt_text, "a string or null"),
    "notify": (_opt_text, "a string or null"),
    "priority": (lambda v: type(v) is int and 0 <= v <= Priority.CRITICAL, "an integer 0-3"),
    "timeout_s": (lambda v: is_number(v) and v > 0, "a number > 0"),
    "max_retries": (_count, "an integer >= 0"),
    "backoff_s": (_seconds, "a number >= 0"),
    "backoff_max_s": (_seconds, "a number >= 0"),
    "attempts": (_count, "an integer >= 0"),
    "node_failures": (_count, "an integer >= 0"),
    "max_node_failures": (_count, "an integer >= 0"),
    "error": (_error, "a map or null"),
    "progress": (is_number, "a number"),
    "progress_message": (lambda v: isinstance(v, str), "a string"),
    "created_ms": (_ms, "epoch milliseconds"),
    "queued_ms": (_ms, "epoch milliseconds"),
    "assigned_ms": (_opt_ms, "epoch milliseconds or null"),
    "started_ms": (_opt_ms, "epoch milliseconds or null"),
    "finished_ms": (_opt_ms, "epoch milliseconds or null"),
    "log": (lambda v: isinstance(v, list), "a list"),
    "attempt_history": (lambda v: v is None or isinstance(v, list), "a list"),  # older: none
}
_WORKFLOW_TASK: Final[dict[str, _Check]] = {
    "workflow": (_text, "a run id"),
    "step": (_text, "a step id"),
}
_RUN: Final[dict[str, _Check]] = {
    "workflow": (_text, "a workflow name"),
    "strategy": (lambda v: v in STRATEGIES, f"one of {', '.join(STRATEGIES)}"),
    "chosen": (_chosen, "a map with the strategy chosen"),
    "max_concurrency": (lambda v: v is None or (type(v) is int and v >= 1), "an integer >= 1"),
    "state": (lambda v: v in _RUN_STATES, f"one of {', '.join(sorted(_RUN_STATES))}"),
    "error": (_error, "a map or null"),
    "created_ms": (_ms, "epoch milliseconds"),
    "finished_ms": (_opt_ms, "epoch milliseconds or null"),
    "steps": (lambda v: isinstance(v, dict), "a map of step id to step"),
}
_STEP: Final[dict[str, _Check]] = {
    "state": (lambda v: v in _STEP_STATES, f"one of {', '.join(sorted(_STEP_STATES))}"),
    "task_id": (_opt_text, "a task id or null"),
    "error": (_error, "a map or null"),
    "dispatched": (_opt_ms, "an integer or null"),
    "finished": (_opt_ms, "an integer or null"),
    "lease": (_opt_text, "a lease id or null"),
    "instead_of": (_opt_text, "a step id or null"),
}


def _fault(record: Mapping[str, Any], checks: Mapping[str, _Check], where: str) -> str | None:
    for name, (ok, expected) in checks.items():
        value = record.get(name)
        if not ok(value):
            return f"{where} {name!r} is {value!r:.40}, not {expected}"
    return None


def _same_id(record: Mapping[str, Any], row_id: str) -> str | None:
    if record.get("id") != row_id:
        return f"its 'id' {record.get('id')!r:.40} is not its row's id {row_id!r}"
    return None


def with_new_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """A task record as read from a journal written by an earlier version: the fields added
    since, with the values the record stands for, then its own."""
    return {**_NEW_TASK_FIELDS, **record}


def task_fault(row_id: str, record: Mapping[str, Any]) -> str | None:
    """Why the task record stored under ``row_id`` cannot be replayed; ``None`` if it can."""
    fault = _same_id(record, row_id) or _fault(record, _TASK, "its")
    if fault is None and "workflow" in record:
        fault = _fault(record, _WORKFLOW_TASK, "its")
    if fault is None and record["kind"] == TaskKind.SCATTER:
        expected = record.get("expected")
        if not isinstance(expected, list) or not all(isinstance(a, str) for a in expected):
            return f"its 'expected' is {expected!r:.40}, not a list of agent addresses"
        try:  # the scatter is sent again on replay: its aggregation must still make sense
            Gather(list(expected), record.get("aggregation", "all"), record.get("quorum"),
                   record.get("failure_threshold"))  # fmt: skip
        except MacpError as e:
            return f"its aggregation cannot be replayed ({e.message})"
    return fault


def definition_fault(row_id: str, record: Mapping[str, Any]) -> str | None:
    """Why the workflow definition stored under ``row_id`` cannot be loaded; ``None`` if it
    can."""
    name = record.get("name")
    fault = _same_id(record, row_id)
    if fault is None and (not _text(name) or row_id != f"{DEFINITION}:{name}"):
        fault = f"its 'name' {name!r:.40} does not match its id {row_id!r}"
    return fault or _parse_fault(record.get("definition"), name)


def run_fault(row_id: str, record: Mapping[str, Any]) -> str | None:
    """Why the workflow run stored under ``row_id`` cannot be replayed; ``None`` if it can."""
    fault = _same_id(record, row_id) or _fault(record, _RUN, "its")
    if fault is not None:
        return fault
    fault = _parse_fault(record.get("definition"), record["workflow"])
    if fault is not None:
        return fault
    return _steps_fault(Workflow.parse(record["definition"]), record["steps"])


def _steps_fault(workflow: Workflow, steps: Mapping[str, Any]) -> str | None:
    if set(steps) != {s.id for s in workflow.steps}:
        return f"its steps {sorted(map(str, steps))!r:.60} are not its definition's"
    for step_id, step in steps.items():
        if not isinstance(step, dict):
            return f"its step {step_id!r} is {step!r:.40}, not a map"
        fault = _fault(step, _STEP, f"its step {step_id!r} field")
        if fault is not None:
            return fault
        if step["instead_of"] is not None and step["instead_of"] not in steps:
            return f"its step {step_id!r} stands in for {step['instead_of']!r}, not a step"
    return None


def _parse_fault(definition: Any, name: Any) -> str | None:
    try:
        workflow = Workflow.parse(definition)
    except MacpError as e:
        return f"its definition is not a valid workflow ({e.message})"
    if workflow.name != name:
        return f"its definition is of workflow {workflow.name!r}, not {name!r:.40}"
    return None
