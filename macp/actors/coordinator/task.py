"""A coordinator task: the record, its states and their legal transitions, and its defaults.

A :class:`Task` is a typed record (a dataclass with slots: it is read and changed several times
per task on the coordinator's thread, which bounds the cluster's throughput, so it is checked
by hand where it comes in, at ``submit``, and where it is read back, at replay
(:mod:`.records`), not by a model on every change). It crosses the journal and the wire as a
msgpack map (:meth:`Task.to_record`, :meth:`Task.from_record`), the same map a task has always
been stored as, so the journals of earlier versions replay.

States (:class:`TaskState`): ``pending`` (waiting for an agent), ``assigned`` (sent),
``running`` (the agent acknowledged it), ``retrying`` (waiting out a backoff), and the final
``succeeded``, ``failed``, ``cancelled``. :data:`TRANSITIONS` lists every legal move;
:meth:`Task.move` refuses any other with :class:`~macp.errors.InternalError` (a bug)::

              assign             ack
    pending ----------> assigned -------> running
       ^                    |                |
       | backoff over       | attempt failed |
    retrying <--------------+----------------+

    pending, assigned, running, retrying -> succeeded | failed | cancelled (the end)
    assigned, running, retrying -> pending (recover: the head restarted)
    succeeded, cancelled -> failed (the journal refused the record)

A late success completes a task that is ``pending`` or ``retrying`` again (its attempt timed out
but its agent answered after all), so those may move to ``succeeded`` too.

Two counts decide when a task is given up. ``attempts`` counts every attempt (the number an
agent sees as ``ctx.attempt``); ``node_failures`` counts those lost because their node went
down (its agent's node, or the head with the coordinator): the agent did not fail, so, as Ray
tells system failures from application errors, they are not held against ``max_retries``,
which bounds the agent's own failures (errors, crashes, timeouts: ``attempts - node_failures``).
They have a bound of their own, ``max_node_failures`` (10 by default), so a task that brings
down every node it runs on, or keeps meeting dying nodes, still ends as a poison message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from macp._storable import check as check_storable
from macp._storable import scrub
from macp.actors.coordinator.attempts import from_log
from macp.envelope import Priority, Wire
from macp.errors import InternalError, InvalidParams, error_body

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ACTIVE",
    "DEFAULTS",
    "FINAL",
    "TRANSITIONS",
    "Task",
    "TaskDefaults",
    "TaskKind",
    "TaskState",
    "error_record",
]


class TaskState(StrEnum):
    """Where a task is; its value is what the journal and ``status`` say."""

    PENDING = "pending"
    ASSIGNED = "assigned"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskKind(StrEnum):
    """A task for one agent, or a scatter to many (:mod:`.scatter`)."""

    TASK = "task"
    SCATTER = "scatter"


_S = TaskState
_SCATTER: Final = TaskKind.SCATTER
FINAL: Final = frozenset({_S.SUCCEEDED, _S.FAILED, _S.CANCELLED})
ACTIVE: Final = frozenset({_S.ASSIGNED, _S.RUNNING})
_ENDS: Final = FINAL  # any unfinished task may complete, fail or be cancelled
TRANSITIONS: Final[Mapping[TaskState, frozenset[TaskState]]] = MappingProxyType({
    _S.PENDING: frozenset({_S.ASSIGNED}) | _ENDS,
    _S.ASSIGNED: frozenset({_S.RUNNING, _S.RETRYING, _S.PENDING}) | _ENDS,
    _S.RUNNING: frozenset({_S.RETRYING, _S.PENDING}) | _ENDS,
    _S.RETRYING: frozenset({_S.PENDING}) | _ENDS,
    _S.SUCCEEDED: frozenset({_S.FAILED}),
    _S.CANCELLED: frozenset({_S.FAILED}),
    _S.FAILED: frozenset(),
})  # fmt: skip
"""Every legal move, from each state (see the module's diagram)."""
_LOG_LIMIT: Final = 20
_DATA: Final = ("body", "capabilities", "result", "error", "log", "aggregation", "quorum",
                "failure_threshold", "expected")  # fmt: skip
"""The fields that hold data from outside (the others are checked scalars)."""


@dataclass(frozen=True, slots=True)
class TaskDefaults:
    """What a task spec leaves out; the one source of these values (the coordinator and
    :meth:`macp.Cluster.submit` both read them)."""

    priority: int = int(Priority.MEDIUM)
    timeout_s: float = 30.0
    max_retries: int = 3
    max_node_failures: int = 10
    backoff_s: float = 0.1
    backoff_max_s: float = 10.0


DEFAULTS: Final = TaskDefaults()


def _number(spec: Mapping[str, Any], name: str, *, minimum: float, integer: bool = False) -> Any:
    value = spec.get(name, getattr(DEFAULTS, name))
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value < minimum:
        what = "an integer" if integer else "a number"
        raise InvalidParams(f"task field {name!r} must be {what} >= {minimum}, not {value!r}")
    return value


def error_record(error: BaseException) -> dict[str, Wire]:
    """``error`` as a record keeps it (:func:`~macp.errors.error_body`); if its ``data`` (or
    message) cannot be stored, they are replaced by the reason, and the rest is kept."""
    body = error_body(error)
    try:
        check_storable(body, "the error", "error")
    except InvalidParams as e:
        body = {**body, "message": str(body["message"]), "data": {"unstorable": e.message}}
    return body


@dataclass(slots=True, eq=False, kw_only=True)
class Task:
    """One task as the coordinator keeps it (the fields are the journal record's)."""

    id: str
    kind: TaskKind
    type: str
    body: Any
    capabilities: list[str]
    role: str | None
    pinned: str | None  # the one agent that may run it; ``agent`` is who does
    priority: int
    timeout_s: float
    max_retries: int
    max_node_failures: int
    backoff_s: float
    backoff_max_s: float
    idempotency_key: str | None
    notify: str | None
    state: TaskState = TaskState.PENDING
    attempts: int = 0
    node_failures: int = 0
    agent: str | None = None
    result: Any = None
    error: dict[str, Wire] | None = None
    progress: float = 0.0
    progress_message: str = ""
    created_ms: int
    queued_ms: int
    assigned_ms: int | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    updated_ms: int
    log: list[dict[str, Any]] = field(default_factory=list)
    attempt_history: list[dict[str, Any]] = field(default_factory=list)  # (:mod:`.attempts`)
    # a workflow step's task: its run and step
    workflow: str | None = None
    step: str | None = None
    # a scatter's: its voters, how their answers add up, and the decision's reason
    aggregation: Any = None
    quorum: Any = None
    failure_threshold: Any = None
    expected: list[str] = field(default_factory=list)
    reason: str | None = None

    @classmethod
    def submitted(
        cls, task_id: str, spec: Wire, now_ms: int, *, kind: TaskKind = TaskKind.TASK
    ) -> Task:
        """A fresh ``pending`` task from a submitted spec.

        Raises:
            InvalidParams: a field is missing or of the wrong type, or the body cannot be
                stored (:func:`~macp._storable.storable`); the message names it.
        """
        if not isinstance(spec, dict):
            raise InvalidParams("a task is a map with at least a 'type'")
        check_storable(spec.get("body"), "task field 'body'", "body")
        type_ = spec.get("type")
        if not isinstance(type_, str) or not type_:
            raise InvalidParams("task field 'type' must be a non-empty string, e.g. 'summarize'")
        capabilities = spec.get("capabilities") or []
        if not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities):
            raise InvalidParams(
                f"task field 'capabilities' must be a list of strings, not {capabilities!r}"
            )
        for name in ("idempotency_key", "notify", "role", "agent"):
            if spec.get(name) is not None and not isinstance(spec.get(name), str):
                raise InvalidParams(f"task field {name!r} must be a string")
        priority = _number(spec, "priority", minimum=0, integer=True)
        if priority > Priority.CRITICAL:
            raise InvalidParams(f"task field 'priority' must be 0 to 3, not {priority}")
        return cls(
            id=task_id, kind=kind, type=type_, body=spec.get("body"),
            capabilities=sorted(set(capabilities)), role=spec.get("role"),
            pinned=spec.get("agent"), priority=priority,
            timeout_s=_number(spec, "timeout_s", minimum=0.001),
            max_retries=_number(spec, "max_retries", minimum=0, integer=True),
            max_node_failures=_number(spec, "max_node_failures", minimum=0, integer=True),
            backoff_s=_number(spec, "backoff_s", minimum=0),
            backoff_max_s=_number(spec, "backoff_max_s", minimum=0),
            idempotency_key=spec.get("idempotency_key"), notify=spec.get("notify"),
            created_ms=now_ms, queued_ms=now_ms, updated_ms=now_ms,
            log=[{"ts": now_ms, "event": "submitted"}],
        )  # fmt: skip

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Task:
        """The task a journal record holds; the record has passed
        :func:`~.records.task_fault` (every field there, of its type)."""
        kind = TaskKind(record["kind"])
        return cls(
            id=record["id"], kind=kind, type=record["type"], body=record.get("body"),
            capabilities=record["capabilities"], role=record["role"], pinned=record["pinned"],
            priority=record["priority"], timeout_s=record["timeout_s"],
            max_retries=record["max_retries"], max_node_failures=record["max_node_failures"],
            backoff_s=record["backoff_s"], backoff_max_s=record["backoff_max_s"],
            idempotency_key=record["idempotency_key"], notify=record["notify"],
            state=TaskState(record["state"]), attempts=record["attempts"],
            node_failures=record["node_failures"], agent=record["agent"],
            result=record.get("result"), error=record["error"], progress=record["progress"],
            progress_message=record["progress_message"], created_ms=record["created_ms"],
            queued_ms=record["queued_ms"], assigned_ms=record["assigned_ms"],
            started_ms=record["started_ms"], finished_ms=record["finished_ms"],
            updated_ms=record["updated_ms"], log=record["log"],
            attempt_history=record.get("attempt_history") or from_log(record["log"]),
            workflow=record.get("workflow"), step=record.get("step"),
            aggregation=record.get("aggregation", "all") if kind is TaskKind.SCATTER else None,
            quorum=record.get("quorum"), failure_threshold=record.get("failure_threshold"),
            expected=record.get("expected") or [], reason=record.get("reason"),
        )  # fmt: skip

    def to_record(self) -> dict[str, Any]:
        """The task as the journal stores it and ``status`` shows it (with the body).

        Its enums are written as their values, plain strings (``_value_``: ``.value`` is a
        property, slower, and this runs at every write of every task).
        """
        record: dict[str, Any] = {
            "id": self.id, "kind": self.kind._value_, "type": self.type, "body": self.body,
            "capabilities": self.capabilities, "role": self.role, "pinned": self.pinned,
            "priority": self.priority, "timeout_s": self.timeout_s,
            "max_retries": self.max_retries, "max_node_failures": self.max_node_failures,
            "backoff_s": self.backoff_s, "backoff_max_s": self.backoff_max_s,
            "idempotency_key": self.idempotency_key, "notify": self.notify,
            "state": self.state._value_, "attempts": self.attempts,
            "node_failures": self.node_failures, "agent": self.agent, "result": self.result,
            "error": self.error, "progress": self.progress,
            "progress_message": self.progress_message, "created_ms": self.created_ms,
            "queued_ms": self.queued_ms, "assigned_ms": self.assigned_ms,
            "started_ms": self.started_ms, "finished_ms": self.finished_ms,
            "updated_ms": self.updated_ms, "log": self.log,
            "attempt_history": self.attempt_history,
        }  # fmt: skip
        if self.workflow is not None:
            record["workflow"], record["step"] = self.workflow, self.step
        if self.kind is _SCATTER:
            record["aggregation"], record["quorum"] = self.aggregation, self.quorum
            record["failure_threshold"], record["expected"] = self.failure_threshold, self.expected
            if self.reason is not None:
                record["reason"] = self.reason
        return record

    def move(self, to: TaskState) -> None:
        """Go to state ``to``.

        Raises:
            InternalError: ``to`` is not reachable from the current state (:data:`TRANSITIONS`).
        """
        if to not in TRANSITIONS[self.state]:
            raise InternalError(
                f"task {self.id} cannot go from {self.state.value} to {to.value}; "
                "this is a bug in the coordinator"
            )
        self.state = to

    def note(self, event: str, now_ms: int, **fields: Wire) -> None:
        """Append to the task's bounded log."""
        entries = self.log
        entries.append({"ts": now_ms, "event": event, **fields})
        if len(entries) > _LOG_LIMIT:
            del entries[: len(entries) - _LOG_LIMIT]

    def scrub(self) -> None:
        """Replace every part of the task's data the journal would refuse by null (the record
        was refused: only a bug gets here)."""
        for name in _DATA:
            setattr(self, name, scrub(getattr(self, name)))

    @property
    def own_failures(self) -> int:
        """The attempts its agents failed (errors, crashes, timeouts), not lost with a node."""
        return self.attempts - self.node_failures
