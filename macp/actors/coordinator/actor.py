"""The Coordinator actor: tasks routed to agents, at least once, completed exactly once.

A task (type, body, required capabilities, priority, timeout, retries with exponential backoff,
an optional idempotency key) is journaled before ``submit`` answers. It goes to the least
loaded routable agent with the capabilities (higher priorities first, FIFO within one), as a
``task.run`` ask that the agent acknowledges on receipt, sent only once the assignment is
journaled (a task never runs on a state a crash could lose). A failure or timeout is retried
after a backoff; after ``max_retries`` retries the task fails as a :class:`PoisonMessage`. A
task whose agent dies is re-dispatched; one whose node went down (or whose attempt was lost
with a restarted head) is retried after a backoff on a live agent without using up its
``max_retries`` (``node_failures`` counts those, up to ``max_node_failures``: see
:mod:`.task`). The first completion wins and later ones are ignored, so none counts twice.
With no capable agent, a task waits (``status`` says why) up to its timeout. Every state
change is journaled (grouped: one transaction per burst of messages), and a restarted
coordinator resumes from the journal: finished tasks stay finished, the others are dispatched
again.

The actor is thin: it holds the parts, routes each message to the one it concerns, and owns
the journal calls (persist, then act). The parts: the :class:`~.table.TaskTable` (every task
and its changes of state), the :class:`~.dispatch.Dispatcher` (which agent runs what, and what
a failed attempt costs), the :class:`~.flow.TaskFlow` (each task from submit to its end), the
:class:`~.engine.WorkflowEngine`, the :class:`~.scatter.Scatters` (gathers), the
:class:`~.commands.Commands` (control commands to many agents), the :class:`~.courier.Courier`
(what is sent), the :class:`~.ledger.Ledger` (the journal) and the task events'
:class:`~.events.Subscribers`.

Its messages, what each takes and answers: :mod:`.messages`.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from macp._storable import is_number
from macp.actors.agent import TASK_ACK, Agent, handler
from macp.actors.context import TASK_PROGRESS, Context, Reply
from macp.actors.coordinator.commands import Commands, ControlAnswer
from macp.actors.coordinator.courier import AttemptDue, Courier, Outcome, ScatterDue
from macp.actors.coordinator.dispatch import CoordinatorOptions, Dispatcher
from macp.actors.coordinator.engine import WorkflowEngine
from macp.actors.coordinator.events import Subscribers
from macp.actors.coordinator.flow import RetryDue, TaskFlow
from macp.actors.coordinator.history import History
from macp.actors.coordinator.ledger import Ledger
from macp.actors.coordinator.messages import (
    CANCEL,
    CONTROL,
    COUNTS,
    DEAD_LETTERS,
    RESULT,
    SCATTER,
    STATUS,
    SUBMIT,
    TASKS,
    TASKS_SUBSCRIBE,
    TASKS_SUBSCRIBERS,
    TASKS_UNSUBSCRIBE,
    WORKFLOW_CANCEL,
    WORKFLOW_DEFINE,
    WORKFLOW_LIST,
    WORKFLOW_PAUSE,
    WORKFLOW_RESULT,
    WORKFLOW_RESUME,
    WORKFLOW_RUN,
    WORKFLOW_STATUS,
)
from macp.actors.coordinator.scatter import Scatters
from macp.actors.coordinator.table import TaskTable
from macp.actors.coordinator.task import ACTIVE, FINAL, Task, TaskState
from macp.actors.monitor import SAMPLES
from macp.actors.registry import CHANGED, CONTROL_PLANE, SUBSCRIBE
from macp.envelope import Wire, new_id, now_ms
from macp.errors import Cancelled, InvalidParams, MacpError, NotFound, error_from_body
from macp.store import open_journal

if TYPE_CHECKING:
    from collections.abc import Callable


__all__ = ["Coordinator"]

_TICK_S: Final = 0.25
_SUBSCRIBE_TICKS: Final = 8  # subscribe to the registry again every 2 s
# The members used, bound once (an enum member's lookup is the slower kind)
_ASSIGNED: Final = TaskState.ASSIGNED
_CANCELLED: Final = TaskState.CANCELLED
_PENDING: Final = TaskState.PENDING
_SUCCEEDED: Final = TaskState.SUCCEEDED


class _Tick(NamedTuple):
    pass


class Coordinator(Agent):
    """Routes tasks to agents (one per cluster, on the head node, named ``coordinator``).

    Config: ``journal`` (path), ``registry`` (address, default ``registry`` on this node),
    ``retention`` (:class:`~.retention.JournalRetention`), and the
    :class:`~.dispatch.CoordinatorOptions`.
    """

    capabilities = ("coordinator",)
    group = CONTROL_PLANE

    def on_start(self) -> None:
        cfg = self.config
        options = CoordinatorOptions.of(cfg)
        self.registry = str(cfg.get("registry") or f"registry@{self.node.name}")
        self.monitor = str(cfg.get("monitor") or "monitor")
        self.ledger = Ledger(open_journal(cfg.get("journal"), self.node.name), cfg, self.log)
        self.after_commit: list[Callable[[], object]] = []  # run after the next commit
        self.table = TaskTable(full=self._flush)
        self.subscribers = Subscribers(self.table, self.tell, self.log)
        self.dispatcher = Dispatcher(options, self.table)
        self.scatters = Scatters(self.dispatcher)
        self.flow = TaskFlow(
            self.table, self.dispatcher, self.scatters,
            Courier(self.node, self.address, self._tell_self),
            later=self.after_commit.append, tell=self.tell,
            later_s=self._tell_self_in,
        )  # fmt: skip
        self.engine = WorkflowEngine(self.flow, self.ledger.run, self.log)
        self.flow.engine = self.engine
        self.group_commands = Commands(self.node, self.address, self._tell_self)
        self.history = History(self.table, self.dispatcher, self.engine, self.ledger, self._flush)
        self.registry_incarnation: str | None = None
        self.ticks = 0
        self._watch_nodes()
        self._replay()
        self._subscribe()
        self.timer = self.node.scheduler.call_every(_TICK_S, self._tell_self, _Tick())

    def _tell_self_in(self, delay_s: float, message: Any) -> None:
        self.node.scheduler.call_later(delay_s, self._tell_self, message)

    def on_stop(self) -> None:
        self.timer.cancel()
        self._flush()
        self.ledger.close()

    def on_failure(self, *_exc: object) -> None:
        self.timer.cancel()
        self.ledger.close()

    def on_idle(self) -> None:
        self.flow.pump()
        self._flush()

    def _receive(self, message: Any) -> Any:
        own = _OWN.get(type(message))
        if own is not None:
            return own(self, message)
        return super()._receive(message)

    # -- tasks --------------------------------------------------------------------------------

    @handler(SUBMIT)
    def submit(self, body: Wire, ctx: Context) -> Reply:
        key = body.get("idempotency_key") if isinstance(body, dict) else None
        first = self._first_with_key(key) if isinstance(key, str) else None
        if first is not None:
            return {"task_id": first.id, "state": first.state.value, "duplicate": True}
        task = Task.submitted(new_id(), body, now_ms())
        self.flow.submit(task)
        reply = ctx.defer()
        answer: Wire = {"task_id": task.id, "state": _PENDING.value, "duplicate": False}
        self.after_commit.append(partial(reply.resolve, answer))
        return reply

    def _first_with_key(self, key: str) -> Task | None:
        """The task submitted with idempotency key ``key``, while the journal keeps it."""
        return self.table.by_key(key) or self.ledger.task_by_key(key)

    @handler(STATUS)
    def status_of(self, body: Wire) -> Wire:
        return self.history.status(self._task(body))

    @handler(RESULT)
    def result_of(self, body: Wire, ctx: Context) -> Reply:
        task = self._task(body)
        if task.state in FINAL:
            if task.state is _SUCCEEDED:
                return task.result  # type: ignore[no-any-return]
            raise error_from_body(task.error)
        reply = ctx.defer()
        self.flow.wait_for(task, reply)
        return reply

    @handler(CANCEL)
    def cancel(self, body: Wire) -> Wire:
        task = self._task(body)
        if task.state in FINAL:
            return {"cancelled": False, "state": task.state.value}
        self.flow.finish(task, _CANCELLED, error=Cancelled(f"task {task.id} was cancelled"))
        return {"cancelled": True, "state": _CANCELLED.value}

    @handler(TASKS)
    def list_tasks(self, body: Wire) -> Wire:
        return self.history.tasks(body)

    @handler(COUNTS)
    def counts(self, _body: Wire) -> Wire:
        return self.history.counts()

    def _task(self, body: Wire) -> Task:
        task_id = body.get("task_id") if isinstance(body, dict) else None
        if not isinstance(task_id, str):
            raise InvalidParams("'task_id' must be the string that submit returned")
        task = self.table.get(task_id)
        if task is None:  # long finished, and no longer kept in memory: the journal has it
            task = self.ledger.task(task_id)
        if task is None:
            raise NotFound(
                f"no task {task_id!r}; check the id submit returned (a finished task is kept "
                "for the journal's retention: settings.journal_retention)"
            )
        return task

    @handler(TASKS_SUBSCRIBE)
    def subscribe_tasks(self, body: Wire) -> Wire:
        return self.subscribers.subscribe(body)

    @handler(TASKS_UNSUBSCRIBE)
    def unsubscribe_tasks(self, body: Wire) -> Wire:
        return self.subscribers.unsubscribe(body)

    @handler(TASKS_SUBSCRIBERS)
    def task_subscribers(self, _body: Wire) -> Wire:
        return self.subscribers.listing()

    @handler(DEAD_LETTERS)
    def dead_letters(self, body: Wire) -> Wire:
        return self.ledger.dead_letters(body)

    # -- reports and outcomes -----------------------------------------------------------------

    @handler(TASK_ACK)
    def _acked(self, body: Wire) -> None:
        if isinstance(body, dict):
            task = self.table.current(body.get("task_id"), body.get("attempt"))
            if task is not None:
                self.table.ack(task)

    @handler(TASK_PROGRESS)
    def _progressed(self, body: Wire) -> None:
        if not isinstance(body, dict):
            return
        task = self.table.current(body.get("task_id"), body.get("attempt"))
        if task is None or task.state not in ACTIVE:
            return
        progress, message = body.get("progress", 0.0), body.get("message", "")
        if not is_number(progress) or not isinstance(message, str):
            raise InvalidParams(
                f"{TASK_PROGRESS} needs 'progress' as a number from 0 to 1 and 'message' as a "
                f"string, not {progress!r:.40} and {message!r:.40}"
            )
        self.table.progress(task, progress, message)

    @handler(CHANGED)
    def _agent_changed(self, record: dict[str, Any]) -> None:
        if self.dispatcher.agent_changed(record):
            self.flow.pump()

    def _subscribe(self) -> None:
        """Subscribe to the registry's changes (again: this also finds out it restarted)."""
        body = {"address": self.address, "incarnation": self.registry_incarnation}
        try:
            reply = self.node.ask(self.registry, SUBSCRIBE, body, timeout_s=2).get()
        except MacpError as e:
            self.log.info("coordinator.registry_unreachable", error=str(e))
            return
        self.registry_incarnation = reply["incarnation"]
        for record in reply["records"] or []:
            self._agent_changed(record)

    def _watch_nodes(self) -> None:
        """Follow which nodes are down: those down already, then every change."""
        self.subscribe("node.down", "node.up")
        for name, peer in self.node.peers().items():
            if peer["state"] == "down":
                self.dispatcher.node_down(name)

    @handler("node.down")
    def _node_down(self, body: dict[str, Any]) -> None:
        node = body.get("node")
        if isinstance(node, str) and self.dispatcher.node_down(node):
            self.log.info("coordinator.node_down", node=node, reason=body.get("reason"))

    @handler("node.up")
    def _node_up(self, body: dict[str, Any]) -> None:
        node = body.get("node")
        if isinstance(node, str) and self.dispatcher.node_up(node):
            self.log.info("coordinator.node_up", node=node)
            self.flow.pump()

    # -- scatter-gather and control commands --------------------------------------------------

    @handler(SCATTER)
    def scatter(self, body: Wire, ctx: Context) -> Reply:
        task = self.scatters.new(new_id(), body, now_ms())
        self.table.add_scatter(task)
        self.flow.scatter(task)
        reply = ctx.defer()
        answer: Wire = {"task_id": task.id, "state": _ASSIGNED.value}
        self.after_commit.append(partial(reply.resolve, answer))
        return reply

    @handler(CONTROL)
    def control_many(self, body: Wire, ctx: Context) -> Reply:
        return self.group_commands.send(body, self.dispatcher.targets, ctx.defer)

    # -- workflows (the engine's) -------------------------------------------------------------

    @handler(WORKFLOW_DEFINE)
    def define(self, body: Wire) -> Wire:
        return self.engine.define(body)

    @handler(WORKFLOW_RUN)
    def run_workflow(self, body: Wire, ctx: Context) -> Reply:
        run_id = self.engine.start(body)
        reply = ctx.defer()
        self.after_commit.append(partial(reply.resolve, {"run_id": run_id}))
        return reply

    @handler(WORKFLOW_STATUS)
    def run_status(self, body: Wire) -> Wire:
        return self.history.run_status(body)

    @handler(WORKFLOW_RESULT)
    def run_result(self, body: Wire, ctx: Context) -> Reply:
        return self.engine.result(body, ctx.defer)

    @handler(WORKFLOW_PAUSE)
    def pause_run(self, body: Wire) -> Wire:
        return self.engine.pause(body)

    @handler(WORKFLOW_RESUME)
    def resume_run(self, body: Wire) -> Wire:
        return self.engine.resume_run(body)

    @handler(WORKFLOW_CANCEL)
    def cancel_run(self, body: Wire) -> Wire:
        return self.engine.cancel(body)

    @handler(WORKFLOW_LIST)
    def list_runs(self, _body: Wire) -> Wire:
        return self.engine.listing()

    # -- time ---------------------------------------------------------------------------------

    def _on_tick(self) -> None:
        self.ticks += 1
        self._report()
        self.subscribers.expire()
        if self.registry_incarnation is None or self.ticks % _SUBSCRIBE_TICKS == 0:
            self._subscribe()
        self.flow.expire_overdue()
        self.flow.pump()
        pruned = self.ledger.prune()  # the journal's retention, a batch at a time
        if pruned is not None:
            self.table.forget_pruned(pruned.tasks)
            for run_id in pruned.runs:
                self.engine.forget(run_id)

    def _report(self) -> None:
        """Hand the outcomes since the last tick to the monitor, if it runs here."""
        samples = {"tasks": self.flow.samples, "workflows": self.engine.take_samples()}
        self.flow.samples = []
        if self.monitor not in self.node.agents():
            return
        gauges = {"coordinator.queue_depth": self.dispatcher.queued(),
                  "coordinator.in_flight": self.dispatcher.in_flight()}  # fmt: skip
        self.tell(self.monitor, SAMPLES, {**samples, "gauges": gauges})

    # -- the journal --------------------------------------------------------------------------

    def _flush(self) -> None:
        """Commit every change since the last flush, then do what waited on it."""
        tasks, runs = self.table.changed(), self.engine.changed()
        if tasks or runs:
            for record, error in self.ledger.write(tasks, runs):  # refused: only a bug
                if isinstance(record, Task):
                    self.flow.refused(record, error)
                else:
                    self.engine.refused(record, error)
            self.table.forget_old()
            self.engine.forget_old()
        after = self.after_commit.copy()  # the parts hold its append: keep the list
        self.after_commit.clear()
        for action in after:
            action()
        self.subscribers.send()

    def _replay(self) -> None:
        """Load what the coordinator keeps in memory from the journal; go on with what had not
        finished: tasks queued again, scatters sent again, runs resumed."""
        self.flow.recovered(self.ledger.replay(self.table, self.engine))
        self.ledger.resume(self.engine, self.table.__contains__)


_OWN: Final[dict[type, Callable[[Coordinator, Any], None]]] = {
    Outcome: lambda c, outcome: c.flow.outcome(outcome),
    AttemptDue: lambda c, due: c.flow.attempt_due(due),
    RetryDue: lambda c, due: c.flow.retry_due(due),
    ScatterDue: lambda c, due: c.flow.scatter_due(due),
    ControlAnswer: lambda c, answer: c.group_commands.answer(answer),
    _Tick: lambda c, _tick: c._on_tick(),
}
"""The coordinator's own messages (not envelopes), by type: from its timers and from the
threads that settle its asks."""
