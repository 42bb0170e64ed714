"""Tasks as the coordinator keeps them: the submitted spec, the record, and the policies
(retry backoff, circuit breaker) that decide what happens next.

A task record is a plain msgpack-native dict, so it goes to the journal and to callers as is.
States: ``pending`` (waiting for an agent), ``assigned`` (sent), ``running`` (the agent
acknowledged it), ``retrying`` (waiting out a backoff), and the final ``succeeded``, ``failed``,
``cancelled``.

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
from typing import Any, Final

from macp._storable import check as check_storable
from macp.envelope import Priority, Wire, now_ms
from macp.errors import InvalidParams, error_body

__all__ = [
    "ACTIVE",
    "FINAL",
    "MAX_NODE_FAILURES",
    "STATES",
    "AgentView",
    "Breaker",
    "backoff_s",
    "describe",
    "error_record",
    "given_up",
    "log",
    "new_record",
    "requirement",
]

FINAL: Final = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE: Final = frozenset({"assigned", "running"})
STATES: Final = frozenset({"pending", "retrying"} | ACTIVE | FINAL)
MAX_NODE_FAILURES: Final = 10
"""The default ``max_node_failures`` of a task."""
_LOG_LIMIT: Final = 20
_DEFAULTS: Final[dict[str, Any]] = {
    "priority": int(Priority.MEDIUM),
    "timeout_s": 30.0,
    "max_retries": 3,
    "max_node_failures": MAX_NODE_FAILURES,
    "backoff_s": 0.1,
    "backoff_max_s": 10.0,
}


def _number(spec: dict[str, Any], name: str, *, minimum: float, integer: bool = False) -> Any:
    value = spec.get(name, _DEFAULTS[name])
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value < minimum:
        what = "an integer" if integer else "a number"
        raise InvalidParams(f"task field {name!r} must be {what} >= {minimum}, not {value!r}")
    return value


def new_record(task_id: str, spec: Wire, *, kind: str = "task") -> dict[str, Any]:
    """A fresh ``pending`` record from a submitted spec.

    Raises:
        InvalidParams: a field is missing or of the wrong type, or the body cannot be stored
            (:func:`~macp._storable.storable`); the message names it.
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
    now = now_ms()
    return {
        "id": task_id,
        "kind": kind,
        "type": type_,
        "body": spec.get("body"),
        "capabilities": sorted(set(capabilities)),
        "role": spec.get("role"),
        "pinned": spec.get("agent"),  # the one agent that may run it; "agent" is who does
        "priority": priority,
        "timeout_s": _number(spec, "timeout_s", minimum=0.001),
        "max_retries": _number(spec, "max_retries", minimum=0, integer=True),
        "max_node_failures": _number(spec, "max_node_failures", minimum=0, integer=True),
        "backoff_s": _number(spec, "backoff_s", minimum=0),
        "backoff_max_s": _number(spec, "backoff_max_s", minimum=0),
        "idempotency_key": spec.get("idempotency_key"),
        "notify": spec.get("notify"),
        "state": "pending",
        "attempts": 0,
        "node_failures": 0,
        "agent": None,
        "result": None,
        "error": None,
        "progress": 0.0,
        "progress_message": "",
        "created_ms": now,
        "queued_ms": now,
        "assigned_ms": None,
        "started_ms": None,
        "finished_ms": None,
        "updated_ms": now,
        "log": [{"ts": now, "event": "submitted"}],
    }


def error_record(error: BaseException) -> dict[str, Wire]:
    """``error`` as a record keeps it (:func:`~macp.errors.error_body`); if its ``data`` (or
    message) cannot be stored, they are replaced by the reason, and the rest is kept."""
    body = error_body(error)
    try:
        check_storable(body, "the error", "error")
    except InvalidParams as e:
        body = {**body, "message": str(body["message"]), "data": {"unstorable": e.message}}
    return body


def log(record: dict[str, Any], event: str, **fields: Wire) -> None:
    """Append to the record's bounded log."""
    entries = record["log"]
    entries.append({"ts": now_ms(), "event": event, **fields})
    if len(entries) > _LOG_LIMIT:
        del entries[: len(entries) - _LOG_LIMIT]


def backoff_s(record: dict[str, Any], *, node_failure: bool = False) -> float:
    """The wait before the next attempt: exponential in the failures of the same kind so far
    (the agent's own, or its node's), capped."""
    nodes = int(record["node_failures"])
    failures = max(1, nodes if node_failure else int(record["attempts"]) - nodes)
    return float(min(record["backoff_s"] * 2 ** (failures - 1), record["backoff_max_s"]))


def given_up(record: dict[str, Any], error: BaseException, *, node_failure: bool) -> str | None:
    """Why the task is a poison message now that an attempt failed with ``error`` (counted
    already: ``node_failure`` says in which count); ``None`` if it is retried."""
    last = f"last: {type(error).__name__}: {error}"
    if node_failure:
        lost, bound = int(record["node_failures"]), int(record["max_node_failures"])
        if lost > bound:
            return f"lost its node {lost} times (max_node_failures {bound}); {last}"
        return None
    failed = int(record["attempts"]) - int(record["node_failures"])
    return f"failed {failed} times; {last}" if failed > record["max_retries"] else None


@dataclass
class Breaker:
    """A per-agent circuit breaker: after ``threshold`` consecutive failures the agent gets no
    new work for ``cooldown_s``; then one trial task decides (success closes, failure reopens).
    """

    threshold: int
    cooldown_s: float
    failures: int = 0
    open_until: float = 0.0
    trial: bool = False

    def allows(self, now: float) -> bool:
        if self.failures < self.threshold:
            return True
        if now < self.open_until or self.trial:
            return False
        self.trial = True  # half-open: let one task through
        return True

    def blocks(self, now: float) -> bool:
        """Whether it would refuse work at ``now`` (without taking the half-open trial)."""
        return self.failures >= self.threshold and (now < self.open_until or self.trial)

    def success(self) -> None:
        self.failures, self.trial = 0, False

    def failure(self, now: float) -> None:
        self.failures += 1
        self.trial = False
        if self.failures >= self.threshold:
            self.open_until = now + self.cooldown_s

    @property
    def state(self) -> str:
        if self.failures < self.threshold:
            return "closed"
        return "half-open" if self.trial else "open"


@dataclass
class AgentView:
    """What the coordinator knows of one agent: from the registry, plus its own in-flight count."""

    address: str
    node: str
    capabilities: frozenset[str]
    handles: frozenset[str]
    status: str
    group: str | None
    role: str | None
    breaker: Breaker
    in_flight: int = 0
    last_assigned: int = 0
    tasks: set[str] = field(default_factory=set)

    def meets(self, need: tuple[str, ...]) -> bool:
        """Whether this agent can run work that needs ``need`` (see :func:`requirement`)."""
        kind = need[0]
        if kind == "type":
            return need[1] in self.handles
        if kind == "agent":
            return self.address == need[1]
        if kind == "role":
            return self.role == need[1]
        return set(need[1:]) <= self.capabilities


def requirement(task: dict[str, Any]) -> tuple[str, ...]:
    """What an agent needs to run ``task``: to be the named agent, to have the role, to have
    the capabilities, or else to have a handler for its type."""
    if task.get("pinned"):
        return ("agent", task["pinned"])
    if task.get("role"):
        return ("role", task["role"])
    if task["capabilities"]:
        return ("capabilities", *task["capabilities"])
    return ("type", task["type"])


def describe(need: tuple[str, ...]) -> str:
    """``need`` in words, for a task's wait reason."""
    if need[0] == "type":
        return f"no agent that handles {need[1]!r}"
    if need[0] == "agent":
        return f"no agent {need[1]!r}"
    if need[0] == "role":
        return f"no agent with role {need[1]!r}"
    return f"no agent with capabilities [{', '.join(need[1:])}]"
