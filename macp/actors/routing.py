"""The coordinator's routing: its view of the agents, the task queues, and assignment.

The view comes from the registry (a ``registry.changed`` subscription) plus the coordinator's
own count of tasks in flight per agent, which is what "least loaded" means here. Queued tasks
wait in one priority queue per set of required capabilities; an agent takes at most
``max_in_flight`` tasks at once, so priorities keep deciding while work queues.

Which nodes are down the coordinator learns from its own node's ``node.down`` and ``node.up``
events, at once (the registry marks their agents offline too, but its news may come after a
retry): no task goes to an agent of a node known down until the node is up again and the
registry has the agent routable. Its node sends the event before it fails the asks waiting on
that node, so every such failure is known for a node failure when it is handled.
"""

from __future__ import annotations

import heapq
import time
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Final, NamedTuple, Self

from pydantic import Field

from macp.actors.agent import TASK_RUN, handler
from macp.actors.registry import CHANGED, GONE, ROUTABLE, SUBSCRIBE
from macp.actors.tasks import AgentView, Breaker, describe, log, requirement
from macp.envelope import now_ms
from macp.errors import ConfigError, MacpError, NodeDown, ResourceUnavailable
from macp.schema import Schema, check

if TYPE_CHECKING:
    import itertools
    from collections.abc import Mapping

    from macp.futures import AskFuture

__all__ = ["NODE_DOWN", "AttemptDue", "CoordinatorOptions", "Outcome", "Routing"]

NODE_DOWN: Final = "waiting: node down"
"""How the wait reason of a task that only agents of down nodes can run begins."""


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


class Outcome(NamedTuple):
    """How one attempt ended, handed from the thread that settled it to the coordinator."""

    task_id: str
    attempt: int
    agent: str
    ok: bool
    value: Any


class AttemptDue(NamedTuple):
    """An attempt's time is up (whether or not its agent will still answer)."""

    task_id: str
    attempt: int


class Routing:
    """The routing half of :class:`~macp.actors.coordinator.Coordinator`."""

    if TYPE_CHECKING:
        address: str
        node: Any
        log: Any
        registry: str
        registry_incarnation: str | None
        max_in_flight: int
        breaker_failures: int
        breaker_cooldown_s: float
        tasks: dict[str, dict[str, Any]]
        agents: dict[str, AgentView]
        down_nodes: set[str]
        capable: dict[tuple[str, ...], list[AgentView]]
        waiting: set[str]
        queues: dict[tuple[str, ...], list[tuple[int, int, str]]]
        seq: itertools.count[int]
        after_commit: list[Any]

        def _tell_self(self, message: Any) -> None: ...
        def subscribe(self, *events: str) -> None: ...
        def _save(self, task: dict[str, Any]) -> None: ...
        def _finish(self, task: dict[str, Any], state: str, *, result: Any = ...,
                    error: BaseException | None = ...) -> None: ...  # fmt: skip

    # -- agents, from the registry ------------------------------------------------------------

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

    @handler(CHANGED)
    def _agent_changed(self, record: dict[str, Any]) -> None:
        address = record["address"]
        view = self.agents.get(address)
        if record["status"] == GONE:
            if view is not None:
                del self.agents[address]
                self.capable.clear()
            return
        if view is None:
            view = AgentView(
                address, record["node"], frozenset(record["capabilities"]),
                frozenset(record.get("handles") or ()), record["status"],
                record.get("group"), record.get("role"),
                Breaker(self.breaker_failures, self.breaker_cooldown_s),
            )  # fmt: skip
            self.agents[address] = view
            self.capable.clear()
        view.status = record["status"]
        shape = (frozenset(record["capabilities"]), frozenset(record.get("handles") or ()),
                 record.get("role"))  # fmt: skip
        if shape != (view.capabilities, view.handles, view.role):
            view.capabilities, view.handles, view.role = shape
            self.capable.clear()
        view.group = record.get("group")
        self._pump()

    # -- nodes, from this node's events -------------------------------------------------------

    def _watch_nodes(self) -> None:
        """Start following which nodes are down (from ``on_start``): those down already, then
        every change."""
        self.subscribe("node.down", "node.up")
        peers = self.node.peers()
        self.down_nodes = {name for name, peer in peers.items() if peer["state"] == "down"}

    @handler("node.down")
    def _node_down(self, body: dict[str, Any]) -> None:
        node = body.get("node")
        if isinstance(node, str) and node not in self.down_nodes:
            self.down_nodes.add(node)
            self.log.info("coordinator.node_down", node=node, reason=body.get("reason"))

    @handler("node.up")
    def _node_up(self, body: dict[str, Any]) -> None:
        node = body.get("node")
        if isinstance(node, str) and node in self.down_nodes:
            self.down_nodes.discard(node)
            self.log.info("coordinator.node_up", node=node)
            self._pump()

    def _lost_with_node(self, agent: str, error: BaseException) -> bool:
        """Whether an attempt on ``agent`` that failed with ``error`` was lost because the
        agent's node went down (rather than failed by the agent, which may raise NodeDown
        itself, about some other node)."""
        return isinstance(error, NodeDown) and agent.partition("@")[2] in self.down_nodes

    # -- dispatch -----------------------------------------------------------------------------

    def _enqueue(self, task: dict[str, Any]) -> None:
        self.waiting.add(task["id"])
        key = requirement(task)
        heapq.heappush(
            self.queues.setdefault(key, []), (-task["priority"], next(self.seq), task["id"])
        )

    def _capable(self, need: tuple[str, ...]) -> list[AgentView]:
        """The agents that meet ``need`` (cached until the agents change)."""
        found = self.capable.get(need)
        if found is None:
            found = self.capable[need] = [v for v in self.agents.values() if v.meets(need)]
        return found

    def _least_loaded(self, need: tuple[str, ...], now: float) -> AgentView | None:
        """The routable agent with room for one more task, fewest in flight, least recently
        given one; ``None`` if every capable agent is full, unavailable or broken."""
        best: AgentView | None = None
        limit, down = self.max_in_flight, self.down_nodes
        for v in self._capable(need):
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

    def _pump(self) -> None:
        """Assign queued tasks to free capable agents, highest priority first."""
        now = time.monotonic()
        order = sorted((q[0], key) for key, q in self.queues.items() if q)
        for _, key in order:
            queue = self.queues[key]
            while queue:
                task = self.tasks.get(queue[0][2])
                if task is None or task["state"] != "pending":
                    heapq.heappop(queue)
                    continue
                agent = self._least_loaded(key, now)
                if agent is None:
                    break
                heapq.heappop(queue)
                self._assign(task, agent)

    def _assign(self, task: dict[str, Any], agent: AgentView) -> None:
        self.waiting.discard(task["id"])
        task["attempts"] += 1
        task.update(state="assigned", agent=agent.address, assigned_ms=now_ms(), started_ms=None)
        log(task, "assigned", agent=agent.address, attempt=task["attempts"])
        self._save(task)
        agent.in_flight += 1
        agent.last_assigned = next(self.seq)
        agent.tasks.add(task["id"])
        # Sent once the assignment is journaled: a task never runs on the strength of a state
        # the coordinator could lose (a submit it crashed before acknowledging never runs).
        self.after_commit.append(partial(self._send_assigned, task, agent, task["attempts"]))

    def _send_assigned(self, task: dict[str, Any], agent: AgentView, attempt: int) -> None:
        if task["state"] == "assigned" and task["attempts"] == attempt:
            self._send_run(task, agent.address, attempt)
        elif task["id"] in agent.tasks:  # cancelled, or given to another, before it went
            agent.tasks.discard(task["id"])
            agent.in_flight -= 1

    def _send_run(self, task: dict[str, Any], address: str, attempt: int) -> None:
        # The attempt times out at the task's timeout (a timer), but its reply is awaited for
        # longer: a late success still completes the task if nothing else has. The agent's
        # supervisor abandons a handler still running past the timeout (plus a grace).
        timeout_s = task["timeout_s"]
        body = {
            "task_id": task["id"],
            "attempt": attempt,
            "type": task["type"],
            "body": task["body"],
            "timeout_s": timeout_s,
        }
        self.node.scheduler.call_later(timeout_s, self._tell_self, AttemptDue(task["id"], attempt))
        try:
            future = self.node.ask(
                address, TASK_RUN, body, timeout_s=2 * timeout_s + 1, prio=task["priority"],
                src=self.address,
            )  # fmt: skip
        except MacpError as e:
            self._tell_self(Outcome(task["id"], attempt, address, ok=False, value=e))
            return
        future.add_done_callback(partial(self._settled, task["id"], attempt, address))

    def _settled(self, task_id: str, attempt: int, agent: str, future: AskFuture) -> None:
        """On whichever thread settled the ask: hand the outcome to the coordinator."""
        error = future.exception()
        value = future.result() if error is None else error
        self._tell_self(Outcome(task_id, attempt, agent, ok=error is None, value=value))

    def _expire_waiting(self) -> None:
        """Fail the tasks that waited their whole timeout for a capable agent: with
        :class:`NodeDown` if only agents of down nodes could run them."""
        now = now_ms()
        for task_id in list(self.waiting):
            task = self.tasks[task_id]
            if task["state"] == "pending" and now - task["queued_ms"] > task["timeout_s"] * 1000:
                waited = f"task {task['id']} waited {task['timeout_s']:g} s"
                if (cause := self._down_cause(task)) is not None:
                    self._finish(task, "failed", error=NodeDown(f"{waited}: {cause}"))
                elif (reason := self._wait_reason(task)).startswith("no agent"):
                    self._finish(task, "failed", error=ResourceUnavailable(f"{waited}: {reason}"))

    def _down_cause(self, task: dict[str, Any]) -> str | None:
        """Why only agents of down nodes can run ``task``; ``None`` if some capable agent is
        on a live node, or none is known."""
        need = requirement(task)
        capable = [v for v in self.agents.values() if v.meets(need)]
        if not capable or any(v.node not in self.down_nodes for v in capable):
            return None
        if need[0] == "agent":
            return f"its agent {need[1]} is on node {capable[0].node!r}, which is down"
        nodes = ", ".join(repr(n) for n in sorted({v.node for v in capable}))
        agents = ", ".join(sorted(v.address for v in capable))
        return f"the agents that can run it ({agents}) are on nodes that are down ({nodes})"

    def _wait_reason(self, task: dict[str, Any]) -> str:
        if (cause := self._down_cause(task)) is not None:
            back = "the node is" if task.get("pinned") else "one is"
            return f"{NODE_DOWN}: {cause}; it runs once {back} back"
        need = requirement(task)
        capable = [v for v in self.agents.values() if v.meets(need)]
        if not capable:
            return f"{describe(need)} is registered"
        live = [v for v in capable if v.node not in self.down_nodes]
        routable = [v for v in live if v.status in ROUTABLE]
        if not routable:
            states = ", ".join(sorted({v.status for v in live}))
            down = (
                f", {len(capable) - len(live)} on a down node" if len(live) < len(capable) else ""
            )
            verb = "is" if len(live) == 1 else "are"
            return f"{describe(need)} is available ({len(live)} {verb} {states}{down})"
        open_ = [v.address for v in routable if v.breaker.state == "open"]
        if len(open_) == len(routable):
            return f"the circuit breaker is open for every capable agent: {', '.join(open_)}"
        return (
            f"all {len(routable)} capable agents are busy (at most {self.max_in_flight} tasks each)"
        )
