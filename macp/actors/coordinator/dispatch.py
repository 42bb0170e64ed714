"""The dispatcher: which agent runs what, and what a failed attempt costs.

Its view of the agents comes from the registry (a ``registry.changed`` subscription) plus its
own count of tasks in flight per agent, which is what "least loaded" means here. Queued tasks
wait in one priority queue per :data:`~.agents.Need` (higher priorities first, FIFO within
one); an agent takes at most ``max_in_flight`` tasks at once, so priorities keep deciding while
work queues. An agent whose circuit breaker is open gets no work until its cooldown is over.

Which nodes are down it learns from its node's ``node.down`` and ``node.up`` events, at once
(the registry marks their agents offline too, but its news may come after a retry): no task
goes to an agent of a node known down until the node is up again and the registry has the
agent routable. The node sends the event before it fails the asks waiting on that node, so
every such failure is known for a node failure when it is handled: it counts in the task's
``node_failures``, not against ``max_retries`` nor the agent's breaker (:mod:`.task`), and is
retried after a backoff of its own kind.

No I/O: the coordinator sends what :meth:`Dispatcher.pump` assigns.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import TYPE_CHECKING, Annotated, Any, Final, Self

from pydantic import Field

from macp.actors.coordinator.agents import AgentView, Breaker, Need, need_of
from macp.actors.coordinator.reasons import GiveUp, Wait, WaitCode
from macp.actors.coordinator.task import TaskState
from macp.actors.registry import CONTROL_PLANE, GONE, ROUTABLE
from macp.errors import AgentLost, Cancelled, ConfigError, InvalidParams, MacpError, NodeDown
from macp.schema import Schema, check

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from macp.actors.coordinator.table import TaskTable
    from macp.actors.coordinator.task import Task

__all__ = ["CoordinatorOptions", "Dispatcher", "need"]

_NOT_RETRIED: Final = (InvalidParams, Cancelled)
_PENDING: Final = TaskState.PENDING


class CoordinatorOptions(Schema):
    """The coordinator's settings: a topology file's ``coordinator:`` section, and
    ``start_control_plane(coordinator=...)``."""

    max_in_flight: Annotated[int, Field(strict=True, ge=1)] = Field(
        default=4,
        description="Tasks one agent may have in flight at once; more wait for a free agent.",
    )
    breaker_failures: Annotated[int, Field(strict=True, ge=1)] = Field(
        default=3, description="Failures in a row that open an agent's circuit breaker."
    )
    breaker_cooldown_s: Annotated[float, Field(strict=True, ge=0)] = Field(
        default=10.0,
        description="Seconds an open breaker keeps work from its agent, before one trial task "
        "decides whether it closes again.",
    )

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Self:
        """The options in the coordinator's ``config`` (which holds other keys too).

        Raises:
            ConfigError: an option is malformed (named in the message).
        """
        given = {k: v for k, v in config.items() if k in cls.model_fields}
        return check(cls, given, "coordinator", ConfigError)


def need(task: Task) -> Need:
    """What an agent needs to run ``task``."""
    return need_of(task.type, agent=task.pinned, role=task.role, capabilities=task.capabilities)


def backoff_s(task: Task, *, node_failure: bool) -> float:
    """The wait before the next attempt: exponential in the failures of the same kind so far
    (the agents' own, or their nodes'), capped."""
    failures = max(1, task.node_failures if node_failure else task.own_failures)
    return float(min(task.backoff_s * 2 ** (failures - 1), task.backoff_max_s))


def given_up(task: Task, *, node_failure: bool) -> GiveUp | None:
    """Why ``task`` is a poison message now that an attempt failed (counted already:
    ``node_failure`` says in which count); ``None`` if it is retried."""
    if node_failure:
        return GiveUp.NODE_FAILURES if task.node_failures > task.max_node_failures else None
    return GiveUp.RETRIES if task.own_failures > task.max_retries else None


class Dispatcher:
    """Routes queued tasks of a :class:`~.table.TaskTable` to the agents, and judges failures.

    Args:
        options: the coordinator's.
        table: the tasks it routes.
        clock: seconds, for the breakers' cooldowns.
    """

    def __init__(
        self,
        options: CoordinatorOptions,
        table: TaskTable,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock  # for the breakers' cooldowns
        self.max_in_flight = options.max_in_flight
        self._breaker = (options.breaker_failures, options.breaker_cooldown_s)
        self._table = table
        self.agents: dict[str, AgentView] = {}
        self.down_nodes: set[str] = set()
        self._capable: dict[Need, list[AgentView]] = {}
        self._queues: dict[Need, list[tuple[int, int, str]]] = {}
        self._seq = itertools.count()

    # -- agents, from the registry ------------------------------------------------------------

    def agent_changed(self, record: Mapping[str, Any]) -> bool:
        """Take the registry's news of one agent (a ``registry.changed`` record); whether it
        may take work now (it did not go)."""
        address = record["address"]
        view = self.agents.get(address)
        if record["status"] == GONE:
            if view is not None:
                del self.agents[address]
                self._capable.clear()
            return False
        if view is None:
            view = AgentView(
                address, record["node"], frozenset(record["capabilities"]),
                frozenset(record.get("handles") or ()), record["status"],
                record.get("group"), record.get("role"), Breaker(*self._breaker),
            )  # fmt: skip
            self.agents[address] = view
            self._capable.clear()
        view.status = record["status"]
        shape = (frozenset(record["capabilities"]), frozenset(record.get("handles") or ()),
                 record.get("role"))  # fmt: skip
        if shape != (view.capabilities, view.handles, view.role):
            view.capabilities, view.handles, view.role = shape
            self._capable.clear()
        view.group = record.get("group")
        return True

    def capable(self, need: Need) -> list[AgentView]:
        """The agents that meet ``need`` (cached until the agents change)."""
        found = self._capable.get(need)
        if found is None:
            found = self._capable[need] = [v for v in self.agents.values() if v.meets(need)]
        return found

    # -- nodes, from the node's events --------------------------------------------------------

    def node_down(self, node: str) -> bool:
        """Route nothing to ``node``'s agents; whether that is news."""
        if node in self.down_nodes:
            return False
        self.down_nodes.add(node)
        return True

    def node_up(self, node: str) -> bool:
        """``node``'s agents are routable again (once the registry has them so); whether that
        is news."""
        if node not in self.down_nodes:
            return False
        self.down_nodes.discard(node)
        return True

    # -- assignment ---------------------------------------------------------------------------

    def enqueue(self, task: Task) -> None:
        """Queue a pending task for an agent."""
        heapq.heappush(
            self._queues.setdefault(need(task), []), (-task.priority, next(self._seq), task.id)
        )

    def pump(self) -> list[tuple[Task, AgentView]]:
        """Take the queued tasks that free capable agents can run now, highest priority first,
        each with the agent it goes to (counted in flight there)."""
        taken, now = [], self._clock()
        order = sorted((q[0], key) for key, q in self._queues.items() if q)
        table = self._table
        for _, key in order:
            queue = self._queues[key]
            while queue:
                task = table.get(queue[0][2])
                if task is None or task.state is not _PENDING:
                    heapq.heappop(queue)
                    continue
                agent = self._least_loaded(key, now)
                if agent is None:
                    break
                heapq.heappop(queue)
                agent.in_flight += 1
                agent.last_assigned = next(self._seq)
                agent.tasks.add(task.id)
                taken.append((task, agent))
        return taken

    def _least_loaded(self, need: Need, now: float) -> AgentView | None:
        """The routable agent with room for one more task, fewest in flight, least recently
        given one; ``None`` if every capable agent is full, unavailable or broken."""
        best: AgentView | None = None
        limit, down = self.max_in_flight, self.down_nodes
        for v in self.capable(need):
            if v.in_flight >= limit or v.status not in ROUTABLE or v.node in down:
                continue
            if best is not None and (v.in_flight, v.last_assigned) >= (
                best.in_flight, best.last_assigned,
            ):  # fmt: skip
                continue
            if v.breaker.failures >= v.breaker.threshold and v.breaker.blocks(now):
                continue
            best = v
        if best is not None:
            best.breaker.allows(now)  # the chosen one takes the half-open trial, if any
        return best

    def release(self, agent: str, task_id: str) -> AgentView | None:
        """``agent`` no longer runs ``task_id`` (it answered, or the task was not sent)."""
        view = self.agents.get(agent)
        if view is not None and task_id in view.tasks:
            view.tasks.discard(task_id)
            view.in_flight -= 1
        return view

    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def in_flight(self) -> int:
        return sum(v.in_flight for v in self.agents.values())

    # -- outcomes -----------------------------------------------------------------------------

    def succeeded(self, agent: str) -> None:
        view = self.agents.get(agent)
        if view is not None:
            view.breaker.success()

    def failed(self, agent: str, error: BaseException | None = None) -> bool:
        """An attempt on ``agent`` failed with ``error`` (``None``: it timed out); whether it
        was lost with the agent's node (or with the agent itself: :class:`AgentLost` naming it,
        an external agent whose program went away) rather than failed by the agent (which may
        raise NodeDown itself, about some other node). The agent's own failures count against
        its breaker."""
        lost = isinstance(error, NodeDown) and (
            agent.partition("@")[2] in self.down_nodes
            or (isinstance(error, AgentLost) and error.data.get("agent") == agent)
        )
        view = self.agents.get(agent)
        if view is not None and not lost:
            view.breaker.failure(self._clock())
        return lost

    @staticmethod
    def verdict(task: Task, error: BaseException, *, node_failure: bool) -> float | MacpError:
        """After a failed attempt (counted): the backoff before ``task`` is retried, or the
        error it fails with (not retried, or a poison message)."""
        if isinstance(error, _NOT_RETRIED):
            return error
        cause = given_up(task, node_failure=node_failure)
        if cause is not None:
            return cause.error(task, error)
        return backoff_s(task, node_failure=node_failure)

    # -- why a task waits ---------------------------------------------------------------------

    def wait(self, task: Task) -> Wait:
        """Why the pending ``task`` has no agent yet."""
        need_ = need(task)
        capable, down = self.capable(need_), self.down_nodes
        live = [v for v in capable if v.node not in down]
        if capable and not live:
            return Wait(WaitCode.NODE_DOWN, need_, agents=tuple(sorted(v.address for v in capable)),
                        nodes=tuple(sorted({v.node for v in capable})))  # fmt: skip
        if not capable:
            return Wait(WaitCode.NONE_REGISTERED, need_)
        routable = [v for v in live if v.status in ROUTABLE]
        if not routable:
            states = tuple(sorted({v.status for v in live}))
            code = WaitCode.ALL_PAUSED if states == ("paused",) else WaitCode.NONE_AVAILABLE
            return Wait(code, need_, states=states, count=len(live),
                        down=len(capable) - len(live))  # fmt: skip
        open_ = tuple(v.address for v in routable if v.breaker.state == "open")
        if len(open_) == len(routable):
            return Wait(WaitCode.BREAKERS_OPEN, need_, agents=open_)
        return Wait(WaitCode.ALL_BUSY, need_, count=len(routable), limit=self.max_in_flight)

    # -- one to many --------------------------------------------------------------------------

    def voters(self, task: Task, count: int | None) -> list[str]:
        """The ``count`` least loaded routable agents that can run ``task`` (all if None)."""
        need_ = need(task)
        routable = sorted(
            (v for v in self.agents.values()
             if v.status in ROUTABLE and v.node not in self.down_nodes and v.meets(need_)),
            key=lambda v: (v.in_flight, v.address),
        )  # fmt: skip
        return [v.address for v in routable[:count]]

    def targets(self, target: str) -> list[str]:
        """The agents a control command's ``target`` names."""
        views = self.agents.values()
        if target == "all":  # every agent of the users: the control plane is not paused by it
            return sorted(v.address for v in views if v.group != CONTROL_PLANE)
        kind, _, value = target.partition(":")
        if kind == "group" and value:
            return sorted(v.address for v in views if v.group == value)
        if kind == "role" and value:
            return sorted(v.address for v in views if v.role == value)
        if "@" in target:
            return [target] if target in self.agents else []
        return sorted(v.address for v in views if v.address.partition("@")[0] == target)
