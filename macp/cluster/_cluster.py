"""The :class:`Cluster`: the control plane's API from any node or client, and :func:`connect`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final, Self

from macp.actors.coordinator import (
    CANCEL,
    CONTROL,
    DEAD_LETTERS,
    DEFAULTS,
    RESULT,
    SCATTER,
    STATUS,
    SUBMIT,
    TASKS,
    TASKS_SUBSCRIBE,
    TASKS_SUBSCRIBERS,
    TASKS_UNSUBSCRIBE,
    WORKFLOW_DEFINE,
    WORKFLOW_LIST,
    WORKFLOW_RUN,
)
from macp.actors.monitor import ALERTS as MONITOR_ALERTS
from macp.actors.monitor import METRICS as MONITOR_METRICS
from macp.actors.monitor import RATES as MONITOR_RATES
from macp.actors.registry import FIND, LIST
from macp.actors.task_events import DEFAULT_LEASE_S
from macp.cluster import _history
from macp.cluster._handles import Run, Task
from macp.cluster._head import head_of
from macp.cluster._spawn import choose_node, spawn_body
from macp.cluster._waiting import wait_routable
from macp.errors import ActorNotFound, ConfigError, NodeDown
from macp.node import Node
from macp.node._remote_spawn import SPAWN, TERMINATE

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from types import TracebackType

    from macp.envelope import Wire
    from macp.futures import AskFuture
    from macp.runtime import NodeRuntime

__all__ = ["RETRY_FIRST_S", "RETRY_MAX_S", "Cluster", "connect"]

RETRY_FIRST_S: Final = 0.1  # a read sent again while the head is down: first after this,
RETRY_MAX_S: Final = 2.0  # doubling up to this


def _listed(values: Sequence[str]) -> Any:
    """A list for the wire; a lone string stays one, for the coordinator to refuse by name
    (``list("summarize")`` would be its letters)."""
    return values if isinstance(values, str) else list(values)


class Cluster:
    """The control plane as seen from one node (or from a client of one).

    Args:
        node: a started node; its ``head`` (or, for a client, its gateway's) hosts the
            control plane.
        timeout_s: how long each request waits for the control plane to answer.
    """

    def __init__(
        self, node: NodeRuntime, *, timeout_s: float = 10.0, owns_node: bool = False
    ) -> None:
        self.node = node
        self.timeout_s = timeout_s
        self._owns_node = owns_node
        self.head = head_of(node, timeout_s)

    def _ask(self, actor: str, type: str, body: Wire = None, timeout_s: float | None = None) -> Any:
        return self.request(actor, type, body, timeout_s=timeout_s).get()

    # -- asks that return their future ---------------------------------------------------------

    def ask(
        self, address: str, type: str, body: Wire = None, *, timeout_s: float | None = None
    ) -> AskFuture:
        """Ask any actor (``name@node``, or a bare name the registry knows); the future of its
        reply (``.get()`` waits; ``add_done_callback`` does not)."""
        return self.node.ask(address, type, body, timeout_s=timeout_s or self.timeout_s)

    def tell(self, address: str, type: str, body: Wire = None) -> None:
        """Tell any actor a one-way message (at-most-once)."""
        self.node.tell(address, type, body)

    def request(
        self, actor: str, type: str, body: Wire = None, *, timeout_s: float | None = None
    ) -> AskFuture:
        """Ask a control-plane actor on the head (``coordinator``, ``registry``, ``memory``,
        ``resources``, ``monitor``); the future of its reply."""
        return self.ask(f"{actor}@{self.head}", type, body, timeout_s=timeout_s)

    def _read(
        self, actor: str, type: str, body: Wire = None, timeout_s: float | None = None
    ) -> Any:
        """An ask that is safe to send again (it reads, or is idempotent): when the head, or
        the node a client goes through, is down (:class:`NodeDown`), or the control-plane
        actor is not there yet or is being restarted (:class:`ActorNotFound`), it is sent
        again after a backoff until ``timeout_s`` (the cluster's own by default) is spent, so
        a restart of the head is a pause, not an error."""
        wait_s = timeout_s or self.timeout_s
        deadline = time.monotonic() + wait_s
        pause_s = RETRY_FIRST_S
        while True:
            try:
                return self._ask(actor, type, body, wait_s)
            except (NodeDown, ActorNotFound):
                if deadline - time.monotonic() <= pause_s:
                    raise
            time.sleep(pause_s)  # the caller's thread, waiting for the head to be back
            pause_s = min(pause_s * 2, RETRY_MAX_S)
            wait_s = max(deadline - time.monotonic(), 0.001)

    # -- tasks --------------------------------------------------------------------------------

    def submit(
        self,
        type: str,
        body: Wire = None,
        *,
        capabilities: Sequence[str] = (),
        role: str | None = None,
        agent: str | None = None,
        priority: int = DEFAULTS.priority,
        timeout_s: float = DEFAULTS.timeout_s,
        max_retries: int = DEFAULTS.max_retries,
        max_node_failures: int = DEFAULTS.max_node_failures,
        backoff_s: float = DEFAULTS.backoff_s,
        backoff_max_s: float = DEFAULTS.backoff_max_s,
        idempotency_key: str | None = None,
        notify: str | None = None,
    ) -> Task:
        """Submit a task; it is journaled before this returns.

        Args:
            type: the handler type the agent runs.
            body: its input.
            capabilities: what the agent must have (default: any agent that handles ``type``).
            role: run it on an agent with this role.
            agent: run it on this agent (an address) only.
            priority: 0 (low) to 3 (critical); higher goes first.
            timeout_s: per attempt, and how long to wait for a capable agent.
            max_retries: retries after the first attempt before the task is a poison message;
                attempts lost because their agent's node went down (or the head restarted) do
                not count (they retry on a live agent).
            max_node_failures: attempts that may be lost so before the task is a poison message
                all the same (a task that brings its node down must not go round for ever).
            backoff_s: the first retry's delay, doubled each time, at most ``backoff_max_s``.
            idempotency_key: submitting the same key again returns the first task, for as
                long as the journal keeps that task (``journal_retention``: a day after it
                finished by default); after that the key has expired and a submit is new.
            notify: an address told ``task.done`` when the task finishes.
        """
        spec = {
            "type": type, "body": body, "capabilities": _listed(capabilities), "role": role,
            "agent": agent,
            "priority": priority, "timeout_s": timeout_s, "max_retries": max_retries,
            "max_node_failures": max_node_failures,
            "backoff_s": backoff_s, "backoff_max_s": backoff_max_s,
            "idempotency_key": idempotency_key, "notify": notify,
        }  # fmt: skip
        # The same key submits once, however often it is sent: only then is it sent again.
        ask = self._ask if idempotency_key is None else self._read
        return Task(self, ask("coordinator", SUBMIT, spec)["task_id"])

    def task(self, task_id: str) -> Task:
        return Task(self, task_id)

    def result(self, task_id: str, *, timeout_s: float = 60.0) -> Any:
        return self._read("coordinator", RESULT, {"task_id": task_id}, timeout_s=timeout_s)

    def status(self, task_id: str) -> dict[str, Any]:
        return dict(self._read("coordinator", STATUS, {"task_id": task_id}))

    def cancel(self, task_id: str) -> bool:
        return bool(self._ask("coordinator", CANCEL, {"task_id": task_id})["cancelled"])

    def tasks(
        self, states: Sequence[str] | None = None, *, type: str | None = None,
        agent: str | None = None, since: float | None = None, limit: int | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """:meth:`task_history`'s rows (with no ``limit``, up to 20,000: newest first)."""
        return list(self.task_history(states, type=type, agent=agent, since=since,
                                      limit=limit or _history.MAX_LIMIT)["tasks"])  # fmt: skip

    def task_history(
        self, states: Sequence[str] | None = None, *, type: str | None = None,
        agent: str | None = None, since: float | None = None, limit: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """``{"tasks", "total", "counts"}``: tasks in ``states`` (any), of ``type``, run by
        ``agent`` (address or name), updated since ``since`` (unix s), newest first, at most
        ``limit`` (100); the journal's finished ones too (see macp.actors.coordinator.history)."""
        query = _history.history_query(states, type, agent, since, limit)
        return _history.task_history(self._read, query)

    def task_counts(self) -> dict[str, Any]:
        """Every task the journal keeps, counted: ``{states, types, agents, total}``."""
        return _history.task_counts(self._read)

    def scatter(
        self,
        type: str,
        body: Wire = None,
        *,
        capabilities: Sequence[str] = (),
        agents: Sequence[str] | None = None,
        count: int | None = None,
        aggregation: str = "all",
        quorum: int | None = None,
        failure_threshold: int | None = None,
        timeout_s: float = DEFAULTS.timeout_s,
    ) -> Task:
        """Send one task to many agents and aggregate: ``all``, ``first``, ``majority`` or
        ``quorum`` (with ``quorum=n``); see :mod:`macp.actors.coordinator.gather`."""
        spec = {
            "type": type, "body": body, "capabilities": _listed(capabilities),
            "agents": list(agents) if agents is not None else None, "count": count,
            "aggregation": aggregation, "quorum": quorum, "failure_threshold": failure_threshold,
            "timeout_s": timeout_s,
        }  # fmt: skip
        return Task(self, self._ask("coordinator", SCATTER, spec)["task_id"])

    def control(self, command: str, target: str, params: Wire = None) -> dict[str, Any]:
        """A control command to an agent, ``group:NAME``, ``role:NAME`` or ``all``; each answer."""
        body = {"command": command, "target": target, "params": params}
        return dict(self._ask("coordinator", CONTROL, body))

    # -- workflows ----------------------------------------------------------------------------

    def define(self, definition: Mapping[str, Any]) -> list[str]:
        """Define (or redefine) a workflow; its step ids. A cycle, a dangling dependency or a
        duplicate step id is refused with :class:`InvalidParams` naming the steps."""
        return list(self._ask("coordinator", WORKFLOW_DEFINE, dict(definition))["steps"])

    def run(
        self,
        workflow: str | Mapping[str, Any],
        input: Wire = None,
        *,
        strategy: str | None = None,
        max_concurrency: int | None = None,
    ) -> Run:
        """Run a defined workflow (by name) or a definition given here; journaled first.

        ``strategy``: sequential, parallel, priority, resource-aware or adaptive (default: the
        definition's).
        """
        body: dict[str, Wire] = {"input": input, "strategy": strategy,
                                 "max_concurrency": max_concurrency}  # fmt: skip
        if isinstance(workflow, str):
            body["workflow"] = workflow
        else:
            body["definition"] = dict(workflow)
        return Run(self, self._ask("coordinator", WORKFLOW_RUN, body)["run_id"])

    def runs(self) -> dict[str, Any]:
        """The defined workflows and every run."""
        return dict(self._read("coordinator", WORKFLOW_LIST))

    def run_status(self, run_id: str) -> dict[str, Any]:
        return _history.run_status(self._read, run_id)

    # -- the journal --------------------------------------------------------------------------

    def dead_letters(self, limit: int = 10) -> dict[str, Any]:
        """The head journal's dead letters: records that could not be replayed, set aside.

        Returns:
            ``{"count", "kept", "newest"}``: how many there are, how many the journal keeps
            at most (the oldest go first), and the newest ``limit`` as ``{"id", "source",
            "key", "reason", "time_ms", "size"}``, newest first.
        """
        return dict(self._read("coordinator", DEAD_LETTERS, {"limit": limit}))

    # -- registry, memory, resources ----------------------------------------------------------

    def find(self, **filters: Any) -> list[dict[str, Any]]:
        """Agents matching ``capabilities``, ``role``, ``status``, ``group``, ``node`` and
        ``active_within_s``, least loaded first."""
        return list(self._read("registry", FIND, filters))

    def agents(self) -> list[dict[str, Any]]:
        return list(self._read("registry", LIST))

    def wait_for_agents(
        self,
        addresses: Iterable[str],
        timeout_s: float = 30.0,
        *,
        progress: Callable[[int, int], object] | None = None,
    ) -> None:
        """Wait until the coordinator can route to every agent of ``addresses`` (``name@node``):
        the registry shows each routable (available or busy), and the coordinator has taken
        that news (the registry tells it before answering, so one ask to the coordinator after
        is enough).

        Args:
            addresses: the agents to wait for.
            timeout_s: how long to wait at most.
            progress: called with how many of them are routable, and how many there are, at
                first and whenever the first number changes.

        Raises:
            AskTimeout: some are not routable within ``timeout_s``; the message names them,
                and so does its ``data["missing"]``.
        """
        wait_routable(self.agents, addresses, timeout_s, progress)
        self._ask("coordinator", TASKS, {"states": []})  # answers nothing, after the news

    def memory(self, type: str, **body: Any) -> Any:
        """A memory-store request, e.g. ``memory("put", namespace=..., key=..., value=...)``."""
        return self._ask("memory", f"memory.{type}", body)

    def resources(self, type: str, **body: Any) -> Any:
        """A resource-manager request, e.g. ``resources("allocate", owner=..., amounts=...)``."""
        return self._ask("resources", f"resources.{type}", body)

    # -- the gateway's runtime additions: metrics -----------------------------------------------

    def metrics(self) -> dict[str, Any]:
        """The monitor's figures and the alerts firing now.

        Returns:
            ``{"metrics": {name: value}, "alerts": [rule]}``: every gauge of the last sample
            (see :mod:`macp.actors.metrics` for the names), and each alert rule that is firing,
            as ``monitor.rules`` describes it, with its metric's ``value``.
        """
        return {
            "metrics": dict(self._read("monitor", MONITOR_METRICS)),
            "alerts": list(self._read("monitor", MONITOR_ALERTS)),
        }

    def alerts(self) -> dict[str, Any]:
        """``{"active", "recent"}``: the rules firing now; the newest alert transitions first."""
        return _history.alerts(self._read)

    def message_rates(
        self, *, window_s: float = 60.0, flood_per_s: float | None = None
    ) -> dict[str, dict[str, Any]]:
        """Each agent's messages over the last ``window_s``, from the counts its node reports
        to the registry with every heartbeat and the monitor samples (so they lag by about a
        heartbeat and a sample).

        Args:
            window_s: the window, in seconds (the monitor keeps ``history_size`` samples).
            flood_per_s: flag the agents taking more than this many messages a second.

        Returns:
            ``{address: {"messages", "rate_per_s", "span_s", "total", "flood"?}}``:
            messages taken (handled or failed) in the window, that count over ``window_s``,
            the seconds the samples cover, the count since the agent (re)started, and with
            ``flood_per_s`` whether ``rate_per_s`` is above it.

        Raises:
            InvalidParams: ``window_s`` or ``flood_per_s`` is not a positive number.
        """
        body = {"window_s": window_s, "flood_per_s": flood_per_s}
        return dict(self._read("monitor", MONITOR_RATES, body))

    # -- the gateway's runtime additions: task events -------------------------------------------

    def subscribe_tasks(self, address: str, *, lease_s: float = DEFAULT_LEASE_S) -> dict[str, Any]:
        """Tell ``address`` (``name@node``) a ``task.event`` at each change of any task's
        state, for ``lease_s`` seconds: ask again before it ends to keep it (a
        :class:`~macp.TaskEvents` agent does). Events are at most once, in transition order
        per task; see :mod:`macp.actors.coordinator.events`.

        Raises:
            InvalidParams: ``address`` is not ``name@node``, or ``lease_s`` is not above 0
                and at most an hour.
        """
        body: dict[str, Wire] = {"address": address, "lease_s": lease_s}
        return dict(self._ask("coordinator", TASKS_SUBSCRIBE, body))

    def unsubscribe_tasks(self, address: str) -> bool:
        """End ``address``'s subscription; ``False`` if it held none (or it had lapsed)."""
        body = {"address": address}
        return bool(self._ask("coordinator", TASKS_UNSUBSCRIBE, body)["unsubscribed"])

    def task_subscribers(self) -> list[dict[str, Any]]:
        """The subscribers to task events: ``[{"address", "lease_left_s"}]``."""
        return list(self._read("coordinator", TASKS_SUBSCRIBERS))

    # -- the gateway's runtime additions: agents spawned and stopped --------------------------

    def spawn(
        self,
        cls: str,
        name: str,
        *,
        node: str | None = None,
        config: Mapping[str, Wire] | None = None,
        capabilities: Sequence[str] | None = None,
        role: str | None = None,
        group: str | None = None,
        timeout_s: float | None = None,
    ) -> str:
        """Start an agent of class ``cls`` (``package.module:Class``) named ``name`` on
        ``node``, or on the least loaded live node that allows that class (the fewest agents
        plus the sum of their loads, from the registry); return its address once the
        coordinator can route to it (within ``timeout_s``, the cluster's own by default).

        Raises:
            Unauthorized: the node does not allow ``cls`` (``--spawnable``).
            ConfigError: the name is taken, the class does not import, or no node allows it.
            AskTimeout: the agent was not routable in time.
        """
        wait_s = timeout_s or self.timeout_s
        deadline = time.monotonic() + wait_s
        where = node or choose_node(self.node, self.head, self.agents, cls, wait_s)
        body = spawn_body(cls, name, config=config, capabilities=capabilities, role=role,
                          group=group)  # fmt: skip
        answer = self.node.ask_node(where, SPAWN, body, timeout_s=wait_s).get()
        address = str(answer["address"])
        self.wait_for_agents([address], timeout_s=max(deadline - time.monotonic(), 0.001))
        return address

    def terminate(self, address: str) -> bool:
        """Stop, for good, an agent that :meth:`spawn` started; ``False`` if it was gone.

        Raises:
            Unauthorized: the agent was not started by :meth:`spawn` (``node.spawn``).
        """
        name, _, node = address.partition("@")
        if not node:
            raise ConfigError(f"terminate needs the agent's address as name@node, not {address!r}")
        return bool(self.node.ask_node(node, TERMINATE, {"name": name}).get()["terminated"])

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the client node this cluster handle started (if it started one)."""
        if self._owns_node:
            self.node.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def connect(
    address: str, *, keys: str | os.PathLike[str] | None = None, timeout_s: float = 10.0
) -> Cluster:
    """Connect to a cluster through any member at ``address``; close the result when done."""
    node = Node.client(address, keys=keys).start()
    try:
        return Cluster(node, timeout_s=timeout_s, owns_node=True)
    except BaseException:
        node.stop()
        raise
