"""Why a task waits, and why one is given up: codes, with their sentences built from the code.

Decisions are taken on the codes (a waiting task past its timeout fails only if its
:class:`WaitCode` says no agent can take it); the sentences are for people (``status``'s
``wait_reason``, the error a caller gets) and are never read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Final

from macp.actors.coordinator.agents import describe
from macp.actors.coordinator.task import error_record
from macp.errors import MacpError, NodeDown, PoisonMessage, ResourceUnavailable

if TYPE_CHECKING:
    from macp.actors.coordinator.agents import Need
    from macp.actors.coordinator.task import Task
    from macp.envelope import Wire

__all__ = ["NODE_DOWN", "GiveUp", "Wait", "WaitCode"]

NODE_DOWN: Final = "waiting: node down"
"""How the wait reason of a task that only agents of down nodes can run begins."""


class WaitCode(Enum):
    """Why a ``pending`` task has no agent yet."""

    NODE_DOWN = "node_down"
    """Every agent that could run it is on a node that is down (it runs once one is back)."""
    NONE_REGISTERED = "none_registered"
    """No agent that could run it is registered."""
    NONE_AVAILABLE = "none_available"
    """Those that could run it are paused, stopped or failing (none is routable)."""
    ALL_PAUSED = "all_paused"
    """Every one that could run it (on a live node) is paused (NONE_AVAILABLE's own case)."""
    BREAKERS_OPEN = "breakers_open"
    """Every routable agent that could run it has its circuit breaker open."""
    ALL_BUSY = "all_busy"
    """Every one that could run it has ``max_in_flight`` tasks already."""
    POOL_EXHAUSTED = "pool_exhausted"
    """A workflow step (resource-aware) waits for its resources: a pool has too little free."""

    @property
    def expires(self) -> bool:
        """Whether a task that waited its whole timeout for this reason fails (else it goes on
        waiting: a busy or broken agent frees up on its own)."""
        return self in _EXPIRING


_EXPIRING: Final = frozenset(
    {WaitCode.NODE_DOWN, WaitCode.NONE_REGISTERED, WaitCode.NONE_AVAILABLE, WaitCode.ALL_PAUSED}
)

_COUNTED: Final = frozenset({WaitCode.NONE_AVAILABLE, WaitCode.ALL_PAUSED, WaitCode.ALL_BUSY})


@dataclass(frozen=True, slots=True)
class Wait:
    """Why one task waits: the code, and what its sentence names."""

    code: WaitCode
    need: Need
    agents: tuple[str, ...] = ()
    """NODE_DOWN: the capable agents; BREAKERS_OPEN: those whose breaker is open."""
    nodes: tuple[str, ...] = ()
    """NODE_DOWN: the nodes they are on (for a pinned task, its agent's)."""
    states: tuple[str, ...] = ()
    """NONE_AVAILABLE: the statuses of the capable agents on live nodes."""
    count: int = 0
    """NONE_AVAILABLE: the capable agents on live nodes; ALL_BUSY: the routable ones."""
    down: int = 0
    """NONE_AVAILABLE: the capable agents on down nodes."""
    limit: int = 0
    """ALL_BUSY: ``max_in_flight``."""

    def cause(self) -> str:
        """The reason in words, without the wait's framing (what an expiry error says)."""
        code = self.code
        if code is WaitCode.NODE_DOWN:
            if self.need[0] == "agent":
                return f"its agent {self.need[1]} is on node {self.nodes[0]!r}, which is down"
            nodes = ", ".join(repr(n) for n in self.nodes)
            agents = ", ".join(self.agents)
            return f"the agents that can run it ({agents}) are on nodes that are down ({nodes})"
        if code is WaitCode.NONE_REGISTERED:
            return f"{describe(self.need)} is registered"
        if code in (WaitCode.NONE_AVAILABLE, WaitCode.ALL_PAUSED):
            down = f", {self.down} on a down node" if self.down else ""
            verb = "is" if self.count == 1 else "are"
            states = ", ".join(self.states)
            return f"{describe(self.need)} is available ({self.count} {verb} {states}{down})"
        if code is WaitCode.BREAKERS_OPEN:
            return f"the circuit breaker is open for every capable agent: {', '.join(self.agents)}"
        return (f"the pool of capable agents is exhausted: all {self.count} are busy (at most "
                f"{self.limit} tasks each)")  # fmt: skip

    def to_wire(self) -> dict[str, Wire]:
        """The wait as ``status`` and ``coordinator.tasks`` show it: ``{code, reason, need,
        ...}`` with what its sentence names (``agents``, ``nodes``, ``states``, ``count``,
        ``down``, ``limit``), those that apply to its code."""
        wait: dict[str, Wire] = {"code": self.code.value, "reason": self.sentence(),
                                 "need": list(self.need)}  # fmt: skip
        for name in ("agents", "nodes", "states"):
            if getattr(self, name):
                wait[name] = list(getattr(self, name))
        if self.code in _COUNTED:
            wait["count"], wait["down"] = self.count, self.down
        if self.code is WaitCode.ALL_BUSY:
            wait["limit"] = self.limit
        return wait

    def sentence(self) -> str:
        """The task's ``wait_reason``."""
        if self.code is WaitCode.NODE_DOWN:
            back = "the node is" if self.need[0] == "agent" else "one is"
            return f"{NODE_DOWN}: {self.cause()}; it runs once {back} back"
        return self.cause()

    def expiry(self, task: Task) -> MacpError | None:
        """The error ``task`` fails with, having waited its whole timeout for this reason;
        ``None`` if it goes on waiting (:attr:`WaitCode.expires`)."""
        if not self.code.expires:
            return None
        waited = f"task {task.id} waited {task.timeout_s:g} s: {self.cause()}"
        return NodeDown(waited) if self.code is WaitCode.NODE_DOWN else ResourceUnavailable(waited)


class GiveUp(Enum):
    """Why a task whose attempt failed is not retried: a poison message."""

    RETRIES = "retries"
    """Its agents failed it more than ``max_retries`` times."""
    NODE_FAILURES = "node_failures"
    """It lost its node more than ``max_node_failures`` times."""

    def error(self, task: Task, last: BaseException) -> PoisonMessage:
        """The :class:`PoisonMessage` ``task`` fails with; ``last`` is the attempt's error."""
        tail = f"last: {type(last).__name__}: {last}"
        if self is GiveUp.NODE_FAILURES:
            why = (
                f"lost its node {task.node_failures} times (max_node_failures "
                f"{task.max_node_failures}); {tail}"
            )
        else:
            why = f"failed {task.own_failures} times; {tail}"
        data: dict[str, Wire] = {"last_error": error_record(last), "attempts": task.attempts,
                                 "node_failures": task.node_failures}  # fmt: skip
        return PoisonMessage(f"task {task.id} ({task.type}) {why}", data=data)
