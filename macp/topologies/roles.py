"""The agents topologies are made of: hubs (and team leads), peers, and the assembly line.

Every piece of work goes through the coordinator, so retries, timeouts, failover and metrics
hold in every topology.

- :class:`Hub` (hub-and-spoke, and each non-leaf of a hierarchy): ``decompose`` a task into
  parts, send each part to a child (spokes by capability, or the team members of a lead), then
  ``merge`` the results. Each part is a subtask of the hub's task (its ``parent``), so the
  task's lineage names every spoke and input; its hooks also answer ``hub.decompose`` and
  ``hub.merge`` asks (the gateway's ``decompose_task`` and ``merge_results``).
- :class:`Peer` (peer-to-peer): ``request_assistance(capabilities, body)`` has another agent
  with the capabilities do the work, through the head's sessions actor (a coordinator task).
- :class:`Line` (assembly-line, started by the topology): items flow stage to stage, the
  output of one the input of the next, with at most ``max_in_flight`` items in each stage.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Final, NamedTuple

from macp.actors.agent import Agent, handler
from macp.actors.coordinator import RESULT
from macp.actors.coordinator import SUBMIT as COORDINATOR_SUBMIT
from macp.actors.coordinator.messages import HUB_DECOMPOSE, HUB_MERGE
from macp.actors.teams.messages import SESSION_ASSIST, SESSIONS
from macp.errors import AgentError, InvalidParams, MacpError, error_body

if TYPE_CHECKING:
    from macp.actors.context import Context, Deferred, Reply
    from macp.envelope import Wire
    from macp.futures import AskFuture

__all__ = ["DECOMPOSE", "MERGE", "SUBMIT", "Hub", "Line", "Peer"]

_ASSIST_MARGIN_S: Final = 5.0  # the sessions actor answers a timeout itself, this long before
SUBMIT: Final = "topology.submit"
"""The task type a topology's entry agent (hub, root, line) handles."""
DECOMPOSE: Final = HUB_DECOMPOSE
"""A hub's ``decompose`` hook, asked: the task's body -> its parts (nothing is submitted)."""
MERGE: Final = HUB_MERGE
"""A hub's ``merge`` hook, asked: ``{results, body}`` -> the merged result."""


def _cluster(agent: Agent) -> Any:
    from macp.cluster import Cluster  # noqa: PLC0415 - the cluster module imports the actors

    return Cluster(agent.node, timeout_s=float(agent.config.get("subtask_timeout_s", 60.0)))


class Hub(Agent):
    """Splits work among its children and merges their results.

    Subclass it and override :meth:`decompose` and :meth:`merge`. The topology gives it its
    children in ``config["children"]``: each ``{type, capabilities}`` (any agent with them) or
    ``{type, agent}`` (that one agent); parts go to them in turn.
    """

    role: ClassVar[str | None] = "hub"

    def decompose(self, body: Wire) -> list[Wire]:
        """The parts of a task, one per subtask."""
        return [body]

    def merge(self, results: list[Any], body: Wire) -> Wire:  # noqa: ARG002 - for subclasses
        """The task's result from its parts' results (in the order of the parts; a part that
        failed under the ``ignore`` policy is ``{"error": {code, message, data}}``)."""
        return results

    @handler(DECOMPOSE)
    def _decompose(self, body: Wire) -> Wire:
        parts = self.decompose(body)
        if not isinstance(parts, list):
            raise InvalidParams(
                f"hub {self.address}'s decompose answered {parts!r:.60}, not a list"
            )
        return parts

    @handler(MERGE)
    def _merge(self, body: Wire) -> Wire:
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise InvalidParams(f"{MERGE} needs a map with 'results' (a list) and 'body'")
        return self.merge(body["results"], body.get("body"))

    @handler(SUBMIT)
    def _run_submitted(self, body: Wire, ctx: Context) -> Wire:
        children = self.config.get("children")
        if not isinstance(children, list) or not children:
            raise InvalidParams(
                f"hub {self.address} has no children in its config; check the topology"
            )
        parts = self.decompose(body)
        cluster = _cluster(self)
        tasks = []
        for i, (part, child) in enumerate(zip(parts, itertools.cycle(children), strict=False)):
            route = (
                {"agent": child["agent"]}
                if child.get("agent")
                else {"capabilities": child.get("capabilities") or []}
            )
            tasks.append(cluster.submit(child["type"], part, **route))
            ctx.progress(0.5 * (i + 1) / len(parts), f"sent {i + 1} of {len(parts)} parts")
        results: list[Any] = []
        ignored: bool | None = None  # whether its task's policy ignores a failed part
        for i, task in enumerate(tasks):
            try:
                results.append(task.result(float(self.config.get("subtask_timeout_s", 60.0))))
            except MacpError as e:
                if ignored is None:
                    ignored = ctx.task_id is not None and (
                        cluster.status(ctx.task_id).get("on_child_failure") == "ignore"
                    )
                if not ignored:
                    raise
                results.append({"error": error_body(e)})
            ctx.progress(0.5 + 0.5 * (i + 1) / len(tasks), f"{i + 1} of {len(tasks)} parts done")
        return self.merge(results, body)


class Peer(Agent):
    """An agent that asks other peers for help, finding them in the registry."""

    role: ClassVar[str | None] = "peer"

    def request_assistance(
        self,
        capabilities: list[str],
        body: Wire,
        *,
        type: str | None = None,
        timeout_s: float = 30.0,
        urgency: str = "normal",
        session_id: str | None = None,
    ) -> Any:
        """Have another peer (the least loaded available one with ``capabilities``, one of
        session ``session_id``'s participants first) handle ``body`` as ``type`` (default: the
        first capability); its answer. See :meth:`assistance`."""
        return self.assistance(
            capabilities, body, type=type, timeout_s=timeout_s, urgency=urgency,
            session_id=session_id,
        )["answer"]  # fmt: skip

    def assistance(
        self,
        capabilities: list[str],
        body: Wire,
        *,
        type: str | None = None,
        timeout_s: float = 30.0,
        urgency: str = "normal",
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """Ask the head's sessions actor for help (``session.assist``): the work is a task of
        the coordinator (journaled, retried, in the metrics) pinned to the helper it chose,
        never this peer, at the priority ``urgency`` maps to (low 0, normal 1, high 2,
        critical 3).

        Returns:
            ``{helper, task_id, answer, priority, urgency, session_id, from_session}``.

        Raises:
            ResourceUnavailable: no other agent has the capabilities.
            AskTimeout: no answer within ``timeout_s``.
        """
        head = self.node.head or self.node.name
        request: dict[str, Wire] = {
            "capabilities": list(capabilities), "body": body, "type": type, "urgency": urgency,
            "session_id": session_id, "timeout_s": timeout_s, "requester": self.address,
        }  # fmt: skip
        wait_s = timeout_s + _ASSIST_MARGIN_S
        return dict(self.ask(f"{SESSIONS}@{head}", SESSION_ASSIST, request, timeout_s=wait_s).get())


class _Done(NamedTuple):
    run: str
    stage: int
    item: int
    ok: bool
    value: Any


@dataclass
class _Run:
    reply: Deferred
    value: Any
    stage: int = 0
    items: list[Any] = field(default_factory=list)
    waiting: list[deque[int]] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)
    finished: int = 0
    segment: tuple[int, int] = (0, 0)
    task_id: str | None = None  # the line's task: each stage's task is its child


class Line(Agent):
    """Runs an assembly line; the topology starts it, with ``config["stages"]``: each
    ``{type, capabilities, mode, max_in_flight}``. A run of ``each`` stages is pipelined:
    item 1 may be in the third stage while item 5 is in the first. An ``all`` stage gets the
    whole current value (and may turn one input into a list of items, or items into one).
    Run as a task, each stage's task is a child of the line's task (its lineage names every
    stage's agent and input)."""

    role: ClassVar[str | None] = "line"

    def on_start(self) -> None:
        self.runs: dict[str, _Run] = {}
        self.ids = itertools.count(1)

    @handler(SUBMIT)
    def _run_submitted(self, body: Wire, ctx: Context) -> Reply:
        run_id = f"line-{next(self.ids)}"
        self.runs[run_id] = _Run(ctx.defer(), body, task_id=ctx.task_id)
        self._next_stage(run_id)
        return self.runs[run_id].reply

    @property
    def stages(self) -> list[dict[str, Any]]:
        return list(self.config["stages"])

    def _next_stage(self, run_id: str) -> None:
        run = self.runs[run_id]
        stages = self.stages
        if run.stage >= len(stages):
            del self.runs[run_id]
            run.reply.resolve(run.value)
            return
        if stages[run.stage].get("mode") == "all":
            self._submit(run_id, run.stage, 0, run.value)
            return
        if not isinstance(run.value, list):
            run.reply.fail(
                InvalidParams(
                    f"stage {run.stage + 1} processes each item of a list, not {run.value!r:.60}"
                )
            )
            del self.runs[run_id]
            return
        end = run.stage
        while end + 1 < len(stages) and stages[end + 1].get("mode", "each") == "each":
            end += 1
        width = end - run.stage + 1
        run.segment = (run.stage, end)
        run.items = list(run.value)
        run.waiting = [deque(range(len(run.items)))] + [deque() for _ in range(width - 1)]
        run.in_flight = [0] * width
        run.finished = 0
        self._pump(run_id)

    def _pump(self, run_id: str) -> None:
        run = self.runs[run_id]
        first, last = run.segment
        if run.finished == len(run.items):
            run.value, run.stage = run.items, last + 1
            self._next_stage(run_id)
            return
        for k in range(last - first, -1, -1):  # downstream first: drain before filling
            limit = int(self.stages[first + k].get("max_in_flight") or 2)
            while run.waiting[k] and run.in_flight[k] < limit:
                item = run.waiting[k].popleft()
                run.in_flight[k] += 1
                self._submit(run_id, first + k, item, run.items[item])

    def _submit(self, run_id: str, stage: int, item: int, value: Any) -> None:
        spec = self.stages[stage]
        head = self.node.head or self.node.name
        task = {"type": spec["type"], "body": value, "capabilities": spec.get("capabilities") or []}
        parent = self.runs[run_id].task_id
        if parent is not None:  # a stage's task is a child of the line's
            task.update(parent=parent, delegated_by=self.address)
        try:
            submitted = self.node.ask(f"coordinator@{head}", COORDINATOR_SUBMIT, task)
        except MacpError as e:
            self._tell_self(_Done(run_id, stage, item, ok=False, value=e))
            return
        submitted.add_done_callback(partial(self._submitted, run_id, stage, item, head))

    def _submitted(self, run_id: str, stage: int, item: int, head: str, future: AskFuture) -> None:
        if future.exception() is not None:
            self._tell_self(_Done(run_id, stage, item, ok=False, value=future.exception()))
            return
        body = {"task_id": future.result()["task_id"]}
        result = self.node.ask(f"coordinator@{head}", RESULT, body, timeout_s=3600)
        result.add_done_callback(lambda f: self._tell_self(_Done(
            run_id, stage, item, ok=f.exception() is None,
            value=f.exception() if f.exception() is not None else f.result(),
        )))  # fmt: skip

    def _receive(self, message: Any) -> Any:
        if isinstance(message, _Done):
            return self._done(message)
        return super()._receive(message)

    def _done(self, done: _Done) -> None:
        run = self.runs.get(done.run)
        if run is None:
            return
        if not done.ok:
            del self.runs[done.run]
            stage = f"stage {done.stage + 1} ({self.stages[done.stage]['type']})"
            run.reply.fail(
                AgentError(f"assembly line {stage} failed on item {done.item}: {done.value}")
            )
            return
        if self.stages[done.stage].get("mode") == "all":
            run.value, run.stage = done.value, done.stage + 1
            self._next_stage(done.run)
            return
        first, last = run.segment
        k = done.stage - first
        run.in_flight[k] -= 1
        run.items[done.item] = done.value
        if done.stage < last:
            run.waiting[k + 1].append(done.item)
        else:
            run.finished += 1
        self._pump(done.run)
