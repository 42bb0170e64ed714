"""The coordinator's journal: what it writes, what it reads back on start, the records the
journal refuses, retention and the dead letters. Only the coordinator's actor holds it; the
parts it wires (task table, dispatcher, workflow engine, gathers) never touch the journal.

The actor writes every change in one transaction per burst of messages
(:meth:`Ledger.write`) and sends the answers that wait on a change only after its commit. A
record the journal refuses (a value that cannot be stored: checked where it came in, so only
a bug gets here) is handed back, and the actor fails its task or run with the reason.

On start it loads workflow definitions and the runs and tasks the coordinator keeps in memory
(:meth:`Ledger.replay`): every one that has not finished, and the newest finished ones up to
the bounds on memory (:data:`~.table.KEPT_TASKS` tasks in all, :data:`~.engine.KEPT_RUNS`
finished runs), the same bounds as while it runs, so a restart over millions of finished
tasks reads only those and its memory stays flat. An older finished task or run is read from
the journal when it is asked for (its status, result, or idempotency key). A record that does
not have the shape replay needs (:mod:`.records`) is set aside as a dead letter with the
reason, logged once, instead of being replayed into a crash loop (a finished one read later
is checked the same way).

Retention (:mod:`.retention`): on each tick the pruner deletes a batch of the finished tasks
and runs past the journal's retention, and the coordinator forgets those it still held.

``coordinator.dead_letters`` ``{limit?: 10}`` -> ``{count, kept, newest: [{id, source, key,
reason, time_ms, size}]}``: the journal's dead letters (every table's: the memory store and
the resource manager share the head's journal), newest first; ``macp status`` shows them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp._journal_history import TaskQuery
from macp.actors.coordinator.engine import KEPT_RUNS
from macp.actors.coordinator.messages import DEAD_LETTERS
from macp.actors.coordinator.records import (
    definition_fault,
    run_fault,
    task_fault,
    with_new_fields,
)
from macp.actors.coordinator.retention import JournalRetention, Pruned, Pruner
from macp.actors.coordinator.run import DEFINITION, RUN_FINAL
from macp.actors.coordinator.table import KEPT_TASKS
from macp.actors.coordinator.task import FINAL, Task
from macp.envelope import Wire, now_ms
from macp.errors import InternalError, InvalidParams
from macp.store import DEAD_LETTERS_KEPT

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from macp.actors.coordinator.engine import WorkflowEngine
    from macp.actors.coordinator.table import TaskTable
    from macp.store import Journal

__all__ = ["Ledger"]


class Ledger:
    """The coordinator's use of its journal.

    Args:
        journal: the open journal (the ledger closes it).
        config: the coordinator's config (its ``retention``).
        log: the coordinator's logger.
    """

    def __init__(self, journal: Journal, config: Mapping[str, Any], log: Any) -> None:
        self.journal = journal
        self.log = log
        self.pruner = Pruner(journal, JournalRetention.of(config))
        self._flushed_ms = now_ms()  # when the last write began

    def close(self) -> None:
        self.journal.close()

    # -- writing ------------------------------------------------------------------------------

    def write(
        self, tasks: Mapping[str, Task], runs: Mapping[str, dict[str, Any]]
    ) -> list[tuple[Task | dict[str, Any], InvalidParams]]:
        """Write changed tasks and runs in one transaction; those the journal refused, each
        with the reason (each record is checked before it is written)."""
        refused: list[tuple[Task | dict[str, Any], InvalidParams]] = []
        with self.journal.transaction():
            for task_id, task in tasks.items():
                try:
                    self.journal.put_task(task_id, task.to_record())
                except InvalidParams as e:  # checked on the way in: only a bug gets here
                    refused.append((task, e))
            for run_id, run in runs.items():
                try:
                    self.journal.put_workflow(run_id, run)
                except InvalidParams as e:
                    refused.append((run, e))
        for record, error in refused:
            kind, id_ = ("task", record.id) if isinstance(record, Task) else ("run", record["id"])
            self.log.error("coordinator.unstorable", record=kind, id=id_, error=error.message)
        since, self._flushed_ms = self._flushed_ms, now_ms()
        # a record saved again after it finished is counted once
        ended = sum(
            1
            for t in tasks.values()
            if t.state in FINAL and t.finished_ms is not None and t.finished_ms >= since
        )
        self.pruner.finished("tasks", ended)
        ended = sum(
            1
            for r in runs.values()
            if r["state"] in RUN_FINAL and type(r["finished_ms"]) is int
            and r["finished_ms"] >= since
        )  # fmt: skip
        self.pruner.finished("workflows", ended)
        return refused

    # -- reading ------------------------------------------------------------------------------

    def task(self, task_id: str) -> Task | None:
        """A task no longer held in memory, from the journal (None if it is not there)."""
        record = self.journal.get_task(task_id)
        return None if record is None else self._replayable(task_id, record)

    def task_by_key(self, key: str) -> Task | None:
        """The task stored with idempotency key ``key``, while the journal keeps it."""
        found = self.journal.task_by_key(key)
        return None if found is None else self._replayable(*found)

    def _replayable(self, task_id: str, stored: Mapping[str, Any]) -> Task | None:
        record = with_new_fields(stored)
        fault = task_fault(task_id, record)
        if fault is not None:
            self.journal.set_aside("tasks", (task_id,), fault)
            return None
        return Task.from_record(record)

    def run(self, run_id: str) -> dict[str, Any] | None:
        """A finished run no longer held in memory, from the journal (None if not there)."""
        record = self.journal.get_workflow(run_id)
        if record is None or record["state"] == DEFINITION:
            return None
        fault = run_fault(run_id, record)
        if fault is not None:
            self.journal.set_aside("workflows", (run_id,), fault)
            return None
        return dict(record)

    def replay(self, table: TaskTable, engine: WorkflowEngine) -> list[Task]:
        """Load what the coordinator keeps in memory into ``table`` and ``engine``: the
        unfinished tasks are recovered (queued again, as :meth:`TaskTable.recover` says); they
        are returned, oldest update first."""
        self._load_workflows(engine)
        recovered = self._load_tasks(table, engine)
        self.log.info(
            "coordinator.replayed", journal=str(self.journal.path.resolve()),
            stored=self.journal.count("tasks"), tasks=len(table),
            recovered=len(recovered), runs=len(engine.runs),
        )  # fmt: skip
        return recovered

    def _load_workflows(self, engine: WorkflowEngine) -> None:
        """Definitions, the runs not finished, and the newest KEPT_RUNS finished runs."""
        finished = self.journal.newest_finished_entries("workflows", KEPT_RUNS)
        for row_id, record in [*self.journal.unfinished_entries("workflows"), *finished]:
            definition = record["state"] == DEFINITION
            fault = (definition_fault if definition else run_fault)(row_id, record)
            if fault is not None:
                self.journal.set_aside("workflows", (row_id,), fault)
            elif definition:
                engine.load_definition(str(record["name"]), record["definition"])  # type: ignore[arg-type]
            else:
                engine.load_run(dict(record))

    def _load_tasks(self, table: TaskTable, engine: WorkflowEngine) -> list[Task]:
        """Load the unfinished tasks and the newest finished ones (KEPT_TASKS in all); recover
        the unfinished ones. An attempt in flight when the coordinator stopped is lost with
        it: it counts as a node failure (the head's), not against the task's ``max_retries``.
        """
        recovered = []
        unfinished = self.journal.unfinished_entries("tasks")
        finished = self.journal.newest_finished_entries("tasks", KEPT_TASKS - len(unfinished))
        for task_id, stored in [*finished, *unfinished]:  # finished: oldest first
            record = with_new_fields(stored)
            fault = task_fault(task_id, record)
            workflow = record.get("workflow")
            run = engine.runs.get(workflow) if isinstance(workflow, str) else None
            if fault is None and run is not None and record["step"] not in run["steps"]:
                fault = f"its step {record['step']!r} is not a step of run {run['id']}"
            if fault is not None:
                self.journal.set_aside("tasks", (task_id,), fault)
                continue
            task = Task.from_record(record)
            table.load(task)
            if task.state not in FINAL:
                table.recover(task)
                recovered.append(task)
        table.forget_old()  # a finished task read as unfinished (its row's columns are off)
        engine.forget_old()
        return recovered

    def resume(self, engine: WorkflowEngine, has_task: Callable[[str], bool]) -> None:
        """Go on with every run that had not finished; one that cannot go on is set aside."""
        for run_id, run in list(engine.runs.items()):
            if run["state"] in RUN_FINAL:
                continue
            try:
                engine.recover(run_id, has_task)
            except Exception as e:  # a boundary: a run the checks let through, yet cannot go on
                self.log.exception("coordinator.run_unreplayable", run=run_id)
                engine.drop(run_id)
                reason = f"resuming it failed ({type(e).__name__}: {e})"
                self.journal.set_aside("workflows", (run_id,), reason)

    # -- history ------------------------------------------------------------------------------

    def history(self, query: TaskQuery) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, int]]:
        """The ``(id, record)`` of the newest tasks ``query`` matches (at most its limit), and
        how many it matches by state."""
        counts = self.journal.task_counts(query)
        return self.journal.task_page(query, sum(counts.values())), counts

    def totals(self) -> dict[str, dict[str, Any]]:
        """Every task kept, counted: ``{states: {state: n}, types: {type: {state: n}},
        agents: {address: {state: n}}}``."""
        return {"states": self.journal.task_counts(TaskQuery()), **self.journal.task_totals()}

    # -- retention, dead letters --------------------------------------------------------------

    def prune(self) -> Pruned | None:
        """One pass of the pruner (None if the journal was busy or full: the next tick tries
        again); logs what it pruned, at most every few seconds."""
        try:
            pruned = self.pruner.prune()
        except InternalError as e:
            self.log.warning("coordinator.prune_failed", error=e.message)
            return None
        report = self.pruner.report()
        if report is not None:
            self.log.info("coordinator.pruned", **report)
        return pruned

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
