"""The :class:`Cluster`: the control plane's API from any node or client, and :func:`connect`."""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Self

from macp.actors.coordinator import (
    CANCEL,
    CONTROL,
    DEFAULTS,
    RESULT,
    SCATTER,
    STATUS,
    SUBMIT,
    TASKS,
    with_counts,
)
from macp.actors.registry import FIND, LIST
from macp.cluster import _history
from macp.cluster._delegating import Delegating
from macp.cluster._evaluating import Evaluating
from macp.cluster._handles import Task
from macp.cluster._head import head_of
from macp.cluster._lineage import children, lineage, lineage_spec
from macp.cluster._observing import Observing
from macp.cluster._spawn import choose_node, spawn_body
from macp.cluster._team_ops import TeamOperations
from macp.cluster._teams import Goals, Projects, Sessions
from macp.cluster._waiting import wait_routable
from macp.cluster._workflows import Workflows
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


class Cluster(Workflows, Observing, Evaluating, Delegating, TeamOperations):
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
        self.sessions, self.projects, self.goals = Sessions(self), Projects(self), Goals(self)

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

    def read(
        self, actor: str, type: str, body: Wire = None, *, timeout_s: float | None = None
    ) -> Any:
        """Ask a control-plane actor on the head a read (as :meth:`_read`); its reply."""
        return self._read(actor, type, body, timeout_s)

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
        parent: str | None = None,
        delegated_by: str | None = None,
        run: str | None = None,
        deadline: float | None = None,
        context: Wire = None,
        on_child_failure: str = DEFAULTS.on_child_failure,
        child_retries: int = DEFAULTS.child_retries,
    ) -> Task:
        """Submit a task; it is journaled before this returns. Submitted from a task's handler
        (on its thread), it is a child of that task, delegated by its agent.

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
            parent, delegated_by, run, deadline, context, on_child_failure, child_retries: its
                place in a tree of tasks (:mod:`macp.actors.coordinator.lineage`): its parent
                task (unfinished), the delegating agent, its workflow run, a deadline in epoch
                seconds, data for its handler (``ctx.context``), and what a failure of its own
                children does to it (``fail``, ``ignore`` or ``retry`` up to ``child_retries``).
        """
        spec = {
            "type": type, "body": body, "capabilities": _listed(capabilities), "role": role,
            "agent": agent,
            "priority": priority, "timeout_s": timeout_s, "max_retries": max_retries,
            "max_node_failures": max_node_failures,
            "backoff_s": backoff_s, "backoff_max_s": backoff_max_s,
            "idempotency_key": idempotency_key, "notify": notify,
            **lineage_spec(parent=parent, delegated_by=delegated_by, run=run, deadline=deadline,
                           context=context, on_child_failure=on_child_failure,
                           child_retries=child_retries),
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

    def children(self, task_id: str) -> list[dict[str, Any]]:
        """The tasks ``task_id`` delegated, oldest first."""
        return children(self._read, task_id)

    def lineage(self, task_id: str, *, limit: int | None = None) -> dict[str, Any]:
        """Ancestors, descendants (at most ``limit``) and contributors: ``_lineage.lineage``."""
        return lineage(self._read, task_id, limit)

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

    # -- registry, memory, resources ----------------------------------------------------------

    def find(self, **filters: Any) -> list[dict[str, Any]]:
        """Agents matching ``capabilities``, ``role``, ``status``, ``group``, ``node``,
        ``model_type``, ``model_version`` and ``active_within_s``, least loaded first."""
        return list(self._read("registry", FIND, filters))

    find_agents = find  # the gateway operation's name

    def agents(self, *, counts: bool = True) -> list[dict[str, Any]]:
        """Every registered agent's record (the control plane's own actors too), each with the
        tasks it ran last that ``succeeded`` and ``failed``, as the head's journal counts them
        (the same after a restart of the head); ``counts=False``: the records alone (one ask
        fewer)."""
        records = list(self._read("registry", LIST))
        return with_counts(records, self.task_counts()) if counts else records

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
        wait_routable(partial(self.agents, counts=False), addresses, timeout_s, progress)
        self._ask("coordinator", TASKS, {"states": []})  # answers nothing, after the news

    def memory(self, type: str, **body: Any) -> Any:
        """A memory-store request, e.g. ``memory("put", namespace=..., key=..., value=...)``."""
        return self._ask("memory", f"memory.{type}", body)

    def resources(self, type: str, **body: Any) -> Any:
        """A resource-manager request, e.g. ``resources("allocate", owner=..., amounts=...)``."""
        return self._ask("resources", f"resources.{type}", body)

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
