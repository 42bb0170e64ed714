"""Scatter-gather: one task sent to many agents at once, their answers aggregated.

``coordinator.scatter`` ``{type, body, capabilities?, agents?, count?, aggregation, quorum?,
failure_threshold?, timeout_s?}`` -> ``{task_id}``: the task goes to every chosen agent at once
(the ``agents`` given, else the ``count`` least loaded routable agents with the capabilities,
else all of them); the answers are aggregated as :mod:`.gather` says, and the outcome is read
like any task's (``coordinator.result``). A scatter in flight when the coordinator restarts is
sent again.

:class:`Scatters` keeps a :class:`~.gather.Gather` per scatter in flight and turns answers and
deadlines into decisions; the coordinator sends the asks and finishes the task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp._storable import check as check_storable
from macp.actors.coordinator.gather import Gather, check_mode
from macp.actors.coordinator.task import Task, TaskKind, error_record
from macp.errors import AgentError, InvalidParams, ResourceUnavailable

if TYPE_CHECKING:
    from macp.actors.coordinator.dispatch import Dispatcher
    from macp.actors.coordinator.gather import Decision
    from macp.envelope import Wire

__all__ = ["Scatters"]


class Scatters:
    """The scatters in flight, each with the gather of its answers."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._gathers: dict[str, Gather] = {}

    def new(self, task_id: str, spec: Wire, now_ms: int) -> Task:
        """A scatter task from its spec, its voters chosen, its aggregation checked.

        Raises:
            InvalidParams: a field is malformed (named in the message).
            ResourceUnavailable: no agent could answer it (why, in the message).
        """
        task = Task.submitted(task_id, spec, now_ms, kind=TaskKind.SCATTER)
        assert isinstance(spec, dict)
        explicit = spec.get("agents")
        if explicit is not None and (
            not isinstance(explicit, list) or not all(isinstance(a, str) for a in explicit)
        ):
            raise InvalidParams("scatter field 'agents' must be a list of addresses")
        check_mode(spec.get("aggregation", "all"))  # before looking for voters
        task.aggregation = spec.get("aggregation", "all")
        task.quorum, task.failure_threshold = spec.get("quorum"), spec.get("failure_threshold")
        task.expected = explicit or self._voters(task, spec.get("count"))
        if not task.expected:
            wait = self._dispatcher.wait(task).sentence()
            raise ResourceUnavailable(f"cannot scatter {task.type!r}: {wait}")
        self.start(task)  # checks the aggregation before anything is sent
        return task

    def _voters(self, task: Task, count: Any) -> list[str]:
        if count is not None and (not isinstance(count, int) or count < 1):
            raise InvalidParams("scatter field 'count' must be a positive integer")
        return self._dispatcher.voters(task, count)

    def start(self, task: Task) -> None:
        """Gather the answers to ``task`` (anew, if it is sent again after a restart).

        Raises:
            InvalidParams: its aggregation does not fit its voters.
        """
        self._gathers[task.id] = Gather(
            list(task.expected), task.aggregation, task.quorum, task.failure_threshold
        )

    def answer(self, task: Task, agent: str, ok: bool, value: Any) -> Decision | None:
        """Count ``agent``'s answer (an error if not ``ok``); the decision, if there is one."""
        gather = self._gathers.get(task.id)
        if gather is None:
            return None
        if ok:
            try:  # an answer its agent's node did not check counts as that agent's failure
                check_storable(value, f"the answer of {agent} to scatter {task.id}", "answer")
            except InvalidParams as e:
                ok, value = False, e
        return gather.add(agent, ok, value if ok else error_record(value))

    def expire(self, task: Task) -> Decision | None:
        """The decision at ``task``'s deadline, if it is still undecided."""
        gather = self._gathers.get(task.id)
        return None if gather is None else gather.expire()

    def decided(self, task: Task, decision: Decision) -> AgentError | None:
        """Stop gathering for ``task``: the error it fails with, or ``None`` if it succeeded
        (with ``decision.result``)."""
        self._gathers.pop(task.id, None)
        task.reason = decision.reason
        if decision.ok:
            return None
        return AgentError(
            f"scatter {task.id} ({task.aggregation}) failed: {decision.reason}",
            data={"answers": decision.result},
        )
