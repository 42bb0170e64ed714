"""The flow of tasks through the coordinator: what happens at each outcome, timeout and
backoff, on the coordinator's thread.

:class:`TaskFlow` moves tasks through the :class:`~.table.TaskTable` as the
:class:`~.dispatch.Dispatcher` decides: it assigns queued tasks and sends each attempt once
the assignment is journaled (through the ``later`` it is given: the coordinator's actor runs
those actions after its next commit), judges each outcome (the first completion wins and later
ones are ignored; a failure is retried after a backoff or given up), and ends a task: its
workflow step goes on (:class:`~.engine.WorkflowEngine`, to which the flow is the
:class:`~.engine.StepHost`) and its waiters are answered once the end is journaled. It does
no journal I/O; what it sends goes through the :class:`~.courier.Courier`.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from macp._storable import check as check_storable
from macp.actors.coordinator.messages import TASK_DONE
from macp.actors.coordinator.task import ACTIVE, FINAL, Task, TaskKind, TaskState
from macp.envelope import Wire, new_id, now_ms
from macp.errors import AskTimeout, Cancelled, InvalidParams, MacpError, error_from_body

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from macp.actors.context import Deferred
    from macp.actors.coordinator.agents import AgentView
    from macp.actors.coordinator.courier import AttemptDue, Courier, Outcome, ScatterDue
    from macp.actors.coordinator.dispatch import Dispatcher
    from macp.actors.coordinator.engine import WorkflowEngine
    from macp.actors.coordinator.gather import Decision
    from macp.actors.coordinator.lineage import Consequence, Lineage
    from macp.actors.coordinator.scatter import Scatters
    from macp.actors.coordinator.table import TaskTable

__all__ = ["RetryDue", "TaskFlow"]

# The members used, bound once (an enum member's lookup is the slower kind)
_ASSIGNED: Final = TaskState.ASSIGNED
_CANCELLED: Final = TaskState.CANCELLED
_FAILED: Final = TaskState.FAILED
_PENDING: Final = TaskState.PENDING
_SUCCEEDED: Final = TaskState.SUCCEEDED
_SCATTER: Final = TaskKind.SCATTER
_TASK: Final = TaskKind.TASK


class RetryDue(NamedTuple):
    """A retry's backoff is over."""

    task_id: str


class TaskFlow:
    """Moves the coordinator's tasks from submit to their end.

    Args:
        table: the tasks.
        dispatcher: who runs them, and what a failure costs.
        scatters: the gathers of the scatters in flight.
        courier: sends attempts and leases.
        lineage: the tasks' trees (parents, children, deadlines).
        later: runs an action once the changes made so far are journaled.
        later_s: sends the coordinator a message after a delay (a retry's backoff).
        tell: tells an address a message (a task's ``notify``).
    """

    def __init__(
        self,
        table: TaskTable,
        dispatcher: Dispatcher,
        scatters: Scatters,
        courier: Courier,
        lineage: Lineage,
        *,
        later: Callable[[Callable[[], object]], None],
        later_s: Callable[[float, Any], object],
        tell: Callable[[str, str, Wire], None],
    ) -> None:
        self.table, self.dispatcher, self.scatters = table, dispatcher, scatters
        self.courier, self.lineage = courier, lineage
        self.engine: WorkflowEngine  # wired by the coordinator (the engine is given this flow)
        self._later, self._later_s, self._tell = later, later_s, tell
        self._waiters: dict[str, list[Deferred]] = {}
        self.samples: list[dict[str, Any]] = []  # ended tasks, for the monitor

    # -- starting -----------------------------------------------------------------------------

    def submit(self, task: Task) -> None:
        """Hold a new task (in its tree: :meth:`.Lineage.admit` may refuse it) and queue it for
        an agent."""
        self.lineage.admit(task)
        self.table.submit(task)
        self.dispatcher.enqueue(task)

    def pump(self) -> None:
        """Assign queued tasks to free capable agents, sent once the assignments are
        journaled (a task never runs on a state the coordinator could lose)."""
        for task, view in self.dispatcher.pump():
            attempt = self.table.assign(task, view.address)
            self._later(partial(self._send_assigned, task, view.address, attempt))

    def _send_assigned(self, task: Task, agent: str, attempt: int) -> None:
        if task.state is _ASSIGNED and task.attempts == attempt:
            self.courier.run(task, agent, attempt)
        else:  # cancelled, or given to another, before it went
            self.dispatcher.release(agent, task.id)

    def scatter(self, task: Task) -> None:
        """Send a scatter to its voters (again, after a restart) once this is journaled."""
        attempt = self.table.fan_out(task)
        self._later(partial(self._ask_voters, task, attempt))

    def _ask_voters(self, task: Task, attempt: int) -> None:
        if task.state not in FINAL and task.attempts == attempt:
            self.courier.scatter(task, attempt)

    def recovered(self, tasks: Iterable[Task]) -> None:
        """Go on with the unfinished tasks read back from the journal (recovered, in order):
        tasks are queued again, scatters sent again; those whose parent ended meanwhile are
        cancelled."""
        tasks = list(tasks)
        self._end(self.lineage.recovered(tasks))
        tasks = [task for task in tasks if task.state not in FINAL]
        for task in tasks:
            if task.kind is _TASK:
                self.dispatcher.enqueue(task)
        for task in tasks:
            if task.kind is _SCATTER:
                self.scatters.start(task)
                self.scatter(task)

    def wait_for(self, task: Task, reply: Deferred) -> None:
        """Settle ``reply`` with the task's outcome when it ends."""
        self._waiters.setdefault(task.id, []).append(reply)

    # -- outcomes -----------------------------------------------------------------------------

    def outcome(self, outcome: Outcome) -> None:
        task, agent = self.table.get(outcome.task_id), outcome.agent
        if task is None:
            return
        if task.kind is _SCATTER:
            if task.state not in FINAL:
                decision = self.scatters.answer(task, agent, outcome.ok, outcome.value)
                if decision is not None:
                    self._decided(task, decision)
            return
        self.dispatcher.release(agent, task.id)
        if task.state in FINAL:
            task.note("duplicate_ignored", now_ms(), agent=agent, attempt=outcome.attempt)
            return
        refusal = None
        if outcome.ok:
            try:  # a result its agent's node did not check
                check_storable(outcome.value, f"the result of task {task.id} ({task.type}) "
                               f"from {agent}", "result")  # fmt: skip
            except InvalidParams as e:
                refusal = e
        if outcome.ok and refusal is None:
            self.dispatcher.succeeded(agent)
            self.finish(task, _SUCCEEDED, result=outcome.value)
            return
        error = refusal or outcome.value
        if outcome.attempt == task.attempts and task.state in ACTIVE:
            lost = self.dispatcher.failed(agent, error)
            self._failed_attempt(task, agent, error, node_failure=lost)
        # else an attempt that already timed out failed late: the current one decides

    def attempt_due(self, due: AttemptDue) -> None:
        task = self.table.get(due.task_id)
        if task is None or task.attempts != due.attempt or task.state not in ACTIVE:
            return
        agent = str(task.agent)
        self.dispatcher.failed(agent)
        timeout = AskTimeout(
            f"no result from {agent} for {task.type!r} within {task.timeout_s:g} s"
        )
        self._failed_attempt(task, agent, timeout)

    def _failed_attempt(
        self, task: Task, agent: str, error: BaseException, *, node_failure: bool = False
    ) -> None:
        """Retry after a backoff, or fail (not retried, or a poison message): the
        dispatcher's verdict."""
        self.table.attempt_failed(task, agent, error, node_failure=node_failure)
        verdict = self.dispatcher.verdict(task, error, node_failure=node_failure)
        past = self.lineage.past_deadline(task)
        if past is not None:
            self.finish(task, _FAILED, error=past)
        elif isinstance(verdict, MacpError) and not self.lineage.resubmit(task, verdict):
            self.finish(task, _FAILED, error=verdict)
        elif isinstance(verdict, MacpError):  # resubmitted by its parent's policy
            self.table.retry(task, verdict)
            self._later_s(task.backoff_s, RetryDue(task.id))
        else:
            self.table.retry(task, error)
            self._later_s(verdict, RetryDue(task.id))

    def retry_due(self, due: RetryDue) -> None:
        task = self.table.get(due.task_id)
        if task is not None and self.table.requeue(task):
            self.dispatcher.enqueue(task)
            self.pump()

    def scatter_due(self, due: ScatterDue) -> None:
        task = self.table.get(due.task_id)
        if task is not None and task.state not in FINAL:
            decision = self.scatters.expire(task)
            if decision is not None:
                self._decided(task, decision)

    def _decided(self, task: Task, decision: Decision) -> None:
        error = self.scatters.decided(task, decision)
        if error is None:
            self.finish(task, _SUCCEEDED, result=decision.result)
        else:
            self.finish(task, _FAILED, error=error)

    def expire_overdue(self) -> None:
        """Fail the tasks that waited their whole timeout for an agent none could be, and
        those past their deadline."""
        self._end(self.lineage.overdue())
        for task in self.table.overdue():
            error = self.dispatcher.wait(task).expiry(task) if task.state is _PENDING else None
            if error is not None:
                self.finish(task, _FAILED, error=error)

    # -- the end ------------------------------------------------------------------------------

    def finish(
        self,
        task: Task,
        state: TaskState,
        *,
        result: Any = None,
        error: BaseException | None = None,
    ) -> None:
        """End ``task``: its step's run goes on, and its waiters and ``notify`` are answered
        once this is journaled."""
        if result is not None:
            try:
                check_storable(result, f"the result of task {task.id} ({task.type})", "result")
            except InvalidParams as e:
                state, result, error = _FAILED, None, e
        if state is _SUCCEEDED:
            self.table.complete(task, result)
        elif state is _CANCELLED:
            self.table.cancel(task, error or Cancelled(f"task {task.id} was cancelled"))
        else:
            assert error is not None
            self.table.fail(task, error)
        if task.workflow is not None and self.engine.step_finished(
            task.workflow, str(task.step), task.state.value, task.result, task.error
        ):
            self.pump()
        assert task.finished_ms is not None
        started = task.assigned_ms or task.created_ms
        self.samples.append({"type": task.type, "agent": task.agent, "ok": state is _SUCCEEDED,
                             "duration_ms": task.finished_ms - started})  # fmt: skip
        waiters = self._waiters.pop(task.id, [])
        stored = None if error is None else error_from_body(task.error)  # as a reader gets it
        final = task.state.value

        def announce() -> None:
            for waiter in waiters:
                if stored is None:
                    waiter.resolve(result)
                else:
                    waiter.fail(stored)
            if task.notify:
                done = {"task_id": task.id, "state": final, "result": result, "error": task.error}
                self._tell(task.notify, TASK_DONE, done)

        self._later(announce)
        self._end(self.lineage.ended(task))  # its open children, its parent

    def _end(self, ends: list[Consequence]) -> None:
        """End the tasks a change in their tree ends (each, if it has not finished since)."""
        for task, state, error in ends:
            if task.state not in FINAL:
                self.finish(task, state, error=error)

    def refused(self, task: Task, error: InvalidParams) -> None:
        """The journal refused ``task``'s record: the parts it cannot store become null, and
        the task fails with the reason (stored at the next flush)."""
        task.scrub()
        if task.state not in FINAL:
            self.finish(task, _FAILED, error=error)
        else:
            self.table.refuse(task, error)

    # -- the workflow engine's host -----------------------------------------------------------

    def start_step(self, run_id: str, step_id: str, spec: dict[str, Any]) -> str:
        task = Task.submitted(new_id(), spec, now_ms())
        task.workflow, task.step = run_id, step_id
        self.submit(task)
        return task.id

    def cancel_step(self, task_id: str, run_id: str) -> None:
        task = self.table.get(task_id)
        if task is not None and task.state not in FINAL:
            self.finish(task, _CANCELLED, error=Cancelled(f"run {run_id} ended"))

    def lease(self, owner: str, amounts: dict[str, float]) -> str:
        return self.courier.lease(owner, amounts)

    def release(self, lease_id: str) -> None:
        self.courier.release(lease_id)

    def later(self, action: Callable[[], None]) -> None:
        self._later(action)

    def agents(self) -> Iterable[AgentView]:
        return self.dispatcher.agents.values()
