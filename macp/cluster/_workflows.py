"""The part of :class:`~macp.cluster.Cluster` about workflows: define one, run it, list the
runs, read a run's status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp.actors.coordinator import WORKFLOW_DEFINE, WORKFLOW_LIST, WORKFLOW_RUN
from macp.cluster import _history
from macp.cluster._asks import Asks
from macp.cluster._handles import Run

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp.envelope import Wire

__all__ = ["Workflows"]


class Workflows(Asks):
    """Workflows, for a class that asks the control plane (``_ask``, and ``_read`` for an ask
    safe to send again)."""

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
