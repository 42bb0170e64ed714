"""The coordinator and its journal: writes grouped per burst, the replay on start, the records
the journal refuses, and the dead letters.

Every state change is saved (marked dirty) and committed in one transaction per burst of
messages (:meth:`Journaled._flush`); answers that wait on a change go out after its commit.
A record the journal refuses (a value that cannot be stored: checked where it came in, so
only a bug gets here) fails its task or run with the reason; the coordinator goes on.

On start the coordinator loads workflow definitions and runs, then tasks. A record that does
not have the shape replay needs (:mod:`.records`) is set aside as a dead letter with the
reason, logged once, instead of being replayed into a crash loop; a running workflow step
whose task was set aside fails with that reason, so its run goes on by its failure policy.
Finished tasks past the bound on memory are dropped after the replay as they are while running
(the journal keeps them).

``coordinator.dead_letters`` ``{limit?: 10}`` -> ``{count, kept, newest: [{id, source, key,
reason, time_ms, size}]}``: the journal's dead letters (every table's: the memory store and
the resource manager share the head's journal), newest first; ``macp status`` shows them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from macp._storable import scrub
from macp.actors.agent import handler
from macp.actors.dag import Workflow
from macp.actors.records import (
    DEFINITION,
    RUN_FINAL,
    definition_fault,
    run_fault,
    task_fault,
    with_new_fields,
)
from macp.actors.tasks import ACTIVE, FINAL, error_record, log
from macp.envelope import Wire, now_ms
from macp.errors import InternalError, InvalidParams
from macp.store import DEAD_LETTERS_KEPT

if TYPE_CHECKING:
    from collections import deque

    from macp.errors import MacpError
    from macp.store import Journal

__all__ = ["DEAD_LETTERS", "Journaled"]

DEAD_LETTERS: Final = "coordinator.dead_letters"
_FLUSH_AT: Final = 256  # dirty tasks that make a flush at once, before the burst ends
_KEEP: Final = 20_000  # tasks kept in memory (finished ones go first; the journal keeps all)


class Journaled:
    """The journal half of :class:`~macp.actors.coordinator.Coordinator`."""

    if TYPE_CHECKING:
        journal: Journal
        log: Any
        dirty: dict[str, dict[str, Any]]
        after_commit: list[Any]
        tasks: dict[str, dict[str, Any]]
        keys: dict[str, str]
        finished: deque[str]
        definitions: dict[str, dict[str, Any]]
        runs: dict[str, dict[str, Any]]
        parsed: dict[str, Workflow]
        dirty_runs: dict[str, dict[str, Any]]

        def _save_run(self, run: dict[str, Any]) -> None: ...
        def _enqueue(self, task: dict[str, Any]) -> None: ...
        def _rerun_scatters(self) -> None: ...
        def _advance(self, run: dict[str, Any]) -> None: ...
        def _step_failed(self, run: dict[str, Any], step_id: str) -> None: ...
        def _end_run(self, run: dict[str, Any], state: str, error: MacpError | None) -> None: ...
        def _finish(self, task: dict[str, Any], state: str, *, result: Any = ...,
                    error: BaseException | None = ...) -> None: ...  # fmt: skip

    def _save(self, task: dict[str, Any]) -> None:
        task["updated_ms"] = now_ms()
        self.dirty[task["id"]] = task
        if len(self.dirty) >= _FLUSH_AT:
            self._flush()

    def _forget_old(self) -> None:
        """Keep at most _KEEP tasks in memory (finished ones go first; the journal keeps all)."""
        while len(self.tasks) > _KEEP and self.finished:
            task_id = self.finished.popleft()
            if task_id not in self.dirty:
                self.tasks.pop(task_id, None)

    def _flush(self) -> None:
        """Commit every change since the last flush, then send the answers that waited on it."""
        if self.dirty or self.dirty_runs:
            refused: list[tuple[str, dict[str, Any], InvalidParams]] = []
            with self.journal.transaction():  # each record is checked before it is written
                for task_id, task in self.dirty.items():
                    try:
                        self.journal.put_task(task_id, task)
                    except InvalidParams as e:  # checked on the way in: only a bug gets here
                        refused.append(("task", task, e))
                for run_id, run in self.dirty_runs.items():
                    try:
                        self.journal.put_workflow(run_id, run)
                    except InvalidParams as e:
                        refused.append(("run", run, e))
            self.dirty.clear()
            self.dirty_runs.clear()
            for kind, record, error in refused:
                self._unstorable(kind, record, error)
            self._forget_old()
        after, self.after_commit = self.after_commit, []
        for action in after:
            action()

    def _replay(self) -> None:
        """Load workflows and tasks from the journal; go on with what had not finished."""
        self._load_workflows()
        recovered = self._load_tasks()
        self.log.info("coordinator.replayed", tasks=len(self.tasks), recovered=recovered)
        self._rerun_scatters()
        self._resume_runs()

    def _load_workflows(self) -> None:
        for row_id, record in self.journal.workflow_entries():
            definition = record["state"] == DEFINITION
            fault = (definition_fault if definition else run_fault)(row_id, record)
            if fault is not None:
                self.journal.set_aside("workflows", (row_id,), fault)
            elif definition:
                self.definitions[str(record["name"])] = record["definition"]  # type: ignore[assignment]
            else:
                self.runs[row_id] = dict(record)

    def _load_tasks(self) -> int:
        """Load every task; queue the unfinished ones again. How many were unfinished.

        An attempt in flight when the coordinator stopped is lost with it: it counts as a node
        failure (the head's), not against the task's ``max_retries``.
        """
        recovered = 0
        for task_id, stored in self.journal.task_entries():
            record = with_new_fields(stored)
            fault = task_fault(task_id, record)
            workflow = record.get("workflow")
            run = self.runs.get(workflow) if isinstance(workflow, str) else None
            if fault is None and run is not None and record["step"] not in run["steps"]:
                fault = f"its step {record['step']!r} is not a step of run {run['id']}"
            if fault is not None:
                self.journal.set_aside("tasks", (task_id,), fault)
                continue
            task: dict[str, Any] = dict(record)
            self.tasks[task_id] = task
            if task["idempotency_key"]:
                self.keys[task["idempotency_key"]] = task_id
            if task["state"] in FINAL:
                self.finished.append(task_id)  # oldest update first, as the journal reads
                continue
            if task["state"] in ACTIVE:
                task["node_failures"] += 1
            task.update(state="pending", agent=None, queued_ms=now_ms())
            log(task, "recovered", note="the coordinator restarted")
            self._save(task)
            if task["kind"] == "task":
                self._enqueue(task)
            recovered += 1
        self._forget_old()  # the same bound on memory after a restart as before it
        return recovered

    def _resume_runs(self) -> None:
        """Go on with every run that had not finished."""
        for run_id, run in list(self.runs.items()):
            if run["state"] in RUN_FINAL:
                continue
            try:
                self.parsed[run_id] = Workflow.parse(run["definition"])
                self._fail_orphaned_steps(run)
                self._advance(run)
            except Exception as e:  # a boundary: a run the checks let through, yet cannot go on
                self.log.exception("coordinator.run_unreplayable", run=run_id)
                self.runs.pop(run_id, None)
                self.parsed.pop(run_id, None)
                self.dirty_runs.pop(run_id, None)
                reason = f"resuming it failed ({type(e).__name__}: {e})"
                self.journal.set_aside("workflows", (run_id,), reason)

    def _fail_orphaned_steps(self, run: dict[str, Any]) -> None:
        """A running step whose task was set aside fails (its run's failure policy decides)."""
        for step_id, step in run["steps"].items():
            if step["state"] == "running" and step["task_id"] not in self.tasks:
                error = InternalError(
                    f"the task {step['task_id']} of step {step_id!r} could not be replayed "
                    "from the journal (see the dead letters)"
                )
                step.update(error=error_record(error), finished_ms=now_ms())
                if run["state"] in RUN_FINAL:
                    return
                self._step_failed(run, step_id)

    def _unstorable(self, kind: str, record: dict[str, Any], error: InvalidParams) -> None:
        """A record the journal refused: replace the parts it cannot store with null, and fail
        its task or run with the reason (stored at the next flush); the coordinator goes on."""
        self.log.error("coordinator.unstorable", record=kind, id=record["id"], error=error.message)
        for name, value in list(record.items()):
            record[name] = scrub(value)
        final = record["state"] in FINAL
        if kind == "run" and not final:
            self._end_run(record, "failed", error)
        elif kind == "run":
            record.update(state="failed", error=error_record(error))
            self._save_run(record)
        elif not final:
            self._finish(record, "failed", error=error)
        else:
            record.update(state="failed", error=error_record(error))
            self._save(record)

    @handler(DEAD_LETTERS)
    def dead_letters(self, body: Wire) -> Wire:
        """How many dead letters the journal keeps, and the newest ``limit`` of them."""
        limit = body.get("limit", 10) if isinstance(body, dict) else 10
        if type(limit) is not int or not 0 <= limit <= DEAD_LETTERS_KEPT:
            raise InvalidParams(
                f"{DEAD_LETTERS} needs 'limit' as an integer from 0 to {DEAD_LETTERS_KEPT}, "
                f"not {limit!r:.40}"
            )
        newest: list[Wire] = list(self.journal.dead_letters(limit))
        count: int = self.journal.dead_letter_count()
        return {"count": count, "kept": DEAD_LETTERS_KEPT, "newest": newest}
