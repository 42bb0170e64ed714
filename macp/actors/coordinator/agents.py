"""The coordinator's view of the agents: what each can run, its load, its circuit breaker, and
what a task needs of the agent that runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["AgentView", "Breaker", "Need", "describe", "need_of"]

Need: TypeAlias = tuple[str, ...]
"""What an agent needs to run a task: ``("agent", address)``, ``("role", name)``,
``("capabilities", *sorted names)`` or ``("type", task type)``; tasks with the same need share a
queue."""


def need_of(type: str, *, agent: str | None, role: str | None, capabilities: Iterable[str]) -> Need:
    """What an agent needs to run a task: to be the named agent, to have the role, to have the
    capabilities, or else to have a handler for its type."""
    if agent:
        return ("agent", agent)
    if role:
        return ("role", role)
    if capabilities:
        return ("capabilities", *sorted(set(capabilities)))
    return ("type", type)


def describe(need: Need) -> str:
    """``need`` in words, for a task's wait reason."""
    if need[0] == "type":
        return f"no agent that handles {need[1]!r}"
    if need[0] == "agent":
        return f"no agent {need[1]!r}"
    if need[0] == "role":
        return f"no agent with role {need[1]!r}"
    return f"no agent with capabilities [{', '.join(need[1:])}]"


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
    score: float | None = None  # its performance_score, from the evaluations (registry)
    rank: float = 0.0  # how it ranks among equally loaded agents, lower first (the dispatcher's)
    in_flight: int = 0
    last_assigned: int = 0
    tasks: set[str] = field(default_factory=set)

    def meets(self, need: Need) -> bool:
        """Whether this agent can run work that needs ``need``."""
        kind = need[0]
        if kind == "type":
            return need[1] in self.handles
        if kind == "agent":
            return self.address == need[1]
        if kind == "role":
            return self.role == need[1]
        return set(need[1:]) <= self.capabilities
