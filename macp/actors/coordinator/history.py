"""What the coordinator tells of its tasks and runs: history queries, a task's detail, counts.

``coordinator.tasks`` ``{states?, type?, agent?, since_ms?, limit?: 100}`` answers ``{tasks:
[row], total, counts: {state: n}}``: the tasks it matches among every task the journal keeps
(those the coordinator holds, and the finished ones kept for the journal's retention), newest
created first, at most ``limit`` (1 to :data:`MAX_LIMIT`); ``total`` and ``counts`` are of
all it matches, the limit aside. ``agent`` is an address, or a name (its agents on every
node); ``since_ms`` keeps the tasks created or updated at or after it. A row is ``{id, type,
state, attempts, node_failures, agent, progress, created_ms, updated_ms, finished_ms, run,
step}``, with ``wait`` (:meth:`~.reasons.Wait.to_wire`) while it is pending and ``error``
``{code, message}`` once it failed (or while it is retrying: its last attempt's). The query
reads the journal (written first, so it holds every change); a task the coordinator holds is
shown as it holds it (its latest progress).

``coordinator.status`` adds to a task's record ``wait`` and ``wait_reason`` (pending), and its
timings: ``wait_ms``, from its submission to its first attempt (or to now, or its end, if it
had none), and ``run_ms``, the time its attempts ran (from each one's start, or assignment,
to its end, or now). ``coordinator.counts`` -> ``{states: {state: n}, types: {type: {state:
n}}, agents: {address: {state: n}}, total}``, from the journal: the same after a restart.
``workflow.status`` gives each step its ``depends_on``, and a ``wait``: ``pool_exhausted`` to
a ready step of a resource-aware run that waits for its resources, its task's to a running
step whose task waits for an agent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from macp._journal_history import TaskQuery
from macp.actors.coordinator.attempts import short_error
from macp.actors.coordinator.dag import Workflow
from macp.actors.coordinator.messages import TASKS
from macp.actors.coordinator.reasons import WaitCode
from macp.actors.coordinator.run import RunState, StepState
from macp.actors.coordinator.strategy import startable
from macp.actors.coordinator.table import KEPT_TASKS
from macp.actors.coordinator.task import TaskKind, TaskState
from macp.envelope import now_ms
from macp.errors import InvalidParams

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from macp.actors.coordinator.dispatch import Dispatcher
    from macp.actors.coordinator.engine import WorkflowEngine
    from macp.actors.coordinator.ledger import Ledger
    from macp.actors.coordinator.table import TaskTable
    from macp.actors.coordinator.task import Task
    from macp.envelope import Wire

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "History", "query_of", "with_counts"]

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = KEPT_TASKS
"""The most rows one query answers (as many as the coordinator holds at most)."""
_STATES: Final = tuple(s.value for s in TaskState)
_PENDING: Final = TaskState.PENDING
_ERRED: Final = frozenset({TaskState.FAILED.value, TaskState.RETRYING.value})
_ROW: Final = ("id", "type", "state", "attempts", "node_failures", "agent", "progress",
               "created_ms", "updated_ms", "finished_ms")  # fmt: skip


def _text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidParams(f"{TASKS} field {name!r} must be a non-empty string, not {value!r:.40}")
    return value


def query_of(body: Wire) -> TaskQuery:
    """The query a ``coordinator.tasks`` body asks.

    Raises:
        InvalidParams: a field is of the wrong type or out of range (named, with the fix).
    """
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidParams(f"{TASKS} takes a map of filters, not {type(body).__name__}")
    states = body.get("states")
    if states is not None and (
        not isinstance(states, list) or not all(s in _STATES for s in states)
    ):
        raise InvalidParams(
            f"{TASKS} field 'states' must be a list of task states ({', '.join(_STATES)}), "
            f"not {states!r:.60}"
        )
    since_ms, limit = body.get("since_ms"), body.get("limit", DEFAULT_LIMIT)
    if since_ms is not None and (type(since_ms) is not int or since_ms < 0):
        raise InvalidParams(
            f"{TASKS} field 'since_ms' must be epoch milliseconds (an integer), "
            f"not {since_ms!r:.40}"
        )
    if limit is None:
        limit = DEFAULT_LIMIT
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
        raise InvalidParams(
            f"{TASKS} field 'limit' must be an integer from 1 to {MAX_LIMIT}, not {limit!r:.40}"
        )
    return TaskQuery(
        states=None if states is None else tuple(states), type=_text(body, "type"),
        agent=_text(body, "agent"), since_ms=since_ms, limit=limit,
    )  # fmt: skip


def timings(task: Task, now: int) -> tuple[int, int]:
    """``(wait_ms, run_ms)`` of ``task`` (see the module's docstring)."""
    end = task.finished_ms or now
    attempts = task.attempt_history
    first = attempts[0].get("assigned_ms") if attempts else task.assigned_ms
    wait_ms = (first if isinstance(first, int) else end) - task.created_ms
    run_ms = 0
    for attempt in attempts:
        began = attempt.get("started_ms") or attempt.get("assigned_ms")
        ended = attempt.get("ended_ms") or end
        if isinstance(began, int) and isinstance(ended, int):
            run_ms += max(0, ended - began)
    return max(0, wait_ms), run_ms


class History:
    """The coordinator's answers about what happened (its task table, dispatcher, workflow
    engine and ledger; ``flush`` writes the changes not yet journaled)."""

    def __init__(
        self,
        table: TaskTable,
        dispatcher: Dispatcher,
        engine: WorkflowEngine,
        ledger: Ledger,
        flush: Callable[[], None],
    ) -> None:
        self._table, self._dispatcher, self._engine = table, dispatcher, engine
        self._ledger, self._flush = ledger, flush

    def tasks(self, body: Wire) -> Wire:
        """``coordinator.tasks``: the tasks a query matches, their total and counts."""
        query = query_of(body)
        self._flush()
        found, counts = self._ledger.history(query)
        rows: list[Wire] = []
        for task_id, record in found:
            held = self._table.get(task_id)
            rows.append(self._row(record if held is None else held.to_record(), held))
        return {"tasks": rows, "total": sum(counts.values()), "counts": dict(counts)}

    def _row(self, record: Mapping[str, Any], held: Task | None) -> dict[str, Wire]:
        row: dict[str, Wire] = {name: record.get(name) for name in _ROW}
        row["run"], row["step"] = record.get("workflow"), record.get("step")
        if held is not None and held.state is _PENDING and held.kind is TaskKind.TASK:
            row["wait"] = self._dispatcher.wait(held).to_wire()
        if record.get("state") in _ERRED:  # why it failed, or why its last attempt did
            row["error"] = short_error(record.get("error"))
        return row

    def status(self, task: Task) -> Wire:
        """``coordinator.status``: the task's record (not its body), why it waits, its timings."""
        status = task.to_record()
        del status["body"]
        if task.state is _PENDING and task.kind is TaskKind.TASK:
            wait = self._dispatcher.wait(task)
            status["wait_reason"], status["wait"] = wait.sentence(), wait.to_wire()
        status["wait_ms"], status["run_ms"] = timings(task, now_ms())
        return status

    def counts(self) -> Wire:
        """``coordinator.counts``: every task the journal keeps, counted."""
        self._flush()
        totals: dict[str, Any] = self._ledger.totals()
        return {**totals, "total": sum(totals["states"].values())}

    def run_status(self, body: Wire) -> Wire:
        """``workflow.status``: the run (not its definition), each step with its
        ``depends_on``, and why a step waits: for its resources, or its task for an agent."""
        run = self._engine.run(body)
        workflow = Workflow.parse(run["definition"])
        status = {k: v for k, v in run.items() if k != "definition"}
        status["steps"] = {
            step_id: {**step, "depends_on": list(workflow.step(step_id).depends_on)}
            for step_id, step in run["steps"].items()
        }
        for step in status["steps"].values():
            task = self._table.get(step["task_id"]) if step["task_id"] else None
            if task is not None and task.state is _PENDING and task.kind is TaskKind.TASK:
                step["wait"] = self._dispatcher.wait(task).to_wire()
        if run["state"] == RunState.RUNNING and run["chosen"]["strategy"] == "resource-aware":
            _, limit = startable(run, workflow)
            running = sum(1 for s in run["steps"].values() if s["state"] == StepState.RUNNING)
            for step_id, step in status["steps"].items():
                resources = workflow.step(step_id).resources
                if step["state"] == StepState.READY and resources and running < limit:
                    step["wait"] = _pool_wait(step_id, resources)
        return status


def _pool_wait(step_id: str, resources: Mapping[str, float]) -> dict[str, Wire]:
    amounts = ", ".join(f"{pool} {amount:g}" for pool, amount in sorted(resources.items()))
    return {
        "code": WaitCode.POOL_EXHAUSTED.value,
        "reason": f"step {step_id!r} waits for its resources ({amounts}): a pool has too "
        "little free until a lease is released",
        "resources": dict(resources),
    }


def with_counts(agents: list[dict[str, Any]], counts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Registry ``agents`` records, each with the ``succeeded`` and ``failed`` tasks it ran last
    (``counts``: a ``coordinator.counts`` answer)."""
    by_agent = counts.get("agents") or {}
    return [
        {**a, "succeeded": int(by_agent.get(a.get("address"), {}).get("succeeded", 0)),
         "failed": int(by_agent.get(a.get("address"), {}).get("failed", 0))}
        for a in agents
    ]  # fmt: skip
