"""The pipeline strategies: which of a run's ready steps start now.

- ``sequential``: one step at a time, in topological order;
- ``parallel``: every ready step at once, at most ``max_concurrency`` running;
- ``priority``: ready steps by step priority (ties in topological order), same bound;
- ``resource-aware``: a step that declares ``resources`` starts only once the resource
  manager grants them all, and gives them back when it ends (:mod:`.engine` leases them);
- ``adaptive``: one of the above, chosen when the run starts from its shape and the agents
  free then (:func:`adapt`); the choice and its reason are recorded in the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

from macp.actors.coordinator.agents import need_of
from macp.actors.coordinator.run import StepState
from macp.actors.registry import ROUTABLE
from macp.errors import InsufficientResources, MacpError, ResourceUnavailable

if TYPE_CHECKING:
    from collections.abc import Iterable

    from macp.actors.coordinator.agents import AgentView
    from macp.actors.coordinator.dag import Step, Workflow

__all__ = ["Lessor", "adapt", "lease_for", "startable"]

_READY: Final = StepState.READY.value


def startable(run: dict[str, Any], workflow: Workflow) -> tuple[list[str], int]:
    """The ready steps of ``run`` in the order its strategy starts them, and how many steps
    may run at once (``sequential``: one; the others: ``max_concurrency``, or all)."""
    steps, strategy = run["steps"], run["chosen"]["strategy"]
    limit = 1 if strategy == "sequential" else run["max_concurrency"] or len(steps)
    ready = [s for s in [*workflow.order(), *workflow.fallbacks]
             if steps[s]["state"] == _READY]  # fmt: skip
    if strategy == "priority":
        ready.sort(key=lambda s: -workflow.step(s).priority)
    return ready, limit


def adapt(
    workflow: Workflow, agents: Iterable[AgentView], limit: int | None
) -> tuple[dict[str, str], int | None]:
    """``({strategy, reason}, max_concurrency)`` for a run of ``workflow`` starting now."""
    needs = [
        need_of(s.type, agent=s.agent, role=s.role, capabilities=s.capabilities)
        for s in workflow.steps
    ]
    free = sum(
        1
        for v in agents
        if v.status in ROUTABLE and v.in_flight == 0 and any(v.meets(n) for n in needs)
    )
    width = workflow.width()
    if any(s.resources for s in workflow.steps):
        return {"strategy": "resource-aware", "reason": "steps declare resources"}, limit
    if width > 1 and free >= 2:  # noqa: PLR2004
        bound = min(width, free, limit or width)
        reason = f"{free} free agents for up to {width} steps at once: at most {bound} at a time"
        return {"strategy": "parallel", "reason": reason}, bound
    if len({s.priority for s in workflow.steps}) > 1:
        return {"strategy": "priority", "reason": f"{free} free agent(s); steps have priorities"}, 1
    reason = f"{free} free agent(s) for at most {width} step(s) at once: one at a time"
    return {"strategy": "sequential", "reason": reason}, 1


class Lessor(Protocol):
    """Whoever leases a step's resources (the engine's :class:`~.engine.StepHost`)."""

    def lease(self, owner: str, amounts: dict[str, float]) -> str:
        """Lease resources from the resource manager: the lease id (raises its refusal)."""


def lease_for(host: Lessor, log: Any, run_id: str, step: Step) -> str | None:
    """Lease ``step``'s resources (``resource-aware``): the lease id, or ``None`` if they are
    not free now (the step waits for a release).

    Raises:
        ResourceUnavailable: they could never be granted (a pool that does not exist, or is
            too small); the message says why and what to change.
    """
    try:
        return host.lease(f"workflow:{run_id}:{step.id}", step.resources)
    except InsufficientResources as e:
        never = e.data.get("never") if isinstance(e.data, dict) else None
        if not isinstance(never, dict) or not never:
            return None
        reasons = ", ".join(str(reason) for reason in never.values())
        raise ResourceUnavailable(
            f"step {step.id!r} can never get its resources: {reasons}; declare the pool or "
            "lower the amount"
        ) from None
    except MacpError as e:
        log.warning("workflow.lease_failed", run=run_id, step=step.id, error=str(e))
        return None
