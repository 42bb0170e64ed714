"""The ``adaptive`` workflow strategy: which of the others a run uses, chosen when it starts from
the run's shape and the agents free then, with the reason recorded in the run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from macp.actors.registry import ROUTABLE
from macp.actors.tasks import new_record, requirement

if TYPE_CHECKING:
    from collections.abc import Iterable

    from macp.actors.dag import Workflow
    from macp.actors.tasks import AgentView

__all__ = ["adapt"]


def adapt(
    workflow: Workflow, agents: Iterable[AgentView], limit: int | None
) -> tuple[dict[str, str], int | None]:
    """``({strategy, reason}, max_concurrency)`` for a run of ``workflow`` starting now."""
    needs = [requirement(new_record("-", s.task_spec())) for s in workflow.steps]
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
