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
:mod:`.tasks`). The first completion wins and later ones are ignored, so none counts twice.
With no capable agent, a task waits (``status`` says why) up to its timeout. Every state
change is journaled (grouped: one transaction per burst of messages), and a restarted
coordinator resumes from the journal: finished tasks stay finished, the others are dispatched
again.

Messages (body -> reply): ``coordinator.submit`` task spec -> ``{task_id, state, duplicate}``;
``coordinator.status`` ``{task_id}`` -> the record; ``coordinator.result`` ``{task_id}`` -> the
result once finished (or its error); ``coordinator.cancel`` ``{task_id}``; ``coordinator.tasks``
``{states?}``; ``coordinator.scatter`` and ``coordinator.control`` (see :mod:`.fanout`).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from functools import partial
from typing import Any, Final, NamedTuple

from macp._storable import check as check_storable
from macp._storable import is_number
from macp.actors.agent import TASK_ACK, Agent, handler
from macp.actors.context import TASK_PROGRESS, Context, Deferred, Reply
from macp.actors.fanout import FanOut
from macp.actors.journaled import Journaled
from macp.actors.monitor import SAMPLES
from macp.actors.registry import CONTROL_PLANE
from macp.actors.routing import AttemptDue, CoordinatorOptions, Outcome, Routing
from macp.actors.tasks import (
    ACTIVE,
    FINAL,
    AgentView,
    backoff_s,
    error_record,
    given_up,
    log,
    new_record,
)
from macp.actors.workflows import Workflows
from macp.envelope import Wire, new_id, now_ms
from macp.errors import AskTimeout, Cancelled, InvalidParams, PoisonMessage, error_from_body
from macp.store import open_journal

__all__ = ["CANCEL", "RESULT", "STATUS", "SUBMIT", "TASKS", "Coordinator"]

SUBMIT: Final = "coordinator.submit"
STATUS: Final = "coordinator.status"
RESULT: Final = "coordinator.result"
CANCEL: Final = "coordinator.cancel"
TASKS: Final = "coordinator.tasks"
TASK_DONE: Final = "task.done"
_NOT_RETRIED: Final = (InvalidParams, Cancelled)
_LISTED: Final = ("id", "type", "state", "attempts", "node_failures", "agent", "progress")


class _Due(NamedTuple):
    task_id: str


class _Tick(NamedTuple):
    pass


class Coordinator(Journaled, Workflows, Routing, FanOut, Agent):
    """Routes tasks to agents (one per cluster, on the head node, named ``coordinator``).

    Config: ``journal`` (path), ``registry`` (address, default ``registry`` on this node), and
    the :class:`~macp.actors.routing.CoordinatorOptions`.
    """

    capabilities = ("coordinator",)
    group = CONTROL_PLANE

    def on_start(self) -> None:
        cfg = self.config
        options = CoordinatorOptions.of(cfg)
        self.max_in_flight = options.max_in_flight
        self.breaker_failures = options.breaker_failures
        self.breaker_cooldown_s = options.breaker_cooldown_s
        self.registry = str(cfg.get("registry") or f"registry@{self.node.name}")
        self.journal = open_journal(cfg.get("journal"), self.node.name)
        self.tasks: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}  # of the tasks in memory; the journal has the others
        self.agents: dict[str, AgentView] = {}
        self._watch_nodes()
        self.waiting: set[str] = set()  # pending tasks, for their waiting timeouts
        self.finished: deque[str] = deque()  # oldest first: dropped from memory past KEPT_TASKS
        self.capable: dict[tuple[str, ...], list[AgentView]] = {}
        self.queues: dict[tuple[str, ...], list[tuple[int, int, str]]] = {}
        self.waiters: dict[str, list[Deferred]] = {}
        self.seq = itertools.count()
        self.dirty: dict[str, dict[str, Any]] = {}
        self.after_commit: list[Any] = []
        self.monitor = str(cfg.get("monitor") or "monitor")
        self.samples: dict[str, list[dict[str, Any]]] = {"tasks": [], "workflows": []}
        self.registry_incarnation: str | None = None
        self.ticks = 0
        self._init_fanout()
        self._init_workflows()
        self._init_retention(cfg)
        self._replay()
        self._subscribe()
        self.timer = self.node.scheduler.call_every(0.25, self._tell_self, _Tick())

    def on_stop(self) -> None:
        self.timer.cancel()
        self._flush()
        self.journal.close()

    def on_failure(self, *_exc: object) -> None:
        self.timer.cancel()
        self.journal.close()

    def on_idle(self) -> None:
        self._pump()
        self._flush()

    def _receive(self, message: Any) -> Any:
        if isinstance(message, Outcome):
            return self._on_outcome(message)
        if isinstance(message, AttemptDue):
            return self._on_attempt_due(message)
        if isinstance(message, _Due):
            return self._on_due(message.task_id)
        if isinstance(message, _Tick):
            return self._on_tick()
        if self._on_fanout_message(message):
            return None
        return super()._receive(message)

    # -- the API ------------------------------------------------------------------------------

    @handler(SUBMIT)
    def submit(self, body: Wire, ctx: Context) -> Reply:
        key = body.get("idempotency_key") if isinstance(body, dict) else None
        first = self._first_with_key(key) if isinstance(key, str) else None
        if first is not None:
            return {"task_id": first["id"], "state": first["state"], "duplicate": True}
        task = new_record(new_id(), body)
        self.tasks[task["id"]] = task
        if key:
            self.keys[key] = task["id"]
        self._save(task)
        self._enqueue(task)
        reply = ctx.defer()
        self.after_commit.append(
            partial(reply.resolve, {"task_id": task["id"], "state": "pending", "duplicate": False})
        )
        return reply

    @handler(STATUS)
    def status_of(self, body: Wire) -> Wire:
        task = self._task(body)
        result = {k: v for k, v in task.items() if k != "body"}
        if task["state"] == "pending":
            result["wait_reason"] = self._wait_reason(task)
        return result

    @handler(RESULT)
    def result_of(self, body: Wire, ctx: Context) -> Reply:
        task = self._task(body)
        if task["state"] in FINAL:
            return self._answer_of(task)
        reply = ctx.defer()
        self.waiters.setdefault(task["id"], []).append(reply)
        return reply

    @handler(CANCEL)
    def cancel(self, body: Wire) -> Wire:
        task = self._task(body)
        if task["state"] in FINAL:
            return {"cancelled": False, "state": task["state"]}
        self._finish(task, "cancelled", error=Cancelled(f"task {task['id']} was cancelled"))
        return {"cancelled": True, "state": "cancelled"}

    @handler(TASKS)
    def list_tasks(self, body: Wire) -> Wire:
        states = body.get("states") if isinstance(body, dict) else None
        return [
            {k: t[k] for k in _LISTED}
            for t in self.tasks.values()
            if states is None or t["state"] in states
        ]

    def _task(self, body: Wire) -> dict[str, Any]:
        task_id = body.get("task_id") if isinstance(body, dict) else None
        if not isinstance(task_id, str):
            raise InvalidParams("'task_id' must be the string that submit returned")
        task = self.tasks.get(task_id)
        if task is None:  # long finished, and no longer kept in memory: the journal has it
            task = self._stored_task(task_id)
        if task is None:
            raise InvalidParams(
                f"no task {task_id!r}; check the id submit returned (a finished task is kept "
                "for the journal's retention: settings.journal_retention)"
            )
        return task

    def _answer_of(self, task: dict[str, Any]) -> Wire:
        if task["state"] == "succeeded":
            return task["result"]  # type: ignore[no-any-return]
        raise error_from_body(task["error"])

    # -- outcomes -----------------------------------------------------------------------------

    @handler(TASK_ACK)
    def _acked(self, body: Wire) -> None:
        task = self._attempt_of(body)
        if task is not None and task["state"] == "assigned":
            task.update(state="running", started_ms=now_ms())
            self._save(task)

    @handler(TASK_PROGRESS)
    def _progressed(self, body: Wire) -> None:
        task = self._attempt_of(body)
        if task is None or task["state"] not in ACTIVE:
            return
        assert isinstance(body, dict)
        progress, message = body.get("progress", 0.0), body.get("message", "")
        if not is_number(progress) or not isinstance(message, str):
            raise InvalidParams(
                f"{TASK_PROGRESS} needs 'progress' as a number from 0 to 1 and 'message' as a "
                f"string, not {progress!r:.40} and {message!r:.40}"
            )
        task["progress"] = min(1.0, max(0.0, float(progress)))
        task["progress_message"] = message[:500]

    def _attempt_of(self, body: Wire) -> dict[str, Any] | None:
        """The task a report (``{task_id, attempt}``) is about, if it is its current attempt."""
        if not isinstance(body, dict):
            return None
        task_id, attempt = body.get("task_id"), body.get("attempt")
        task = self.tasks.get(task_id) if isinstance(task_id, str) else None
        return task if task is not None and task["attempts"] == attempt else None

    def _on_outcome(self, outcome: Outcome) -> None:
        task = self.tasks.get(outcome.task_id)
        if task is None:
            return
        if task["kind"] == "scatter":
            self._scatter_answer(task, outcome.agent, outcome.ok, outcome.value)
            return
        view = self.agents.get(outcome.agent)
        if view is not None and outcome.task_id in view.tasks:
            view.tasks.discard(outcome.task_id)
            view.in_flight -= 1
        if task["state"] in FINAL:
            log(task, "duplicate_ignored", agent=outcome.agent, attempt=outcome.attempt)
            return
        refusal = self._refused_result(task, outcome) if outcome.ok else None
        if outcome.ok and refusal is None:
            if view is not None:
                view.breaker.success()
            self._finish(task, "succeeded", result=outcome.value)
            return
        error = refusal or outcome.value
        if outcome.attempt == task["attempts"] and task["state"] in ACTIVE:
            lost = self._lost_with_node(outcome.agent, error)
            if view is not None and not lost:
                view.breaker.failure(time.monotonic())
            self._failed_attempt(task, outcome.agent, error, node_failure=lost)
        # else an attempt that already timed out failed late: the current one decides

    @staticmethod
    def _refused_result(task: dict[str, Any], outcome: Outcome) -> InvalidParams | None:
        """Why ``outcome``'s result cannot be stored (its agent's node did not check it)."""
        try:
            check_storable(outcome.value, f"the result of task {task['id']} ({task['type']}) from "
                     f"{outcome.agent}", "result")  # fmt: skip
        except InvalidParams as e:
            return e
        return None

    def _on_attempt_due(self, due: AttemptDue) -> None:
        task = self.tasks.get(due.task_id)
        if task is None or task["attempts"] != due.attempt or task["state"] not in ACTIVE:
            return
        view = self.agents.get(task["agent"])
        if view is not None:
            view.breaker.failure(time.monotonic())
        timeout = AskTimeout(
            f"no result from {task['agent']} for {task['type']!r} within {task['timeout_s']:g} s"
        )
        self._failed_attempt(task, task["agent"], timeout)

    def _failed_attempt(
        self, task: dict[str, Any], agent: str, error: BaseException, *, node_failure: bool = False
    ) -> None:
        """Retry after a backoff, or give up: a poison message after ``max_retries`` failures
        of the agent's own, or ``max_node_failures`` attempts lost because the node went down
        (counted apart, :mod:`.tasks`). The retry goes to a live agent (:mod:`.routing`)."""
        task["node_failures"] += node_failure
        log(task, "failed_attempt", agent=agent, node_down=node_failure,
            error=f"{type(error).__name__}: {error}")  # fmt: skip
        if isinstance(error, _NOT_RETRIED):
            self._finish(task, "failed", error=error)
        elif reason := given_up(task, error, node_failure=node_failure):
            data = {"last_error": error_record(error), "attempts": task["attempts"],
                    "node_failures": task["node_failures"]}  # fmt: skip
            poison = PoisonMessage(f"task {task['id']} ({task['type']}) {reason}", data=data)
            self._finish(task, "failed", error=poison)
        else:
            task.update(state="retrying", agent=None, error=error_record(error))
            self._save(task)
            delay = backoff_s(task, node_failure=node_failure)
            self.node.scheduler.call_later(delay, self._tell_self, _Due(task["id"]))

    def _on_due(self, task_id: str) -> None:
        task = self.tasks.get(task_id)
        if task is not None and task["state"] == "retrying":
            task.update(state="pending", queued_ms=now_ms())
            self._save(task)
            self._enqueue(task)
            self._pump()

    def _finish(
        self,
        task: dict[str, Any],
        state: str,
        *,
        result: Any = None,
        error: BaseException | None = None,
    ) -> None:
        self.waiting.discard(task["id"])
        if task["state"] not in FINAL:
            self.finished.append(task["id"])
        if result is not None:
            try:
                check_storable(
                    result, f"the result of task {task['id']} ({task['type']})", "result"
                )
            except InvalidParams as e:
                state, result, error = "failed", None, e
        task.update(state=state, finished_ms=now_ms(), result=result)
        task["error"] = error_record(error) if error is not None else None
        if state == "succeeded":
            task["progress"] = 1.0
        log(task, state, agent=task["agent"])
        self._save(task)
        if task.get("workflow"):
            self._step_finished(task)
        started = task["assigned_ms"] or task["created_ms"]
        self.samples["tasks"].append({"type": task["type"], "agent": task["agent"],
                                      "ok": state == "succeeded",
                                      "duration_ms": task["finished_ms"] - started})  # fmt: skip
        waiters = self.waiters.pop(task["id"], [])
        notify = task.get("notify")
        stored = None if error is None else error_from_body(task["error"])  # as a reader gets it

        def announce() -> None:
            for waiter in waiters:
                if stored is None:
                    waiter.resolve(result)
                else:
                    waiter.fail(stored)
            if notify:
                done = {
                    "task_id": task["id"],
                    "state": state,
                    "result": result,
                    "error": task["error"],
                }
                self.tell(notify, TASK_DONE, done)

        self.after_commit.append(announce)

    # -- time ---------------------------------------------------------------------------------

    def _on_tick(self) -> None:
        self.ticks += 1
        self._report()
        if self.registry_incarnation is None or self.ticks % 8 == 0:  # every 2 s
            self._subscribe()
        self._expire_waiting()
        self._pump()
        self._retain()

    def _report(self) -> None:
        """Hand the outcomes since the last tick to the monitor, if it runs here."""
        samples, self.samples = self.samples, {"tasks": [], "workflows": []}
        if self.monitor not in self.node.agents():
            return
        queued = sum(len(q) for q in self.queues.values())
        in_flight = sum(v.in_flight for v in self.agents.values())
        gauges = {"coordinator.queue_depth": queued, "coordinator.in_flight": in_flight}
        self.tell(self.monitor, SAMPLES, {**samples, "gauges": gauges})
