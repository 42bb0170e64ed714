"""The coordinator and its journal: writes grouped per burst, the replay on start, the records
the journal refuses, and the dead letters.

Every state change is saved (marked dirty) and committed in one transaction per burst of
messages (:meth:`Journaled._flush`); answers that wait on a change go out after its commit.
A record the journal refuses (a value that cannot be stored: checked where it came in, so
only a bug gets here) fails its task or run with the reason; the coordinator goes on.

On start the coordinator loads workflow definitions and the runs and tasks it keeps in memory:
every one that has not finished, and the newest finished ones up to the bounds on memory
(:data:`KEPT_TASKS` tasks in all, :data:`KEPT_RUNS` finished runs), the same bounds as while it
runs, so a restart over millions of finished tasks reads only those and its memory stays flat.
An older finished task or run is read from the journal when it is asked for (its status,
result, or idempotency key). A record that does not have the shape replay needs
(:mod:`.records`) is set aside as a dead letter with the reason, logged once, instead of being
replayed into a crash loop (a finished one read later is checked the same way); a running
workflow step whose task was set aside fails with that reason, so its run goes on by its
failure policy.

Retention (:mod:`.retention`): on each tick the pruner deletes a batch of the finished tasks
and runs past the journal's retention, and the coordinator forgets those it still held.

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
from macp.actors.retention import JournalRetention, Pruner
from macp.actors.tasks import ACTIVE, FINAL, error_record, log
from macp.envelope import Wire, now_ms
from macp.errors import InternalError, InvalidParams
from macp.store import DEAD_LETTERS_KEPT

if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Mapping

    from macp.errors import MacpError
    from macp.store import Journal

__all__ = ["DEAD_LETTERS", "KEPT_RUNS", "KEPT_TASKS", "Journaled"]

DEAD_LETTERS: Final = "coordinator.dead_letters"
_FLUSH_AT: Final = 256  # dirty tasks that make a flush at once, before the burst ends
KEPT_TASKS: Final = 20_000  # tasks kept in memory (finished ones go first; the journal has them)
KEPT_RUNS: Final = 1_000  # finished workflow runs kept in memory (the journal has the others)


def _new_end(record: Mapping[str, Any], since_ms: int) -> bool:
    """Whether ``record`` finished since ``since_ms`` (the last flush): a record saved again
    after it finished is counted once."""
    finished = record.get("finished_ms")
    return record["state"] in FINAL | RUN_FINAL and type(finished) is int and finished >= since_ms


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

    def _init_retention(self, config: Mapping[str, Any]) -> None:
        self.pruner = Pruner(self.journal, JournalRetention.of(config))
        self.finished_runs: dict[str, None] = {}  # in memory, oldest end first
        self.flushed_ms = now_ms()  # when the last flush began

    def _save(self, task: dict[str, Any]) -> None:
        task["updated_ms"] = now_ms()
        self.dirty[task["id"]] = task
        if len(self.dirty) >= _FLUSH_AT:
            self._flush()

    def _forget_old(self) -> None:
        """Keep at most KEPT_TASKS tasks in memory (finished ones go first) and KEPT_RUNS
        finished runs; the journal has the others."""
        while len(self.tasks) > KEPT_TASKS and self.finished:
            self._forget_task(self.finished.popleft())
        while len(self.finished_runs) > KEPT_RUNS:
            self._forget_run(next(iter(self.finished_runs)))

    def _forget_task(self, task_id: str) -> None:
        task = self.tasks.get(task_id)
        if task is None or task_id in self.dirty or task["state"] not in FINAL:
            return
        del self.tasks[task_id]
        key = task.get("idempotency_key")
        if key is not None and self.keys.get(key) == task_id:
            del self.keys[key]

    def _forget_run(self, run_id: str) -> None:
        if run_id in self.dirty_runs:
            return
        self.finished_runs.pop(run_id, None)
        self.runs.pop(run_id, None)
        self.parsed.pop(run_id, None)

    def _retain(self) -> None:
        """Prune a batch of what is past the journal's retention, and forget it here too."""
        try:
            pruned = self.pruner.prune()
        except InternalError as e:  # the file busy or full: the next tick tries again
            self.log.warning("coordinator.prune_failed", error=e.message)
            return
        for task_id in pruned.tasks:
            self._forget_task(task_id)
        while self.finished and self.finished[0] not in self.tasks:  # pruned oldest first
            self.finished.popleft()
        for run_id in pruned.runs:
            self._forget_run(run_id)
        report = self.pruner.report()
        if report is not None:
            self.log.info("coordinator.pruned", **report)

    def _first_with_key(self, key: str) -> dict[str, Any] | None:
        """The task submitted with idempotency key ``key``, while the journal keeps it."""
        task_id = self.keys.get(key)
        if task_id is not None and task_id in self.tasks:
            return self.tasks[task_id]
        found = self.journal.task_by_key(key)
        return None if found is None else self._replayable_task(*found)

    def _stored_task(self, task_id: str) -> dict[str, Any] | None:
        """A task no longer held in memory, from the journal (None if it is not there)."""
        record = self.journal.get_task(task_id)
        return None if record is None else self._replayable_task(task_id, with_new_fields(record))

    def _replayable_task(self, task_id: str, record: Mapping[str, Any]) -> dict[str, Any] | None:
        fault = task_fault(task_id, record)
        if fault is not None:
            self.journal.set_aside("tasks", (task_id,), fault)
            return None
        return dict(record)

    def _stored_run(self, run_id: str) -> dict[str, Any] | None:
        """A finished run no longer held in memory, from the journal (None if not there)."""
        record = self.journal.get_workflow(run_id)
        if record is None or record["state"] == DEFINITION:
            return None
        fault = run_fault(run_id, record)
        if fault is not None:
            self.journal.set_aside("workflows", (run_id,), fault)
            return None
        return dict(record)

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
            since, self.flushed_ms = self.flushed_ms, now_ms()
            self.pruner.finished("tasks", sum(_new_end(t, since) for t in self.dirty.values()))
            ended = [r for r in self.dirty_runs.values() if r["state"] in RUN_FINAL]
            self.pruner.finished("workflows", sum(_new_end(r, since) for r in ended))
            self.finished_runs.update(dict.fromkeys(r["id"] for r in ended))
            self.dirty.clear()
            self.dirty_runs.clear()
            for kind, record, error in refused:
                self._unstorable(kind, record, error)
            self._forget_old()
        after, self.after_commit = self.after_commit, []
        for action in after:
            action()

    def _replay(self) -> None:
        """Load what the coordinator keeps in memory from the journal; go on with what had not
        finished."""
        self._load_workflows()
        recovered = self._load_tasks()
        self.log.info(
            "coordinator.replayed", journal=str(self.journal.path.resolve()),
            stored=self.journal.count("tasks"), tasks=len(self.tasks), recovered=recovered,
            runs=len(self.runs),
        )  # fmt: skip
        self._rerun_scatters()
        self._resume_runs()

    def _load_workflows(self) -> None:
        """Definitions, the runs not finished, and the newest KEPT_RUNS finished runs."""
        finished = self.journal.newest_finished_entries("workflows", KEPT_RUNS)
        for row_id, record in [*self.journal.unfinished_entries("workflows"), *finished]:
            definition = record["state"] == DEFINITION
            fault = (definition_fault if definition else run_fault)(row_id, record)
            if fault is not None:
                self.journal.set_aside("workflows", (row_id,), fault)
            elif definition:
                self.definitions[str(record["name"])] = record["definition"]  # type: ignore[assignment]
            else:
                self.runs[row_id] = dict(record)
                if record["state"] in RUN_FINAL:
                    self.finished_runs[row_id] = None

    def _load_tasks(self) -> int:
        """Load the unfinished tasks and the newest finished ones (KEPT_TASKS in all); queue
        the unfinished ones again. How many were unfinished.

        An attempt in flight when the coordinator stopped is lost with it: it counts as a node
        failure (the head's), not against the task's ``max_retries``.
        """
        recovered = 0
        unfinished = self.journal.unfinished_entries("tasks")
        finished = self.journal.newest_finished_entries("tasks", KEPT_TASKS - len(unfinished))
        for task_id, stored in [*finished, *unfinished]:  # finished: oldest first
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
        self._forget_old()  # a finished task read as unfinished (its row's columns are off)
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
