"""The part of :class:`~macp.cluster.Cluster` that delegates: a hub's hooks run on a body or on
results, parts submitted as subtasks of a parent task, a subtask given to a chosen agent, and
a task's tree. The same as the gateway's operations of those names
(:mod:`macp.gateway.ops.delegation`), from Python."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp.actors.coordinator import CHILDREN, LINEAGE, RESULT, STATUS
from macp.actors.coordinator.messages import HUB_DECOMPOSE as DECOMPOSE
from macp.actors.coordinator.messages import HUB_MERGE as MERGE
from macp.actors.registry import FIND, LOOKUP
from macp.cluster._asks import Asks
from macp.errors import ActorNotFound

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from macp.cluster._handles import Task
    from macp.envelope import Wire
    from macp.futures import AskFuture

__all__ = ["Delegating"]


class Delegating(Asks):
    """Delegation, for a class that asks the control plane (``_ask``, ``_read``), asks agents
    (``ask``) and submits tasks (``submit``)."""

    if TYPE_CHECKING:
        ask: Callable[..., AskFuture]
        timeout_s: float
        submit: Callable[..., Task]

    def _address(self, agent: str) -> str:
        """``agent`` as ``name@node``: as given, or the registry's best agent of that name."""
        if "@" in agent:
            return agent
        found = self._read("registry", LOOKUP, {"name": agent})
        if not isinstance(found, str):
            raise ActorNotFound(f"no agent named {agent!r} is registered", data={"agent": agent})
        return found

    def decompose_task(
        self, body: Wire = None, *, hub: str | None = None, type: str | None = None
    ) -> dict[str, Any]:
        """Run a hub's ``decompose`` hook on ``body`` (nothing is submitted): the hub named,
        or the first available one that handles task ``type``. ``{hub, parts, count}``.

        Raises:
            ActorNotFound: no such hub.
        """
        if (hub is None) == (type is None):
            raise ValueError("give hub (an agent) or type (a task type a hub handles)")
        if hub is None:
            records = self._read("registry", FIND, {"status": ["available", "busy"]})
            hubs = [
                r["address"] for r in records if {type, DECOMPOSE} <= set(r.get("handles") or ())
            ]
            if not hubs:
                raise ActorNotFound(f"no available hub handles task type {type!r}")
            hub = str(hubs[0])
        address = self._address(hub)
        parts = list(self.ask(address, DECOMPOSE, body).get(self.timeout_s))
        return {"hub": address, "parts": parts, "count": len(parts)}

    def _delegator(self, parent: str, delegated_by: str | None) -> str | None:
        """Who delegates a subtask of ``parent``: as given, else the agent running it."""
        if delegated_by is not None:
            return delegated_by
        agent = self._read("coordinator", STATUS, {"task_id": parent})["agent"]
        return None if agent is None else str(agent)

    def assign_subtasks(
        self,
        parent: str,
        type: str,
        parts: Sequence[Wire],
        *,
        capabilities: Sequence[str] = (),
        role: str | None = None,
        delegated_by: str | None = None,
        **spec: Any,
    ) -> list[Task]:
        """Submit each of ``parts`` as a subtask of ``parent`` (unfinished), to the least loaded
        agent with ``capabilities`` (or ``role``, or that handles ``type``); ``spec`` takes
        :meth:`submit`'s other fields (``context``, ``deadline``, ``priority``...)."""
        by = self._delegator(parent, delegated_by)
        return [
            self.submit(
                type,
                part,
                capabilities=capabilities,
                role=role,
                parent=parent,
                delegated_by=by,
                **spec,
            )
            for part in parts
        ]

    def delegate_subtask(
        self,
        parent: str,
        agent: str,
        type: str,
        body: Wire = None,
        *,
        context: Wire = None,
        delegated_by: str | None = None,
        **spec: Any,
    ) -> Task:
        """Submit a subtask of ``parent`` to the chosen ``agent`` (an address or a name), with
        ``context`` for its handler (``ctx.context``)."""
        by = self._delegator(parent, delegated_by)
        return self.submit(type, body, agent=self._address(agent), parent=parent,
                           delegated_by=by, context=context, **spec)  # fmt: skip

    def merge_results(
        self,
        results: Sequence[Any] | None = None,
        *,
        parent: str | None = None,
        hub: str | None = None,
        body: Wire = None,
    ) -> Any:
        """Merge ``results`` (or ``parent``'s children's, oldest first; one that did not
        succeed is ``{"error", "state"}``) with ``hub``'s ``merge`` hook; without a hub, the
        results as a list."""
        if (results is None) == (parent is None):
            raise ValueError("give results (a list) or parent (a task whose children to merge)")
        if parent is not None:
            results = [self._child_result(c) for c in self._read(
                "coordinator", CHILDREN, {"task_id": parent})["children"]]  # fmt: skip
            if body is None:
                lineage = self._read("coordinator", LINEAGE, {"task_id": parent, "limit": 1})
                body = lineage["contributors"]["inputs"][0]["body"]
        merged = list(results or [])
        if hub is None:
            return merged
        answer = self.ask(self._address(hub), MERGE, {"results": merged, "body": body})
        return answer.get(self.timeout_s)

    def _child_result(self, child: dict[str, Any]) -> Any:
        task = {"task_id": child["id"]}
        if child["state"] == "succeeded":
            return self._read("coordinator", RESULT, task)
        status = self._read("coordinator", STATUS, task)
        return {"error": status["error"], "state": status["state"]}

    def task_tree(self, task_id: str, *, limit: int = 1000) -> dict[str, Any]:
        """``task_id`` and the tree of subtasks below it, each with its ``children``:
        ``{tree, count, truncated}``."""
        lineage = self._read("coordinator", LINEAGE, {"task_id": task_id, "limit": limit})
        nodes = {task_id: {**lineage["task"], "children": []}}
        for task in lineage["descendants"]:
            nodes[task["id"]] = {**task, "children": []}
            nodes[task["parent"]]["children"].append(nodes[task["id"]])
        return {"tree": nodes[task_id], "count": len(lineage["descendants"]),
                "truncated": lineage["truncated"]}  # fmt: skip
