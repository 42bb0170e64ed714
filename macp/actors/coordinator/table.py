"""The task table: every task the coordinator holds, and each change of state, with no I/O.

The table applies a change (submit, assign, ack, retry, requeue, complete, fail, cancel,
expire, recover) to a :class:`~.task.Task`, through its legal transitions, stamps it, marks
it changed and, while someone follows task events, hands the move to its ``watch``; the
coordinator writes the changed tasks to its journal (:meth:`TaskTable.changed`) before it acts
on them. It keeps the idempotency index of the tasks it holds (the journal
has the others) and the bound on memory: at most :data:`KEPT_TASKS` tasks, the oldest finished
ones forgotten first. Time comes from the clock it is given (epoch milliseconds).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final

from macp.actors.coordinator import attempts
from macp.actors.coordinator.attempts import Outcome
from macp.actors.coordinator.task import FINAL, Task, TaskKind, TaskState, error_record
from macp.envelope import now_ms
from macp.errors import InternalError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from macp.envelope import Wire

__all__ = ["FLUSH_AT", "KEPT_TASKS", "TaskTable"]

KEPT_TASKS: Final = 20_000
"""Tasks held in memory (finished ones go first; the journal has them)."""
FLUSH_AT: Final = 256
"""Changed tasks that make the coordinator write them at once, before its burst ends."""

# The members used, bound once (an enum member's lookup is the slower kind)
_ASSIGNED: Final = TaskState.ASSIGNED
_CANCELLED: Final = TaskState.CANCELLED
_FAILED: Final = TaskState.FAILED
_PENDING: Final = TaskState.PENDING
_RETRYING: Final = TaskState.RETRYING
_RUNNING: Final = TaskState.RUNNING
_SUCCEEDED: Final = TaskState.SUCCEEDED
_TASK: Final = TaskKind.TASK


class TaskTable:
    """The tasks the coordinator holds, and the changes it makes to them.

    Args:
        kept: the most tasks held (finished ones beyond it are forgotten, oldest first).
        clock: the time now, in epoch milliseconds.
        full: called when :data:`FLUSH_AT` tasks have changed since the last
            :meth:`changed` (the coordinator writes them then, before the burst ends).
    """

    def __init__(
        self,
        *,
        kept: int = KEPT_TASKS,
        clock: Callable[[], int] = now_ms,
        full: Callable[[], object] | None = None,
    ) -> None:
        self.kept = kept
        self._clock = clock
        self._full = full
        self._tasks: dict[str, Task] = {}
        self._keys: dict[str, str] = {}  # idempotency key -> task id, of the tasks held
        self._finished: deque[str] = deque()  # oldest first: forgotten first past ``kept``
        self._waiting: set[str] = set()  # pending tasks, for their waiting timeouts
        self._changed: dict[str, Task] = {}  # since the last flush
        self.watch: Callable[[Task, TaskState | None, int], object] | None = None
        """Called with each task moved, its previous state and the time, after the move (set
        only while someone follows task events: :mod:`.events`)."""

    # -- reading ------------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def by_key(self, key: str) -> Task | None:
        """The task held that was submitted with idempotency key ``key``."""
        task_id = self._keys.get(key)
        return None if task_id is None else self._tasks.get(task_id)

    def current(self, task_id: object, attempt: object) -> Task | None:
        """The task ``task_id`` if ``attempt`` is its current attempt (a report about an older
        one is stale)."""
        task = self._tasks.get(task_id) if isinstance(task_id, str) else None
        return task if task is not None and task.attempts == attempt else None

    def overdue(self) -> list[Task]:
        """The pending tasks that have waited longer than their timeout for an agent."""
        now = self._clock()
        found = []
        for task_id in self._waiting:
            task = self._tasks[task_id]
            if task.state is _PENDING and now - task.queued_ms > task.timeout_s * 1000:
                found.append(task)
        return found

    # -- changes ------------------------------------------------------------------------------

    def save(self, task: Task) -> None:
        """Mark ``task`` changed (to be written at the next flush)."""
        task.updated_ms = self._clock()
        self._changed[task.id] = task
        if len(self._changed) >= FLUSH_AT and self._full is not None:
            self._full()

    def submit(self, task: Task) -> None:
        """Hold a new ``pending`` task (indexed by its idempotency key, if it has one)."""
        self._tasks[task.id] = task
        if task.idempotency_key:
            self._keys[task.idempotency_key] = task.id
        self._waiting.add(task.id)
        self.save(task)
        if self.watch is not None:
            self.watch(task, None, task.created_ms)

    def add_scatter(self, task: Task) -> None:
        """Hold a new scatter (it waits for no agent: it is sent at once)."""
        self._tasks[task.id] = task
        if self.watch is not None:
            self.watch(task, None, task.created_ms)

    def assign(self, task: Task, agent: str) -> int:
        """A pending task goes to ``agent``: its new attempt's number."""
        now = self._clock()
        self._waiting.discard(task.id)
        task.move(_ASSIGNED)
        task.attempts += 1
        task.agent, task.assigned_ms, task.started_ms = agent, now, None
        task.note("assigned", now, agent=agent, attempt=task.attempts)
        attempts.begin(task.attempt_history, task.attempts, agent, now)
        self.save(task)
        if self.watch is not None:
            self.watch(task, _PENDING, now)
        return task.attempts

    def fan_out(self, task: Task) -> int:
        """A scatter goes to its voters: its new attempt's number."""
        previous = task.state
        task.move(_ASSIGNED)
        task.attempts += 1
        self.save(task)
        if self.watch is not None:
            self.watch(task, previous, self._clock())
        return task.attempts

    def ack(self, task: Task) -> None:
        """Its agent has the task (acknowledged its current attempt)."""
        if task.state is _ASSIGNED:
            task.move(_RUNNING)
            task.started_ms = self._clock()
            attempts.started(task.attempt_history, task.started_ms)
            self.save(task)
            if self.watch is not None:
                self.watch(task, _ASSIGNED, task.started_ms)

    def progress(self, task: Task, fraction: float, message: str) -> None:
        """Its agent's report of how far it got (kept, not written: the next change writes it)."""
        task.progress = min(1.0, max(0.0, float(fraction)))
        task.progress_message = message[:500]

    def attempt_failed(
        self, task: Task, agent: str, error: BaseException, *, node_failure: bool
    ) -> None:
        """Count a failed attempt (as lost with its node, if ``node_failure``)."""
        task.node_failures += node_failure
        now = self._clock()
        task.note("failed_attempt", now, agent=agent, node_down=node_failure,
                  error=f"{type(error).__name__}: {error}")  # fmt: skip
        outcome = attempts.failed(error, node_failure=node_failure)
        attempts.end(task.attempt_history, outcome, now, error)

    def retry(self, task: Task, error: BaseException) -> None:
        """An active task waits out a backoff before it is queued again."""
        previous = task.state
        task.move(_RETRYING)
        task.error = error_record(error)
        if self.watch is not None:  # with the agent that failed it
            self.watch(task, previous, self._clock())
        task.agent = None
        self.save(task)

    def requeue(self, task: Task) -> bool:
        """A task whose backoff is over waits for an agent again; whether it was retrying."""
        if task.state is not _RETRYING:
            return False
        task.move(_PENDING)
        task.queued_ms = self._clock()
        self._waiting.add(task.id)
        self.save(task)
        if self.watch is not None:
            self.watch(task, _RETRYING, task.queued_ms)
        return True

    def complete(self, task: Task, result: Wire) -> None:
        self._finish(task, _SUCCEEDED, result, None)

    def fail(self, task: Task, error: BaseException) -> None:
        self._finish(task, _FAILED, None, error)

    def cancel(self, task: Task, error: BaseException) -> None:
        self._finish(task, _CANCELLED, None, error)

    def expire(self, task: Task, error: BaseException) -> None:
        """A pending task that waited its whole timeout fails."""
        assert task.state is _PENDING
        self._finish(task, _FAILED, None, error)

    def _finish(
        self, task: Task, state: TaskState, result: Wire, error: BaseException | None
    ) -> None:
        if task.state in FINAL:
            raise InternalError(
                f"task {task.id} has finished already ({task.state.value}); this is a bug in "
                "the coordinator"
            )
        now = self._clock()
        self._waiting.discard(task.id)
        previous = task.state
        task.move(state)
        self._finished.append(task.id)
        task.finished_ms, task.result = now, result
        task.error = None if error is None else error_record(error)
        if state is _SUCCEEDED:
            task.progress = 1.0
        attempts.end(task.attempt_history, Outcome(state.value), now, error)
        task.note(state.value, now, agent=task.agent)
        self.save(task)
        if self.watch is not None:
            self.watch(task, previous, now)

    def refuse(self, task: Task, error: BaseException) -> None:
        """The journal refused a finished task's record: it stands as failed, saying why."""
        previous = task.state
        if previous is not _FAILED:
            task.move(_FAILED)
        task.error = error_record(error)
        self.save(task)
        if self.watch is not None and previous is not _FAILED:
            self.watch(task, previous, task.updated_ms)

    # -- the journal's side -------------------------------------------------------------------

    def load(self, task: Task) -> None:
        """Hold a task read from the journal (finished ones oldest first, then the others)."""
        self._tasks[task.id] = task
        if task.idempotency_key:
            self._keys[task.idempotency_key] = task.id
        if task.state in FINAL:
            self._finished.append(task.id)

    def recover(self, task: Task) -> None:
        """An unfinished task read from the journal waits for an agent again; an attempt in
        flight when the coordinator stopped was lost with it (a node failure: the head's)."""
        now = self._clock()
        if task.state in (_ASSIGNED, _RUNNING):
            task.node_failures += 1
            attempts.end(task.attempt_history, Outcome.NODE_DOWN, now)
        previous = task.state
        if previous is not _PENDING:
            task.move(_PENDING)
        task.agent, task.queued_ms = None, now
        task.note("recovered", now, note="the coordinator restarted")
        if task.kind is _TASK:
            self._waiting.add(task.id)
        self.save(task)
        if self.watch is not None and previous is not _PENDING:
            self.watch(task, previous, now)

    def changed(self) -> dict[str, Task]:
        """The tasks changed since the last call (to be written), and start anew."""
        changed, self._changed = self._changed, {}
        return changed

    def forget(self, task_id: str) -> None:
        """Stop holding a finished task (the journal keeps it), unless it has unsaved changes."""
        task = self._tasks.get(task_id)
        if task is None or task_id in self._changed or task.state not in FINAL:
            return
        del self._tasks[task_id]
        key = task.idempotency_key
        if key is not None and self._keys.get(key) == task_id:
            del self._keys[key]

    def forget_old(self) -> None:
        """Hold at most ``kept`` tasks: forget the oldest finished ones past it."""
        while len(self._tasks) > self.kept and self._finished:
            if self._finished[0] in self._changed:
                break  # not written yet: it goes once it is
            self.forget(self._finished.popleft())

    def forget_pruned(self, task_ids: Iterable[str]) -> None:
        """Forget the tasks the journal pruned (the oldest finished ones)."""
        for task_id in task_ids:
            self.forget(task_id)
        while self._finished and self._finished[0] not in self._tasks:
            self._finished.popleft()
